// Every naming family, written by the tests as safetensors or torch.save zips, must import and fuse to a
// network whose FP32 logits match the unfused training-form forward.
import XCTest
import QARep
@testable import QARepOffline

final class ImportFamilyTests: XCTestCase {
    func options(height: Int = 12, width: Int = 12) -> ImportOptions {
        var o = ImportOptions()
        o.inputHeight = height
        o.inputWidth = width
        return o
    }

    /// Imports `path` and checks max |logit difference| <= 1e-4 x logit range over two random inputs.
    @discardableResult
    func assertImportMatches(_ reference: ImportTestNetwork, path: String, options: ImportOptions,
                             file: StaticString = #filePath, line: UInt = #line) throws -> ImportReport {
        let (fused, report) = try importCheckpointWithReport(path: path, options: options)
        XCTAssertEqual(fused.convs.map(\.stride), reference.blocks.map(\.stride), "strides", file: file, line: line)
        XCTAssertEqual(fused.convs.map(\.groups), reference.blocks.map(\.groups), "groups", file: file, line: line)
        XCTAssertEqual(fused.numClasses, reference.numClasses, file: file, line: line)
        for seed in [UInt64(1), 2] {
            let input = importTestInput(seed: seed, height: options.inputHeight, width: options.inputWidth)
            let expected = reference.unfusedLogits(input)
            let actual = importTestFusedLogits(fused, input)
            let range = (expected.max() ?? 0) - (expected.min() ?? 0)
            XCTAssertGreaterThan(range, 0.05, "degenerate test network: logits barely differ", file: file, line: line)
            let worst = zip(expected, actual).map { abs($0 - $1) }.max() ?? .infinity
            XCTAssertLessThanOrEqual(worst, 1e-4 * range, "max |logit diff| \(worst) vs range \(range)", file: file, line: line)
        }
        return report
    }

    // MARK: - Networks per family

    static func officialNetwork(seed: UInt64) -> ImportTestNetwork {
        ImportTestNetwork.build(seed: seed) { layout, rng in
            var b = ImportTestBlock(layout)
            b.dense = .random(out: layout.outChannels, inPerGroup: b.inPerGroup, kernel: 3, bias: false, bn: true, &rng)
            b.pointwise = .random(out: layout.outChannels, inPerGroup: b.inPerGroup, kernel: 1, bias: false, bn: true, &rng)
            if layout.identityFits {
                b.hasIdentity = true
                b.identityBN = .random(layout.outChannels, &rng)
            }
            return b
        }
    }

    static func qaNetwork(seed: UInt64, averagePool: Bool = false) -> ImportTestNetwork {
        ImportTestNetwork.build(seed: seed) { layout, rng in
            var b = ImportTestBlock(layout)
            b.dense = .random(out: layout.outChannels, inPerGroup: b.inPerGroup, kernel: 3, bias: false, bn: true, &rng)
            b.pointwise = .random(out: layout.outChannels, inPerGroup: b.inPerGroup, kernel: 1, bias: false, bn: false, &rng)
            b.hasIdentity = layout.identityFits
            b.hasAveragePool = averagePool && layout.identityFits
            b.postBN = .random(layout.outChannels, &rng)
            return b
        }
    }

    static func deployNetwork(seed: UInt64, postBN: Bool) -> ImportTestNetwork {
        ImportTestNetwork.build(seed: seed) { layout, rng in
            var b = ImportTestBlock(layout)
            b.fused = .random(out: layout.outChannels, inPerGroup: b.inPerGroup, kernel: 3, bias: true, bn: false, &rng)
            if postBN { b.postBN = .random(layout.outChannels, &rng) }
            return b
        }
    }

    // MARK: - Tests

    func testOfficialRepVGGTorchZipWithWrapperPrefixAndStridedViews() throws {
        let net = Self.officialNetwork(seed: 11)
        var builder = ImportTorchArchiveBuilder()
        builder.stridedTensors = ["linear.weight", "stage2.0.rbr_1x1.bn.running_var"]
        let root = importTestPickleRoot(net.stateDict(.officialRepVGG), prefix: "module.", wrapper: "state_dict", parameters: true,
                                        extras: [("epoch", .int(120)), ("best_acc", .float(0.75)), ("arch", .string("RepVGG-A0")),
                                                 ("args", .namespace([("lr", .float(0.1)), ("deploy", .bool(false)), ("resume", .none)])),
                                                 ("optimizer", .dict([("param_groups", .list([.dict([("lr", .float(0.1))], ordered: false)]))], ordered: false))])
        let path = try importTestTemporaryFile("official.pth", try builder.archive(root: root, tensors: net.stateDict(.officialRepVGG)))
        let report = try assertImportMatches(net, path: path, options: options())
        XCTAssertEqual(report.blocks.map(\.name), ["stage0", "stage1.0", "stage1.1", "stage2.0", "stage2.1", "stage2.2"])
        XCTAssertEqual(report.blocks[2].branches, ["3x3+bn", "1x1+bn", "identity+bn"])
        XCTAssertEqual(report.blocks[4].groups, 4)
    }

    func testQARepVGGSafetensorsAndProtocol4Zip() throws {
        let net = Self.qaNetwork(seed: 12)
        let sd = net.stateDict(.qaRepVGG)
        let safetensorsPath = try importTestTemporaryFile("qarep.safetensors", try importTestSafetensors(sd))
        let report = try assertImportMatches(net, path: safetensorsPath, options: options())
        XCTAssertEqual(report.blocks[5].branches, ["3x3+bn", "1x1", "identity", "post-bn"])
        XCTAssertEqual(report.blocks[3].branches, ["3x3+bn", "1x1", "post-bn"])

        var builder = ImportTorchArchiveBuilder()
        builder.protocolVersion = 4
        let root = importTestPickleRoot(sd, wrapper: "model", extras: [("epoch", .int(7))])
        let zipPath = try importTestTemporaryFile("qarep.pth", try builder.archive(root: root, tensors: sd))
        try assertImportMatches(net, path: zipPath, options: options())
    }

    func testQARepVGGWithoutItsParameterFreeIdentityDiffers() throws {
        // The test can fail: dropping the implicit identity must change the logits beyond the tolerance.
        let net = Self.qaNetwork(seed: 13)
        let path = try importTestTemporaryFile("qarep-noid.safetensors", try importTestSafetensors(net.stateDict(.qaRepVGG)))
        var o = options()
        o.implicitIdentity = false
        let fused = try importCheckpoint(path: path, options: o)
        let input = importTestInput(seed: 1)
        let expected = net.unfusedLogits(input)
        let actual = importTestFusedLogits(fused, input)
        let range = (expected.max() ?? 0) - (expected.min() ?? 0)
        XCTAssertGreaterThan(zip(expected, actual).map { abs($0 - $1) }.max() ?? 0, 1e-3 * range)
    }

    func testYOLOv6AveragePoolBranchOption() throws {
        let net = Self.qaNetwork(seed: 14, averagePool: true)
        let path = try importTestTemporaryFile("yolov6-v2.safetensors", try importTestSafetensors(net.stateDict(.qaRepVGG)))
        var o = options()
        o.bnEpsilon = 1e-3
        var reference = net
        reference.epsilon = 1e-3
        o.averagePoolBranch = true
        let report = try assertImportMatches(reference, path: path, options: o)
        XCTAssertEqual(report.blocks[2].branches, ["3x3+bn", "1x1", "identity", "avgpool", "post-bn"])
    }

    func testYOLOv6DeployWithPostBNInFloat64() throws {
        let net = Self.deployNetwork(seed: 15, postBN: true)
        let path = try importTestTemporaryFile("yolov6-deploy.safetensors", try importTestSafetensors(net.stateDict(.yolov6Deploy, dtype: "F64")))
        let report = try assertImportMatches(net, path: path, options: options())
        XCTAssertEqual(report.blocks[1].branches, ["fused+bias", "post-bn"])
    }

    func testTimmTrainingInBFloat16() throws {
        let net = Self.officialNetwork(seed: 16).rounded(to: "BF16")
        let path = try importTestTemporaryFile("timm.safetensors", try importTestSafetensors(net.stateDict(.timm, dtype: "BF16")))
        let report = try assertImportMatches(net, path: path, options: options())
        XCTAssertEqual(report.blocks.map(\.name), ["stem", "stages.0.0", "stages.0.1", "stages.1.0", "stages.1.1", "stages.1.2"])
        XCTAssertEqual(report.headKey, "head.fc.weight")
    }

    func testTimmDeployInFloat16() throws {
        let net = Self.deployNetwork(seed: 17, postBN: false).rounded(to: "F16")
        let path = try importTestTemporaryFile("timm-deploy.safetensors", try importTestSafetensors(net.stateDict(.timmDeploy, dtype: "F16")))
        try assertImportMatches(net, path: path, options: options())
    }

    func testOfficialDeployTorchZip() throws {
        let net = Self.deployNetwork(seed: 18, postBN: false)
        let sd = net.stateDict(.officialDeploy)
        let path = try importTestTemporaryFile("deploy.pth", try ImportTorchArchiveBuilder().archive(root: importTestPickleRoot(sd), tensors: sd))
        try assertImportMatches(net, path: path, options: options())
    }

    func testSuperGradientsAlphaBiasedPointwiseAndIgnoredPlaceholder() throws {
        let net = ImportTestNetwork.build(seed: 19) { layout, rng in
            var b = ImportTestBlock(layout)
            b.dense = .random(out: layout.outChannels, inPerGroup: b.inPerGroup, kernel: 3, bias: false, bn: true, &rng)
            b.pointwise = .random(out: layout.outChannels, inPerGroup: b.inPerGroup, kernel: 1, bias: true, bn: false, &rng)
            b.alpha = rng.uniform(0.5, 1.5)
            b.hasIdentity = layout.identityFits
            b.postBN = .random(layout.outChannels, &rng)
            return b
        }
        let path = try importTestTemporaryFile("sg.safetensors", try importTestSafetensors(net.stateDict(.superGradients)))
        let report = try assertImportMatches(net, path: path, options: options())
        XCTAssertEqual(report.blocks[2].branches, ["3x3+bn", "1x1+bias", "alpha", "identity", "post-bn"])
    }

    func testGenericBranchSubsets() throws {
        let net = ImportTestNetwork.build(seed: 20) { layout, rng in
            var b = ImportTestBlock(layout)
            let out = layout.outChannels
            switch (layout.stage, layout.index) {
            case (0, _): // 3x3 conv with bias, no BN
                b.dense = .random(out: out, inPerGroup: b.inPerGroup, kernel: 3, bias: true, bn: false, &rng)
            case (1, 0): // 1x1 + BN only
                b.pointwise = .random(out: out, inPerGroup: b.inPerGroup, kernel: 1, bias: false, bn: true, &rng)
            case (1, 1): // 3x3 without BN + identity BN (grouped)
                b.dense = .random(out: out, inPerGroup: b.inPerGroup, kernel: 3, bias: false, bn: false, &rng)
                b.hasIdentity = true
                b.identityBN = .random(out, &rng)
            case (2, 0): // 3x3 with BN that has no affine parameters, plus 1x1 with bias and BN
                var dense = ImportTestConv.random(out: out, inPerGroup: b.inPerGroup, kernel: 3, bias: false, bn: false, &rng)
                dense.bn = .random(out, &rng, affine: false)
                b.dense = dense
                b.pointwise = .random(out: out, inPerGroup: b.inPerGroup, kernel: 1, bias: true, bn: true, &rng)
            case (2, 1): // identity BN + 1x1 with bias + post-BN
                b.pointwise = .random(out: out, inPerGroup: b.inPerGroup, kernel: 1, bias: true, bn: false, &rng)
                b.hasIdentity = true
                b.identityBN = .random(out, &rng)
                b.postBN = .random(out, &rng)
            default: // 3x3 + BN only
                b.dense = .random(out: out, inPerGroup: b.inPerGroup, kernel: 3, bias: false, bn: true, &rng)
            }
            return b
        }
        let path = try importTestTemporaryFile("generic.safetensors", try importTestSafetensors(net.stateDict(.generic)))
        let report = try assertImportMatches(net, path: path, options: options())
        XCTAssertEqual(report.blocks[1].branches, ["1x1+bn"])
        XCTAssertEqual(report.blocks[4].branches, ["1x1+bias", "identity+bn", "post-bn"])
    }

    func testStemStrideFollowsInputSizeOrOption() throws {
        var layouts = importTestLayouts
        layouts[0].stride = 2
        let net = ImportTestNetwork.build(layouts: layouts, seed: 21) { layout, rng in
            var b = ImportTestBlock(layout)
            b.dense = .random(out: layout.outChannels, inPerGroup: b.inPerGroup, kernel: 3, bias: false, bn: true, &rng)
            b.pointwise = .random(out: layout.outChannels, inPerGroup: b.inPerGroup, kernel: 1, bias: false, bn: true, &rng)
            if layout.identityFits { b.hasIdentity = true; b.identityBN = .random(layout.outChannels, &rng) }
            return b
        }
        let path = try importTestTemporaryFile("stem2.safetensors", try importTestSafetensors(net.stateDict(.officialRepVGG)))
        // Large inputs: the builder's stride-2 stem.
        try assertImportMatches(net, path: path, options: options(height: 72, width: 66))
        // Small inputs need the option to keep the stride-2 stem.
        var o = options(height: 20, width: 20)
        o.stemStride = 2
        try assertImportMatches(net, path: path, options: o)
        o.stemStride = nil
        XCTAssertEqual(try importCheckpoint(path: path, options: o).convs[0].stride, 1)
        o.blockStrides = [2, 2, 1, 2, 1, 1]
        try assertImportMatches(net, path: path, options: o)
    }
}

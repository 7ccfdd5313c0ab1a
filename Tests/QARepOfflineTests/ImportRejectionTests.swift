// Hostile or broken checkpoints must fail with an error that names the problem; nothing is executed.
import XCTest
import QARep
@testable import QARepOffline

final class ImportRejectionTests: XCTestCase {
    private func assertImportFails(_ bytes: [UInt8], name: String, mentioning expected: [String],
                                   options: ImportOptions = ImportOptions(),
                                   file: StaticString = #filePath, line: UInt = #line) throws {
        let path = try importTestTemporaryFile(name, bytes)
        XCTAssertThrowsError(try importCheckpoint(path: path, options: options), file: file, line: line) { error in
            let text = "\(error)"
            for fragment in expected {
                XCTAssertTrue(text.contains(fragment), "'\(text)' does not mention '\(fragment)'", file: file, line: line)
            }
        }
    }

    private var smallNetwork: ImportTestNetwork { ImportFamilyTests.officialNetwork(seed: 31) }

    func testForbiddenGlobalsAreRefusedByName() throws {
        let sd = smallNetwork.stateDict(.officialRepVGG)
        for (version, module, name) in [(UInt8(2), "os", "system"), (UInt8(4), "builtins", "eval"), (UInt8(2), "posix", "system")] {
            var builder = ImportTorchArchiveBuilder()
            builder.protocolVersion = version
            let root = importTestPickleRoot(sd, wrapper: "state_dict",
                                            extras: [("hook", .call(module: module, name: name, argument: "touch /tmp/pwned"))])
            try assertImportFails(try builder.archive(root: root, tensors: sd), name: "evil-\(name).pth",
                                  mentioning: ["refusing global", "\(module).\(name)"])
        }
    }

    func testCompressedEntryIsRejected() throws {
        let sd = smallNetwork.stateDict(.officialRepVGG)
        var builder = ImportTorchArchiveBuilder()
        builder.compressedEntries = ["archive/data/0"]
        try assertImportFails(try builder.archive(root: importTestPickleRoot(sd), tensors: sd), name: "deflated.pth",
                              mentioning: ["archive/data/0", "compressed"])
    }

    func testStorageSmallerThanClaimedIsRejected() throws {
        let sd = smallNetwork.stateDict(.officialRepVGG)
        var builder = ImportTorchArchiveBuilder()
        builder.claimedStorageCounts = ["linear.bias": 1_000_000]
        try assertImportFails(try builder.archive(root: importTestPickleRoot(sd), tensors: sd), name: "bigstorage.pth",
                              mentioning: ["linear.bias", "1000000 elements"])
        builder.claimedStorageCounts = ["linear.bias": 2]
        try assertImportFails(try builder.archive(root: importTestPickleRoot(sd), tensors: sd), name: "few.pth",
                              mentioning: ["size [5]", "more elements than its 2-element storage"])
        // A transposed view after a 3-element offset: 63 stored values, the view's last element is index 62.
        builder.stridedTensors = ["linear.weight"]
        builder.claimedStorageCounts = ["linear.weight": 62]
        try assertImportFails(try builder.archive(root: importTestPickleRoot(sd), tensors: sd), name: "view.pth",
                              mentioning: ["reaches past its 62-element storage"])
    }

    func testTruncatedFilesAreRejected() throws {
        let sd = smallNetwork.stateDict(.officialRepVGG)
        let safetensors = try importTestSafetensors(sd)
        for cut in [safetensors.count - 1, safetensors.count / 2, 20, 4] {
            try assertImportFails(Array(safetensors.prefix(cut)), name: "cut\(cut).safetensors", mentioning: [])
        }
        let zip = try ImportTorchArchiveBuilder().archive(root: importTestPickleRoot(sd), tensors: sd)
        try assertImportFails(Array(zip.prefix(zip.count - 30)), name: "cut.pth", mentioning: ["zip"])
        var corrupt = zip
        corrupt[200] ^= 0xFF
        try assertImportFails(corrupt, name: "flipped.pth", mentioning: [])
        try assertImportFails(Array("not a checkpoint at all".utf8), name: "text.bin", mentioning: ["neither"])
    }

    func testWrongShapesAreRejectedNamingTheKey() throws {
        var sd = smallNetwork.stateDict(.officialRepVGG)
        if let i = sd.entries.firstIndex(where: { $0.name == "stage1.1.rbr_1x1.conv.weight" }) {
            sd.entries[i].tensor.shape = [8, 2, 1, 1] // groups 4 here, but the 3x3 says groups 2
            sd.entries[i].tensor.values = Array(sd.entries[i].tensor.values.prefix(16))
        }
        try assertImportFails(try importTestSafetensors(sd), name: "shape1.safetensors",
                              mentioning: ["stage1.1.rbr_1x1", "[8, 2, 1, 1]", "[8, 4, 1, 1]"])

        var bn = smallNetwork.stateDict(.officialRepVGG)
        if let i = bn.entries.firstIndex(where: { $0.name == "stage2.0.rbr_dense.bn.running_var" }) {
            bn.entries[i].tensor.shape = [5]
            bn.entries[i].tensor.values = Array(bn.entries[i].tensor.values.prefix(5))
        }
        try assertImportFails(try importTestSafetensors(bn), name: "shape2.safetensors",
                              mentioning: ["stage2.0.rbr_dense.bn.running_var", "5 values", "expected 12"])

        var head = smallNetwork.stateDict(.officialRepVGG)
        head.entries.removeAll { $0.name == "linear.bias" }
        if let i = head.entries.firstIndex(where: { $0.name == "linear.weight" }) {
            head.entries[i].tensor.shape = [6, 10]
        }
        try assertImportFails(try importTestSafetensors(head), name: "shape3.safetensors",
                              mentioning: ["linear.weight", "10 features", "produces 12"])
    }

    func testUnknownKeysAndImpossibleIdentitiesAreRejected() throws {
        var extra = smallNetwork.stateDict(.officialRepVGG)
        extra.add("stage1.0.se.down.weight", [2, 8, 1, 1], [Float](repeating: 0, count: 16), dtype: "F32")
        try assertImportFails(try importTestSafetensors(extra), name: "extra.safetensors", mentioning: ["stage1.0.se.down.weight"])

        var identity = smallNetwork.stateDict(.officialRepVGG)
        identity.add("stage2.0.rbr_identity.running_mean", [12], [Float](repeating: 0, count: 12), dtype: "F32")
        identity.add("stage2.0.rbr_identity.running_var", [12], [Float](repeating: 1, count: 12), dtype: "F32")
        try assertImportFails(try importTestSafetensors(identity), name: "identity.safetensors",
                              mentioning: ["stage2.0", "identity", "8 to 12"])

        var labels = ImportOptions()
        labels.labels = ["a", "b"]
        try assertImportFails(try importTestSafetensors(smallNetwork.stateDict(.officialRepVGG)), name: "labels.safetensors",
                              mentioning: ["2 labels", "5 classes"], options: labels)
    }
}

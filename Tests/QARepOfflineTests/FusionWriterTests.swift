// `qarep fuse` output: official deploy names, read back to the identical network.
import XCTest
import QARep
@testable import QARepOffline

final class FusionWriterTests: XCTestCase {
    func testFusedCheckpointRoundTripsWithOfficialNames() throws {
        let net = ImportFamilyTests.qaNetwork(seed: 41)
        var options = ImportOptions()
        options.inputHeight = 12
        options.inputWidth = 12
        let source = try importTestTemporaryFile("rt-source.safetensors", try importTestSafetensors(net.stateDict(.qaRepVGG)))
        let fused = try importCheckpoint(path: source, options: options)
        let output = try importTestTemporaryFile("rt-fused.safetensors", [])
        try writeFusedCheckpoint(fused, path: output)

        let archive = try SafetensorsArchive(bytes: [UInt8](try Data(contentsOf: URL(fileURLWithPath: output))))
        XCTAssertEqual(Set(archive.tensors.keys), Set([
            "stage0", "stage1.0", "stage1.1", "stage2.0", "stage2.1", "stage2.2",
        ].flatMap { [$0 + ".rbr_reparam.weight", $0 + ".rbr_reparam.bias"] } + ["linear.weight", "linear.bias"]))
        XCTAssertEqual(archive.tensors["stage2.1.rbr_reparam.weight"]?.shape, [12, 3, 3, 3])

        // Read back with a different input size: the stored strides win over the stem convention.
        var other = options
        other.inputHeight = 224
        other.inputWidth = 224
        let back = try importCheckpoint(path: output, options: other)
        XCTAssertEqual(back.convs.count, fused.convs.count)
        for (a, b) in zip(fused.convs, back.convs) {
            XCTAssertEqual([a.inChannels, a.outChannels, a.stride, a.groups], [b.inChannels, b.outChannels, b.stride, b.groups])
            XCTAssertEqual(a.weight, b.weight)
            XCTAssertEqual(a.bias, b.bias)
        }
        XCTAssertEqual(back.fcWeight, fused.fcWeight)
        XCTAssertEqual(back.fcBias, fused.fcBias)

        XCTAssertThrowsError(try writeFusedCheckpoint(fused, path: output + ".pth"))
    }
}

// A second executor for tests only: the session's model run step by step through the single-layer
// kernels (qk_conv3x3_u8, qk_global_avgpool_u8, qk_fc_u8), so that every intermediate activation can be
// compared. It packs its own copy of the weights from the model's unpacked description.
import CQARepKernels
import XCTest
@testable import QARep

extension Session {
    /// Every intermediate activation of one run (conv outputs, then the pooled vector) and the logits.
    func capturingActivations(images: [UInt8], batch: Int) throws -> (activations: [[UInt8]], logits: [Float]) {
        let path = try XCTUnwrap(kernel.path)
        let description = try model.description
        let arithmetic = model.arithmetic
        let extra = Int(QK_EXTRA_BYTES)
        var activation = images + [UInt8](repeating: 0, count: extra)
        var captured: [[UInt8]] = []
        for (i, layer) in arithmetic.layers.enumerated() {
            var shape = layer.kernelShape
            var packed = [UInt8](repeating: 0, count: qk_conv3x3_packed_size(path, &shape))
            XCTAssertEqual(qk_conv3x3_pack(path, &shape, description.convs[i].weight, &packed), QK_OK)
            var output = [UInt8](repeating: 0, count: batch * layer.outputBytes + extra)
            let pad = layer.padValue + [UInt8](repeating: 0, count: extra)
            XCTAssertEqual(qk_conv3x3_u8(path, &shape, Int32(batch), packed, layer.bias, layer.multiplier, pad, activation,
                                         &output, Int32(threads)), QK_OK)
            captured.append(Array(output[0..<(batch * layer.outputBytes)]))
            activation = output
        }
        let channels = arithmetic.fcInChannels
        var pooled = [UInt8](repeating: 0, count: batch * channels + extra)
        XCTAssertEqual(qk_global_avgpool_u8(path, Int32(batch), Int32(arithmetic.lastPixels), Int32(channels), activation,
                                            arithmetic.poolMultiplier, &pooled, Int32(threads)), QK_OK)
        captured.append(Array(pooled[0..<(batch * channels)]))
        let classes = model.numClasses
        var packedFC = [UInt8](repeating: 0, count: qk_fc_packed_size(path, Int32(channels), Int32(classes)))
        XCTAssertEqual(qk_fc_pack(path, Int32(channels), Int32(classes), description.fcWeight, &packedFC), QK_OK)
        var logits = [Float](repeating: 0, count: batch * classes)
        XCTAssertEqual(qk_fc_u8(path, Int32(batch), Int32(channels), Int32(classes), packedFC, description.fcBias,
                                arithmetic.fcMultiplier, pooled, &logits, Int32(threads)), QK_OK)
        return (captured, logits)
    }
}

// The runtime's integer layers one at a time, for the offline module. Bias correction needs each layer's
// uint8 output while it is still changing that layer's bias, which a Session (the whole network, biases fixed
// at load) cannot give; running the same kernels with the loader's own derived arithmetic keeps the offline
// module from stating the requantization a second time.
import CQARepKernels

package struct IntegerLayers: Sendable {
    private let description: QuantizedModelDescription
    private let arithmetic: DerivedArithmetic
    private let path: qk_path
    private let threads: Int32

    /// Validates `description` as the loader does and derives its arithmetic; the layers run on the fastest
    /// kernel path (all paths give the same bytes) with up to `threads` threads.
    package init(_ description: QuantizedModelDescription, threads: Int) throws(QARepError) {
        guard threads >= 1 else { throw .invalidArgument("threads is \(threads), expected >= 1") }
        arithmetic = try description.validate()
        self.description = description
        path = qk_best_path()
        self.threads = Int32(clamping: threads)
    }

    package var convCount: Int { arithmetic.layers.count }

    /// Output height and width of conv `index`.
    package func outputSize(conv index: Int) -> (height: Int, width: Int) {
        (arithmetic.layers[index].outHeight, arithmetic.layers[index].outWidth)
    }

    /// B: what the kernel adds to conv `index`'s accumulators, the file's bias with the input zero point folded
    /// in for layer 0. B and the file's bias differ by a constant per channel, so a change of one is the same
    /// change of the other.
    package func accumulatorBias(conv index: Int) -> [Int32] { arithmetic.layers[index].bias }

    /// The uint8 value conv `index` reads outside the image, per input channel.
    package func padValues(conv index: Int) -> [UInt8] { arithmetic.layers[index].padValue }

    /// Conv `index` over `batch` NHWC images, adding `bias` (B, one per output channel) to the accumulators.
    package func conv(_ index: Int, bias: [Int32], input: [UInt8], batch: Int) throws(QARepError) -> [UInt8] {
        guard arithmetic.layers.indices.contains(index) else { throw .invalidArgument("no conv layer \(index)") }
        let layer = arithmetic.layers[index]
        guard batch >= 1, let batch32 = Int32(exactly: batch), input.count == batch * layer.inputBytes else {
            throw .invalidArgument("conv \(index): \(input.count) input bytes for a batch of \(batch) images of \(layer.inputBytes)")
        }
        guard bias.count == layer.outChannels else {
            throw .invalidArgument("conv \(index): \(bias.count) biases for \(layer.outChannels) channels")
        }
        var shape = layer.kernelShape
        let packedSize = qk_conv3x3_packed_size(path, &shape)
        guard packedSize > 0 else { throw QARepError(.internal, "the kernels rejected the shape of conv \(index)") }
        let packed = try AlignedBuffer(count: packedSize)
        let packStatus = description.convs[index].weight.withUnsafeBufferPointer {
            qk_conv3x3_pack(path, &shape, $0.baseAddress, packed.pointer)
        }
        guard packStatus == QK_OK else { throw QARepError(.internal, "the kernels refused to pack conv \(index)") }
        let source = try slackCopy(input)
        let pad = try slackCopy(layer.padValue)
        var output = [UInt8](repeating: 0, count: batch * layer.outputBytes)
        let status = bias.withUnsafeBufferPointer { bias in
            layer.multiplier.withUnsafeBufferPointer { multiplier in
                output.withUnsafeMutableBufferPointer { out in
                    qk_conv3x3_u8(path, &shape, batch32, packed.pointer, bias.baseAddress, multiplier.baseAddress,
                                  pad.bytes, source.bytes, out.baseAddress, threads)
                }
            }
        }
        guard status == QK_OK else { throw QARepError(.internal, "the kernels refused conv \(index) (status \(status.rawValue))") }
        return output
    }

    /// The global average pool over `batch` outputs of the last conv (NHWC): [batch][channels].
    package func pool(_ input: [UInt8], batch: Int) throws(QARepError) -> [UInt8] {
        let channels = arithmetic.fcInChannels, pixels = arithmetic.lastPixels
        guard batch >= 1, let batch32 = Int32(exactly: batch), input.count == batch * pixels * channels else {
            throw .invalidArgument("pool: \(input.count) input bytes for a batch of \(batch) images of \(pixels * channels)")
        }
        let source = try slackCopy(input)
        var output = [UInt8](repeating: 0, count: batch * channels)
        let status = output.withUnsafeMutableBufferPointer { out in
            qk_global_avgpool_u8(path, batch32, Int32(pixels), Int32(channels), source.bytes, arithmetic.poolMultiplier,
                                 out.baseAddress, threads)
        }
        guard status == QK_OK else { throw QARepError(.internal, "the kernels refused the pool (status \(status.rawValue))") }
        return output
    }

    /// `bytes` in aligned memory with the QK_EXTRA_BYTES of readable slack the SIMD kernels may load past the end.
    private func slackCopy(_ bytes: [UInt8]) throws(QARepError) -> AlignedBuffer {
        let extra = Int(QK_EXTRA_BYTES)
        let buffer = try AlignedBuffer(count: bytes.count + extra)
        bytes.withUnsafeBytes { if let base = $0.baseAddress { buffer.pointer.copyMemory(from: base, byteCount: $0.count) } }
        (buffer.pointer + bytes.count).initializeMemory(as: UInt8.self, repeating: 0, count: extra)
        return buffer
    }
}

// FP32 forward pass of a FusedNetwork, used to observe activations for calibration and as the float reference
// the INT8 model is compared with. Convolutions are im2col + sgemm per group. Activations are kept as
// [channel][image][row][column] so that one GEMM covers the whole batch (wide N even for the 7x7 last stage).
import COpenBLAS
import Dispatch  // concurrentPerform, which Foundation re-exported
import Synchronization
#if canImport(FoundationEssentials)
// FoundationEssentials, not Foundation: linked statically, Foundation's internationalization brings ICU's
// data (tens of MB) into the CLI. Glibc gives the math and stdio that Foundation re-exported.
import FoundationEssentials
import Glibc
#else
import Foundation
#endif
import QARep

public struct ForwardError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Where an observed activation comes from.
public enum ActivationSite: Sendable, Equatable, Hashable {
    /// Output of conv layer i after bias and ReLU.
    case conv(Int)
    /// Global-average-pooled vector fed to the FC layer.
    case pool
}

/// Called once per site and batch with every value of that activation (in no particular order).
public typealias ActivationObserver = (ActivationSite, UnsafeBufferPointer<Float>) -> Void

public struct FP32Forward: Sendable {
    public let network: FusedNetwork
    /// Output height and width of each conv layer.
    let layerHeights: [Int]
    let layerWidths: [Int]

    public init(network: FusedNetwork) throws {
        guard network.inputHeight > 0, network.inputWidth > 0, !network.convs.isEmpty else {
            throw ForwardError("network has no conv layers or an empty input size")
        }
        var channels = 3
        var height = network.inputHeight, width = network.inputWidth
        var heights: [Int] = [], widths: [Int] = []
        for (index, conv) in network.convs.enumerated() {
            guard conv.inChannels == channels, conv.outChannels > 0, conv.groups > 0,
                  conv.inChannels % conv.groups == 0, conv.outChannels % conv.groups == 0,
                  conv.stride == 1 || conv.stride == 2 else {
                throw ForwardError("conv \(index): inconsistent shape (in \(conv.inChannels), expected \(channels); out \(conv.outChannels); groups \(conv.groups); stride \(conv.stride))")
            }
            guard conv.weight.count == conv.outChannels * (conv.inChannels / conv.groups) * 9,
                  conv.bias.count == conv.outChannels else {
                throw ForwardError("conv \(index): weight or bias size does not match its shape")
            }
            height = convOutputSize(height, stride: conv.stride)
            width = convOutputSize(width, stride: conv.stride)
            heights.append(height)
            widths.append(width)
            channels = conv.outChannels
        }
        guard network.numClasses > 0, network.fcWeight.count == network.numClasses * channels,
              network.fcBias.count == network.numClasses else {
            throw ForwardError("fc weight/bias size does not match \(network.numClasses) classes x \(channels) channels")
        }
        self.network = network
        self.layerHeights = heights
        self.layerWidths = widths
    }

    public var inputPixelCount: Int { network.inputHeight * network.inputWidth * 3 }

    /// Logits [count][numClasses] for `count` images given as uint8 HWC RGB pixels (input size of the network),
    /// normalized exactly as docs/model-format.md says: (pixel / 255 - mean) / std.
    public func logits(pixels: UnsafeBufferPointer<UInt8>, count: Int, workspace: FP32ForwardWorkspace? = nil,
                       observer: ActivationObserver? = nil) throws -> [Float] {
        let plane = network.inputHeight * network.inputWidth
        guard count > 0, pixels.count == count * plane * 3 else {
            throw ForwardError("expected \(count) images of \(plane * 3) bytes, got \(pixels.count) bytes")
        }
        guard network.preprocessing.mean.count == 3, network.preprocessing.std.count == 3 else {
            throw ForwardError("preprocessing needs 3 means and 3 stds")
        }
        var input = normalizedInput(pixels, count: count)
        return try run(channelMajorInput: &input, count: count, workspace: workspace, observer: observer)
    }

    /// Logits [count][numClasses] for already-normalized NCHW float input.
    public func logits(nchw: [Float], count: Int, workspace: FP32ForwardWorkspace? = nil,
                       observer: ActivationObserver? = nil) throws -> [Float] {
        let plane = network.inputHeight * network.inputWidth
        guard count > 0, nchw.count == count * plane * 3 else {
            throw ForwardError("expected \(count) x 3 x \(network.inputHeight) x \(network.inputWidth) floats, got \(nchw.count)")
        }
        var input = [Float](repeating: 0, count: nchw.count)
        for image in 0..<count {
            for channel in 0..<3 {
                let from = (image * 3 + channel) * plane, to = (channel * count + image) * plane
                input[to..<(to + plane)] = nchw[from..<(from + plane)]
            }
        }
        return try run(channelMajorInput: &input, count: count, workspace: workspace, observer: observer)
    }

    private func run(channelMajorInput: inout [Float], count: Int, workspace: FP32ForwardWorkspace?,
                     observer: ActivationObserver?) throws -> [Float] {
        let workspace = workspace ?? FP32ForwardWorkspace()
        var current = workspace.buffer(0, count: channelMajorInput.count)
        _ = channelMajorInput.withUnsafeBufferPointer { current.initialize(fromContentsOf: $0) }
        var height = network.inputHeight, width = network.inputWidth
        for (index, conv) in network.convs.enumerated() {
            let outHeight = layerHeights[index], outWidth = layerWidths[index]
            let spatial = count * outHeight * outWidth
            let output = workspace.buffer(index % 2 == 0 ? 1 : 0, count: conv.outChannels * spatial)
            convolve(conv, input: UnsafeBufferPointer(current), count: count, height: height, width: width,
                     outHeight: outHeight, outWidth: outWidth, workspace: workspace, output: output, relu: true)
            if let observer { observer(.conv(index), UnsafeBufferPointer(output)) }
            current = output
            height = outHeight
            width = outWidth
        }
        return head(UnsafeBufferPointer(current), count: count, observer: observer)
    }

    /// `conv` (layer `index`'s shape, any weights) on channel-major input of `count` images of layer `index`'s
    /// input size: [outChannels][count][outHeight][outWidth], + bias, ReLU unless `relu` is false. The analysis and
    /// the layer-by-layer refinement step through the network with it, with FP32 or dequantized weights.
    func layer(_ index: Int, conv: FusedConv, input: UnsafeBufferPointer<Float>, count: Int, relu: Bool = true,
               workspace: FP32ForwardWorkspace) -> [Float] {
        let height = index == 0 ? network.inputHeight : layerHeights[index - 1]
        let width = index == 0 ? network.inputWidth : layerWidths[index - 1]
        let outHeight = layerHeights[index], outWidth = layerWidths[index]
        let spatial = count * outHeight * outWidth
        var output = [Float](repeating: 0, count: conv.outChannels * spatial)
        output.withUnsafeMutableBufferPointer {
            convolve(conv, input: input, count: count, height: height, width: width, outHeight: outHeight,
                     outWidth: outWidth, workspace: workspace, output: $0, relu: relu)
        }
        return output
    }

    /// Input height and width of conv `index`.
    func inputSize(conv index: Int) -> (height: Int, width: Int) {
        index == 0 ? (network.inputHeight, network.inputWidth) : (layerHeights[index - 1], layerWidths[index - 1])
    }

    /// Pool + FC on the last conv's channel-major output of `count` images: logits [count][numClasses].
    func head(_ last: UnsafeBufferPointer<Float>, count: Int, observer: ActivationObserver? = nil) -> [Float] {
        let channels = network.convs[network.convs.count - 1].outChannels
        let plane = layerHeights[layerHeights.count - 1] * layerWidths[layerWidths.count - 1]
        var pooled = [Float](repeating: 0, count: count * channels)
        for channel in 0..<channels {
            for image in 0..<count {
                var sum: Float = 0
                let base = (channel * count + image) * plane
                for index in 0..<plane { sum += last[base + index] }
                pooled[image * channels + channel] = sum / Float(plane)
            }
        }
        if let observer { pooled.withUnsafeBufferPointer { observer(.pool, $0) } }
        let classes = network.numClasses
        var logits = [Float](repeating: 0, count: count * classes)
        for image in 0..<count {
            for k in 0..<classes { logits[image * classes + k] = network.fcBias[k] }
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(count), Int32(classes), Int32(channels),
                    1, pooled, Int32(channels), network.fcWeight, Int32(channels), 1, &logits, Int32(classes))
        return logits
    }

    /// Layer 0's channel-major normalized input for uint8 HWC pixels.
    func normalizedInput(_ pixels: UnsafeBufferPointer<UInt8>, count: Int) -> [Float] {
        let plane = network.inputHeight * network.inputWidth
        let mean = network.preprocessing.mean, std = network.preprocessing.std
        var input = [Float](repeating: 0, count: count * plane * 3)
        for channel in 0..<3 {
            let m = mean[channel], s = std[channel]
            for image in 0..<count {
                let out = (channel * count + image) * plane
                let source = image * plane * 3 + channel
                for index in 0..<plane { input[out + index] = (Float(pixels[source + 3 * index]) / 255 - m) / s }
            }
        }
        return input
    }

    /// im2col + sgemm, cut into blocks of output columns (image, row, column) that the workers take in turn: each
    /// fills its block's columns into a buffer that stays in cache and multiplies it with a single-threaded sgemm
    /// straight into the output, then adds the bias. The whole-layer column matrix (tens of MB at batch 64) went
    /// through memory twice, and OpenBLAS's own threads spun (sched_yield) between the calls; see
    /// docs/calibration.md, "Calibration time". The workers are `fp32ForwardThreads` (calibration's --threads);
    /// each column's sum is the same whatever the blocks.
    private func convolve(_ conv: FusedConv, input: UnsafeBufferPointer<Float>, count: Int, height: Int, width: Int,
                          outHeight: Int, outWidth: Int, workspace: FP32ForwardWorkspace,
                          output: UnsafeMutableBufferPointer<Float>, relu: Bool) {
        let inPerGroup = conv.inChannels / conv.groups, outPerGroup = conv.outChannels / conv.groups
        let depth = inPerGroup * 9
        let spatial = count * outHeight * outWidth
        let blockWidth = min(spatial, max(16, columnBlockFloats / depth / 16 * 16))
        let blocks = (spatial + blockWidth - 1) / blockWidth
        let workers = min(blocks, calibrationWorkers())
        let columns = workspace.buffer(3, count: workers * depth * blockWidth)
        guard let inputBase = input.baseAddress, let columnBase = columns.baseAddress, let outputBase = output.baseAddress else { return }
        let source = SendablePointer(inputBase), target = SendableMutablePointer(columnBase)
        let result = SendableMutablePointer(outputBase)
        let shape = ColumnShape(channelOffset: 0, rows: depth, count: count, height: height, width: width,
                                outHeight: outHeight, outWidth: outWidth, stride: conv.stride)
        withSingleThreadedBLAS {
            conv.weight.withUnsafeBufferPointer { weights in
                conv.bias.withUnsafeBufferPointer { biases in
                    guard let weightBase = weights.baseAddress, let biasBase = biases.baseAddress else { return }
                    let weight = SendablePointer(weightBase), bias = SendablePointer(biasBase)
                    // Blocks are taken from a shared counter, not dealt out in advance: on a loaded machine a worker
                    // that loses its core for a while then holds up no block of its own.
                    let next = WorkCounter()
                    let work: @Sendable (Int) -> Void = { worker in
                        let buffer = target.base + worker * depth * blockWidth
                        while true {
                            let item = next.take()
                            guard item < blocks * conv.groups else { break }
                            let group = item / blocks, first = item % blocks * blockWidth
                            let width = min(blockWidth, spatial - first)
                            var groupShape = shape
                            groupShape.channelOffset = group * inPerGroup
                            fillColumnBlock(groupShape, source: source.base, columns: first..<(first + width), target: buffer)
                            let out = result.base + group * outPerGroup * spatial + first
                            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(outPerGroup), Int32(width), Int32(depth),
                                        1, weight.base + group * outPerGroup * depth, Int32(depth), buffer, Int32(width),
                                        0, out, Int32(spatial))
                            for row in 0..<outPerGroup {
                                let b = bias.base[group * outPerGroup + row]
                                let line = out + row * spatial
                                if relu {
                                    for index in 0..<width { line[index] = max(line[index] + b, 0) }
                                } else {
                                    for index in 0..<width { line[index] += b }
                                }
                            }
                        }
                    }
                    if workers == 1 { work(0) } else { DispatchQueue.concurrentPerform(iterations: workers, execute: work) }
                }
            }
        }
    }
}

/// Workers of the FP32 forward's convolutions; 0 is one per CPU. Calibration sets it from its `threads`.
let fp32ForwardThreads = Atomic<Int>(0)

/// Calibration's thread count (`fp32ForwardThreads` resolved: 0 is one per CPU), for the FP32 forward and GPTQ.
func calibrationWorkers() -> Int {
    let setting = fp32ForwardThreads.load(ordering: .relaxed)
    return max(1, setting > 0 ? setting : ProcessInfo.processInfo.activeProcessorCount)
}

/// Hands out consecutive work item numbers to concurrent workers.
final class WorkCounter: Sendable {
    private let counter = Atomic<Int>(0)
    func take() -> Int { counter.add(1, ordering: .relaxed).oldValue }
}

/// Floats of one worker's im2col block (1 MB: Zen 4's L2, and well inside others'), so that the block is still in
/// cache when sgemm reads it.
let columnBlockFloats = 256 * 1024

/// Runs `body` with OpenBLAS on one thread (the caller's), restoring its thread count after: the FP32 forward
/// threads over blocks itself and calls sgemm from each worker.
func withSingleThreadedBLAS<T>(_ body: () throws -> T) rethrows -> T {
    let threads = openblas_get_num_threads()
    if threads != 1 { openblas_set_num_threads(1) }
    defer { if threads != 1 { openblas_set_num_threads(threads) } }
    return try body()
}

/// Reusable activation and im2col buffers, so that a calibration loop does not allocate (and page-fault in)
/// tens of megabytes per layer and batch. One workspace serves one thread at a time.
public final class FP32ForwardWorkspace {
    private var buffers: [UnsafeMutableBufferPointer<Float>] = []

    public init() {}

    /// Buffer `slot`, at least `count` floats; contents are unspecified.
    func buffer(_ slot: Int, count: Int) -> UnsafeMutableBufferPointer<Float> {
        while buffers.count <= slot { buffers.append(UnsafeMutableBufferPointer(start: nil, count: 0)) }
        if buffers[slot].count < count {
            buffers[slot].deallocate()
            buffers[slot] = UnsafeMutableBufferPointer<Float>.allocate(capacity: count)
        }
        return UnsafeMutableBufferPointer(rebasing: buffers[slot][0..<count])
    }

    deinit {
        for buffer in buffers { buffer.deallocate() }
    }
}

/// A pointer handed to concurrent workers, each of which reads (or writes) parts no other worker writes.
struct SendablePointer<Pointee>: @unchecked Sendable {
    let base: UnsafePointer<Pointee>
    init(_ base: UnsafePointer<Pointee>) { self.base = base }
}

struct SendableMutablePointer<Pointee>: @unchecked Sendable {
    let base: UnsafeMutablePointer<Pointee>
    init(_ base: UnsafeMutablePointer<Pointee>) { self.base = base }
}

struct ColumnShape: Sendable {
    var channelOffset: Int
    var rows: Int
    var count: Int
    var height: Int
    var width: Int
    var outHeight: Int
    var outWidth: Int
    var stride: Int
}

/// im2col for a 3x3, pad-1 conv over channel-major activations: row (c, ky, kx), column (image, oy, ox), with
/// the FP32 network's zero padding. Rows are split across cores; each worker writes only its own rows.
func fillColumns(_ shape: ColumnShape, source: SendablePointer<Float>, target: SendableMutablePointer<Float>) {
    let workers = max(1, min(shape.rows, ProcessInfo.processInfo.activeProcessorCount))
    let spatial = shape.count * shape.outHeight * shape.outWidth
    DispatchQueue.concurrentPerform(iterations: workers) { part in
        let rows = (part * shape.rows / workers)..<((part + 1) * shape.rows / workers)
        fillColumnBlock(shape, source: source.base, columns: 0..<spatial, rows: rows, target: target.base + rows.lowerBound * spatial)
    }
}

/// im2col of columns `columns` (of the layer's count x outHeight x outWidth) and rows `rows` (all by default) into
/// `target`, row after row, each row `columns.count` long. The block's columns fall into runs within one output
/// row, the same for every im2col row, so they are found once; each run is then a copy (stride 1) or a gather
/// (stride 2), with zeros where the tap reads the border.
func fillColumnBlock(_ shape: ColumnShape, source input: UnsafePointer<Float>, columns: Range<Int>, rows: Range<Int>? = nil,
                     target: UnsafeMutablePointer<Float>) {
    let height = shape.height, width = shape.width, outWidth = shape.outWidth, stride = shape.stride
    let plane = height * width
    // Per run: the image's offset in a channel plane, the first input row (oy * stride), the first output column
    // and the run's length.
    var runs: [(image: Int, inRow: Int, firstColumn: Int, span: Int)] = []
    var image = columns.lowerBound / (shape.outHeight * outWidth)
    var oy = columns.lowerBound / outWidth % shape.outHeight, ox = columns.lowerBound % outWidth
    var column = columns.lowerBound
    while column < columns.upperBound {
        let span = min(outWidth - ox, columns.upperBound - column)
        runs.append((image * plane, oy * stride, ox, span))
        column += span
        ox = 0
        oy += 1
        if oy == shape.outHeight { oy = 0; image += 1 }
    }
    var out = target
    for row in rows ?? 0..<shape.rows {
        let channel = input + (shape.channelOffset + row / 9) * shape.count * plane
        let ky = (row % 9) / 3 - 1, kx = row % 3 - 1
        // Output columns ox whose tap reads inside the image: lowX..<highX.
        let lowX = kx < 0 ? 1 : 0
        let highX = width - 1 - kx < 0 ? 0 : min(outWidth, (width - 1 - kx) / stride + 1)
        for run in runs {
            let iy = run.inRow &+ ky
            let ox0 = run.firstColumn, ox1 = ox0 &+ run.span
            let from = max(ox0, lowX), to = min(ox1, highX)
            if iy < 0 || iy >= height || from >= to {
                out.update(repeating: 0, count: run.span)
            } else {
                // Wrapping arithmetic and pointers: the checked forms kept these loops from being vectorized.
                let head = from &- ox0, count = to &- from, tail = ox1 &- to
                if head > 0 { out.update(repeating: 0, count: head) }
                let line = channel + (run.image &+ iy &* width &+ kx &+ from &* stride), destination = out + head
                if stride == 1 {
                    if count >= 16 {
                        destination.update(from: line, count: count)
                    } else {
                        var index = 0
                        while index < count { destination[index] = line[index]; index &+= 1 }
                    }
                } else {
                    var index = 0
                    while index < count { destination[index] = line[index &* stride]; index &+= 1 }
                }
                if tail > 0 { (destination + count).update(repeating: 0, count: tail) }
            }
            out += run.span
        }
    }
}

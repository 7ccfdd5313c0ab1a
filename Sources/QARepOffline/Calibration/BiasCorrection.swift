// Empirical bias correction (AIMET's empirical bias correction, OpenVINO NNCF's bias correction): rounding the
// weights and the earlier layers' activations shifts the mean of each layer's output. The shift is measured on
// calibration images and folded back into the int32 bias, layer by layer in network order, so each layer is
// corrected for what the already-corrected layers before it still leave.
//
// A convolution is linear, so the mean of its pre-activation output over images and pixels is
// bias + W . (mean of each im2col row), the row means being per (input channel, tap) means of the zero-padded
// input. Only those tap means are needed: for the FP32 network they are gathered during the observation pass;
// for the INT8 network they come from an emulation of the runtime's integer arithmetic on the same images.
import COpenBLAS
import Foundation
import QARep

/// Calibration images used for bias correction are capped at this many input pixels (32 images at 224x224): the
/// per-channel means need far fewer samples than the thresholds, and the emulation keeps every image's current
/// uint8 activation in memory and costs about one FP32 forward per image.
let biasCorrectionPixelBudget = 32 * 224 * 224

/// Sums over images and output positions of each (input channel, tap) of a 3x3 pad-1 conv's input, i.e. the
/// im2col row sums, and the number of output positions summed over.
struct TapSums {
    var sums: [Double]
    var positions: Double = 0

    init(channels: Int) { sums = [Double](repeating: 0, count: channels * 9) }

    func mean(channel: Int, tap: Int) -> Double { positions > 0 ? sums[channel * 9 + tap] / positions : 0 }

    /// Adds a channel-major batch [channel][image][y][x] feeding a conv of the given stride.
    mutating func add(_ values: UnsafeBufferPointer<Float>, channels: Int, count: Int, height: Int, width: Int,
                      stride: Int) {
        let outHeight = (height - 1) / stride + 1, outWidth = (width - 1) / stride + 1
        var rowPartials = [Double](repeating: 0, count: height * 3)
        for channel in 0..<channels {
            var channelSums = (0..<9).map { _ in 0.0 }
            for image in 0..<count {
                let plane = (channel * count + image) * height * width
                // Per input row, the sum over the columns each horizontal tap reads; then the rows each vertical
                // tap reads. Out-of-image taps read the zero padding and add nothing.
                for y in 0..<height {
                    let row = plane + y * width
                    for kx in 0..<3 {
                        var sum = 0.0
                        for ox in 0..<outWidth {
                            let x = ox * stride + kx - 1
                            if x >= 0, x < width { sum += Double(values[row + x]) }
                        }
                        rowPartials[y * 3 + kx] = sum
                    }
                }
                for ky in 0..<3 {
                    for oy in 0..<outHeight {
                        let y = oy * stride + ky - 1
                        guard y >= 0, y < height else { continue }
                        for kx in 0..<3 { channelSums[ky * 3 + kx] += rowPartials[y * 3 + kx] }
                    }
                }
            }
            for tap in 0..<9 { sums[channel * 9 + tap] += channelSums[tap] }
        }
        positions += Double(count * outHeight * outWidth)
    }
}

/// The FP32 network's conv-input tap sums and pooled-vector sums, gathered while observing activations.
struct FP32MeanStatistics {
    var convInputs: [TapSums]
    var poolSums: [Double]
    var poolCount: Double = 0
    private let forward: FP32Forward

    init(forward: FP32Forward) {
        self.forward = forward
        convInputs = forward.network.convs.map { TapSums(channels: $0.inChannels) }
        poolSums = [Double](repeating: 0, count: forward.network.convs[forward.network.convs.count - 1].outChannels)
    }

    /// Layer 0's input: the normalized image, as FP32Forward computes it.
    mutating func addInput(pixels: UnsafeBufferPointer<UInt8>, count: Int) {
        let network = forward.network
        let plane = network.inputHeight * network.inputWidth
        var input = [Float](repeating: 0, count: count * plane * 3)
        for channel in 0..<3 {
            let m = network.preprocessing.mean[channel], s = network.preprocessing.std[channel]
            for image in 0..<count {
                let out = (channel * count + image) * plane, source = image * plane * 3 + channel
                for index in 0..<plane { input[out + index] = (Float(pixels[source + 3 * index]) / 255 - m) / s }
            }
        }
        input.withUnsafeBufferPointer {
            convInputs[0].add($0, channels: 3, count: count, height: network.inputHeight, width: network.inputWidth,
                              stride: network.convs[0].stride)
        }
    }

    /// An observed activation of a batch of `count` images (FP32Forward's layouts).
    mutating func observe(_ site: ActivationSite, _ values: UnsafeBufferPointer<Float>, count: Int) {
        switch site {
        case .conv(let index):
            guard index + 1 < forward.network.convs.count else { return }
            convInputs[index + 1].add(values, channels: forward.network.convs[index].outChannels, count: count,
                                      height: forward.layerHeights[index], width: forward.layerWidths[index],
                                      stride: forward.network.convs[index + 1].stride)
        case .pool:
            let channels = poolSums.count
            for image in 0..<count {
                for channel in 0..<channels { poolSums[channel] += Double(values[image * channels + channel]) }
            }
            poolCount += Double(count)
        }
    }
}

/// Largest |bias| the loader accepts given the accumulator bound (docs/model-format.md).
func biasLimit(accumulatorBound: Int64) -> Int64 { Int64(Int32.max) - accumulatorBound }

/// `value` (an integer-valued double, possibly huge) clamped to [-limit, limit], converted only once in range.
private func clampedBias(_ value: Double, limit: Int64, clamped: inout Bool) -> Int64 {
    if abs(value) > Double(limit) { clamped = true }
    return Int64(min(max(value, -Double(limit)), Double(limit)))
}

/// Corrects `description`'s conv and FC biases so that, on `data`, the emulated INT8 network's mean
/// pre-activation output of every layer equals the FP32 network's (`reference`, gathered on the same images).
/// Returns, per conv layer and then for the FC, the mean |correction| over output channels in units of that
/// layer's output step (conv) or logit units (FC), and the biases whose correction hit the accumulator bound.
/// `progress(layersDone)` follows each conv layer and the FC.
func correctBiases(_ description: inout QuantizedModelDescription, forward: FP32Forward, data: CalibrationData,
                   reference: FP32MeanStatistics, batchSize: Int,
                   progress: (Int) -> Void = { _ in }) throws -> (shifts: [Double], clamped: [String]) {
    let network = forward.network
    guard description.convs.count == network.convs.count, data.count > 0 else {
        throw CalibrationError("bias correction needs the network's layers and at least one image")
    }
    var chunks: [(start: Int, count: Int)] = []
    var start = 0
    while start < data.count {
        chunks.append((start, min(batchSize, data.count - start)))
        start += batchSize
    }
    let plane = network.inputHeight * network.inputWidth
    let zeroPoints = description.inputZeroPoint.map(Float.init)
    // Layer 0 sees pixel - zero_point with zero padding: the runtime pads with the zero point, and its
    // B_0 = bias - sum(w * zero_point) turns sum(w * pixel) + B_0 into sum(w * (pixel - zero_point)) + bias.
    func inputChunk(_ chunk: (start: Int, count: Int)) -> [Float] {
        var values = [Float](repeating: 0, count: chunk.count * plane * 3)
        for channel in 0..<3 {
            for image in 0..<chunk.count {
                let out = (channel * chunk.count + image) * plane
                let source = (chunk.start + image) * plane * 3 + channel
                for index in 0..<plane { values[out + index] = Float(data.pixels[source + 3 * index]) - zeroPoints[channel] }
            }
        }
        return values
    }
    var stored: [[UInt8]] = []  // the current layer's uint8 input, per chunk (empty for layer 0)
    var height = network.inputHeight, width = network.inputWidth
    var inScale = description.inputScale
    var shifts: [Double] = []
    var clampedNames: [String] = []
    let workspace = FP32ForwardWorkspace()
    for (index, conv) in network.convs.enumerated() {
        let layer = description.convs[index]
        let materialize: (Int) -> [Float] = { chunkIndex in
            index == 0 ? inputChunk(chunks[chunkIndex]) : stored[chunkIndex].map(Float.init)
        }
        var quantizedTaps = TapSums(channels: conv.inChannels)
        for chunkIndex in chunks.indices {
            materialize(chunkIndex).withUnsafeBufferPointer {
                quantizedTaps.add($0, channels: conv.inChannels, count: chunks[chunkIndex].count, height: height,
                                  width: width, stride: conv.stride)
            }
        }
        let inPerGroup = conv.inChannels / conv.groups, outPerGroup = conv.outChannels / conv.groups
        let rowLength = inPerGroup * 9
        let limit = biasLimit(accumulatorBound: Int64(9 * inPerGroup * 255 * 127))
        var bias = layer.bias
        var shiftSum = 0.0
        var clampedHere = false
        for output in 0..<conv.outChannels {
            let group = output / outPerGroup
            var fp32Mean = Double(conv.bias[output]), int8Mean = Double(layer.bias[output])
            var zeroPointSum: Int64 = 0
            for channel in 0..<inPerGroup {
                let c = group * inPerGroup + channel
                for tap in 0..<9 {
                    let position = output * rowLength + channel * 9 + tap
                    fp32Mean += Double(conv.weight[position]) * reference.convInputs[index].mean(channel: c, tap: tap)
                    int8Mean += Double(layer.weight[position]) * quantizedTaps.mean(channel: c, tap: tap)
                    if index == 0 { zeroPointSum += Int64(layer.weight[position]) * Int64(description.inputZeroPoint[c]) }
                }
            }
            let unit = Double(inScale) * Double(layer.weightScale[output])
            let shift = (fp32Mean / unit - int8Mean).rounded(.toNearestOrEven)
            guard shift.isFinite else { continue }
            // The loader's bound is on B = bias - sum(w * zero_point) (layer 0) or bias (later layers).
            let effective = clampedBias(Double(Int64(bias[output]) - zeroPointSum) + shift, limit: limit, clamped: &clampedHere)
            bias[output] = Int32(effective + zeroPointSum)
            shiftSum += abs(Double(Int64(bias[output]) - Int64(layer.bias[output]))) * unit / Double(layer.outputScale)
        }
        description.convs[index].bias = bias
        if clampedHere { clampedNames.append("conv.\(index).bias") }
        shifts.append(shiftSum / Double(conv.outChannels))

        // This layer's uint8 output with the corrected bias, as the runtime computes it.
        let outHeight = forward.layerHeights[index], outWidth = forward.layerWidths[index]
        let multipliers = layer.weightScale.map { Float(Double(inScale) * Double($0) / Double(layer.outputScale)) }
        let weights = layer.weight.map(Float.init)
        var next: [[UInt8]] = []
        for chunkIndex in chunks.indices {
            let count = chunks[chunkIndex].count
            let spatial = count * outHeight * outWidth
            let accumulators = workspace.buffer(1, count: conv.outChannels * spatial)
            let columns = workspace.buffer(2, count: rowLength * spatial)
            let input = materialize(chunkIndex)
            input.withUnsafeBufferPointer { source in
                weights.withUnsafeBufferPointer { weightBuffer in
                    guard let sourceBase = source.baseAddress, let columnBase = columns.baseAddress,
                          let accumulatorBase = accumulators.baseAddress, let weightBase = weightBuffer.baseAddress else { return }
                    for group in 0..<conv.groups {
                        let shape = ColumnShape(channelOffset: group * inPerGroup, rows: rowLength, count: count,
                                                height: height, width: width, outHeight: outHeight, outWidth: outWidth,
                                                stride: conv.stride)
                        fillColumns(shape, source: SendablePointer(sourceBase), target: SendableMutablePointer(columnBase))
                        // Integer-valued operands: the float sums are the exact int32 accumulators while they stay
                        // below 2^24, and within a few units of them beyond.
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(outPerGroup), Int32(spatial),
                                    Int32(rowLength), 1, weightBase + group * outPerGroup * rowLength, Int32(rowLength),
                                    columnBase, Int32(spatial), 0, accumulatorBase + group * outPerGroup * spatial,
                                    Int32(spatial))
                    }
                }
            }
            var output = [UInt8](repeating: 0, count: conv.outChannels * spatial)
            for channel in 0..<conv.outChannels {
                let b = Int64(bias[channel]), multiplier = multipliers[channel]
                for position in (channel * spatial)..<((channel + 1) * spatial) {
                    let accumulator = Int64(accumulators[position].rounded())
                    let scaled = min(max(Float(accumulator + b) * multiplier, 0), 255)
                    output[position] = UInt8(scaled.rounded(.toNearestOrEven))
                }
            }
            next.append(output)
        }
        stored = next
        progress(index + 1)
        height = outHeight
        width = outWidth
        inScale = layer.outputScale
    }

    // Pool as the runtime does it, then the FC's mean logits.
    let channels = network.convs[network.convs.count - 1].outChannels
    let pixelsPerPlane = height * width
    let poolMultiplier = Float(Double(inScale) / (Double(pixelsPerPlane) * Double(description.poolOutputScale)))
    var pooledSums = [Double](repeating: 0, count: channels)
    for chunkIndex in chunks.indices {
        let count = chunks[chunkIndex].count
        for channel in 0..<channels {
            for image in 0..<count {
                let base = (channel * count + image) * pixelsPerPlane
                var sum: Int64 = 0
                for position in base..<(base + pixelsPerPlane) { sum += Int64(stored[chunkIndex][position]) }
                pooledSums[channel] += Double(min(max(Float(sum) * poolMultiplier, 0), 255).rounded(.toNearestOrEven))
            }
        }
    }
    let fcLimit = biasLimit(accumulatorBound: Int64(channels * 255 * 127))
    var fcShift = 0.0
    var fcClamped = false
    for k in 0..<network.numClasses {
        var fp32Mean = Double(network.fcBias[k]), int8Mean = Double(description.fcBias[k])
        for channel in 0..<channels {
            let position = k * channels + channel
            if reference.poolCount > 0 { fp32Mean += Double(network.fcWeight[position]) * reference.poolSums[channel] / reference.poolCount }
            int8Mean += Double(description.fcWeight[position]) * pooledSums[channel] / Double(data.count)
        }
        let unit = Double(description.poolOutputScale) * Double(description.fcWeightScale[k])
        let shift = (fp32Mean / unit - int8Mean).rounded(.toNearestOrEven)
        guard shift.isFinite else { continue }
        let corrected = clampedBias(Double(description.fcBias[k]) + shift, limit: fcLimit, clamped: &fcClamped)
        fcShift += abs(Double(corrected - Int64(description.fcBias[k]))) * unit
        description.fcBias[k] = Int32(corrected)
    }
    shifts.append(fcShift / Double(network.numClasses))
    if fcClamped { clampedNames.append("fc.bias") }
    progress(network.convs.count + 1)
    return (shifts, clampedNames)
}

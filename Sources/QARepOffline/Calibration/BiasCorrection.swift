// Empirical bias correction (AIMET's empirical bias correction, OpenVINO NNCF's bias correction): rounding the
// weights and the earlier layers' activations shifts the mean of each layer's output. The shift is measured on
// calibration images and folded back into the int32 bias, layer by layer in network order, so each layer is
// corrected for what the already-corrected layers before it still leave.
//
// A convolution is linear, so the mean of its pre-activation output over images and pixels is
// bias + W . (mean of each im2col row), the row means being per (input channel, tap) means of the padded
// input. Only those tap means are needed: for the FP32 network they are gathered during the observation pass;
// for the INT8 network they are taken from the runtime's own kernels run on the same images (IntegerLayers).
import QARep

/// Calibration images used for bias correction are capped at this many input pixels (32 images at 224x224): the
/// per-channel means need far fewer samples than the thresholds, and the INT8 side keeps every image's current
/// uint8 activation in memory.
let biasCorrectionPixelBudget = 32 * 224 * 224

/// Sums over images and output positions of each (input channel, tap) of a 3x3 pad-1 conv's input, i.e. the
/// im2col row sums with a zero border, and the number of output positions summed over.
struct TapSums {
    var sums: [Double]
    var positions: Double = 0
    /// Per tap, the output positions whose tap reads inside the image (the rest read the border).
    var insideImage = [Double](repeating: 0, count: 9)

    init(channels: Int) { sums = [Double](repeating: 0, count: channels * 9) }

    /// The mean of the im2col row of (channel, tap) when the border holds `padding`.
    func mean(channel: Int, tap: Int, padding: Double = 0) -> Double {
        positions > 0 ? (sums[channel * 9 + tap] + (positions - insideImage[tap]) * padding) / positions : 0
    }

    /// Adds a channel-major batch [channel][image][y][x] feeding a conv of the given stride.
    mutating func add(_ values: UnsafeBufferPointer<Float>, channels: Int, count: Int, height: Int, width: Int,
                      stride: Int) {
        let outHeight = convOutputSize(height, stride: stride), outWidth = convOutputSize(width, stride: stride)
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
        func inside(_ tap: Int, _ outSize: Int, _ size: Int) -> Int {
            (0..<outSize).filter { (0..<size).contains($0 * stride + tap - 1) }.count
        }
        for ky in 0..<3 {
            for kx in 0..<3 {
                insideImage[ky * 3 + kx] += Double(count * inside(ky, outHeight, height) * inside(kx, outWidth, width))
            }
        }
    }

    /// Adds a batch of `count` uint8 NHWC activations, `imagesPerStep` images at a time so that the channel-major
    /// float copy stays small.
    mutating func add(nhwc values: [UInt8], channels: Int, count: Int, height: Int, width: Int, stride: Int,
                      imagesPerStep: Int = 8) {
        let imageBytes = height * width * channels
        var start = 0
        while start < count {
            let step = min(imagesPerStep, count - start)
            let planes = channelMajor(values[(start * imageBytes)..<((start + step) * imageBytes)], channels: channels,
                                      count: step, plane: height * width) { _, value in Float(value) }
            planes.withUnsafeBufferPointer {
                add($0, channels: channels, count: step, height: height, width: width, stride: stride)
            }
            start += step
        }
    }
}

/// [image][pixel][channel] uint8 values as [channel][image][pixel] floats, through `transform(channel, value)`.
func channelMajor(_ values: ArraySlice<UInt8>, channels: Int, count: Int, plane: Int,
                  transform: (Int, UInt8) -> Float) -> [Float] {
    var result = [Float](repeating: 0, count: count * plane * channels)
    let base = values.startIndex
    for channel in 0..<channels {
        for image in 0..<count {
            let out = (channel * count + image) * plane, source = base + image * plane * channels + channel
            for index in 0..<plane { result[out + index] = transform(channel, values[source + channels * index]) }
        }
    }
    return result
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
        let mean = network.preprocessing.mean, std = network.preprocessing.std
        let input = channelMajor(ArraySlice(pixels), channels: 3, count: count,
                                 plane: network.inputHeight * network.inputWidth) { channel, pixel in
            (Float(pixel) / 255 - mean[channel]) / std[channel]
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

/// `value` (an integer-valued double, possibly huge) clamped to [-limit, limit], converted only once in range.
private func clampedBias(_ value: Double, limit: Int64, clamped: inout Bool) -> Int64 {
    if abs(value) > Double(limit) { clamped = true }
    return Int64(min(max(value, -Double(limit)), Double(limit)))
}

/// Corrects `description`'s conv and FC biases so that, on `data`, the INT8 network's mean pre-activation output
/// of every layer, as the runtime's kernels compute it, equals the FP32 network's (`reference`, gathered on the
/// same images). Returns, per conv layer and then for the FC, the mean |correction| over output channels in
/// units of that layer's output step (conv) or logit units (FC), and the biases whose correction hit the
/// accumulator bound. `progress(layersDone)` follows each conv layer and the FC.
/// With a `refiner`, each layer's weights are first re-rounded and its threshold then searched (LayerRefinement.swift),
/// on the same INT8 input; `correcting` false skips the bias steps themselves. `thresholds` (one per conv) are
/// updated with the refiner's choices.
func correctBiases(_ description: inout QuantizedModelDescription, forward: FP32Forward, data: CalibrationData,
                   reference: FP32MeanStatistics, threads: Int, refiner: LayerRefiner? = nil, correcting: Bool = true,
                   thresholds: inout [Double],
                   progress: (Int) -> Void = { _ in }) throws -> (shifts: [Double], clamped: [String]) {
    let network = forward.network
    guard description.convs.count == network.convs.count, data.count > 0 else {
        throw CalibrationError("bias correction needs the network's layers and at least one image")
    }
    func layers(_ description: QuantizedModelDescription) throws -> IntegerLayers {
        do {
            return try IntegerLayers(description, threads: threads)
        } catch {
            throw CalibrationError("bias correction: the quantized model does not pass the runtime's validation: \(error)")
        }
    }
    var runtime = try layers(description)
    var activation = data.pixels  // the current layer's uint8 input, NHWC, every correction image
    var height = network.inputHeight, width = network.inputWidth
    var inScale = description.inputScale
    var shifts: [Double] = []
    var clampedNames: [String] = []
    for (index, conv) in network.convs.enumerated() {
        let padding = runtime.padValues(conv: index).map(Double.init)
        if let refiner, refiner.rounding == .gptq {
            var weights = conv.weight
            if index == 0 { weights = firstLayerWeights(network) }
            refiner.roundWeights(index, description: &description, weights: weights, activation: activation,
                                 pad: runtime.padValues(conv: index))
            runtime = try layers(description)
        }
        let layer = description.convs[index]
        var quantizedTaps = TapSums(channels: conv.inChannels)
        quantizedTaps.add(nhwc: activation, channels: conv.inChannels, count: data.count, height: height, width: width,
                          stride: conv.stride)
        let inPerGroup = conv.inChannels / conv.groups, outPerGroup = conv.outChannels / conv.groups
        let rowLength = inPerGroup * 9
        let limit = convBiasLimit(inChannelsPerGroup: inPerGroup)
        // Corrected in B, the bias the kernel adds (the loader's bound is on B); the file's bias moves with it.
        let accumulatorBias = runtime.accumulatorBias(conv: index)
        var corrected = accumulatorBias
        var shiftSum = 0.0
        var clampedHere = false
        for output in 0..<conv.outChannels where correcting {
            let group = output / outPerGroup
            var fp32Mean = Double(conv.bias[output]), int8Mean = Double(accumulatorBias[output])
            for channel in 0..<inPerGroup {
                let c = group * inPerGroup + channel
                for tap in 0..<9 {
                    let position = output * rowLength + channel * 9 + tap
                    fp32Mean += Double(conv.weight[position]) * reference.convInputs[index].mean(channel: c, tap: tap)
                    int8Mean += Double(layer.weight[position]) * quantizedTaps.mean(channel: c, tap: tap, padding: padding[c])
                }
            }
            let unit = Double(inScale) * Double(layer.weightScale[output])
            let shift = (fp32Mean / unit - int8Mean).rounded(.toNearestOrEven)
            guard shift.isFinite else { continue }
            let change = clampedBias(Double(accumulatorBias[output]) + shift, limit: limit, clamped: &clampedHere)
                - Int64(accumulatorBias[output])
            guard let bias = Int32(exactly: Int64(accumulatorBias[output]) + change),
                  let fileBias = Int32(exactly: Int64(layer.bias[output]) + change) else {
                throw CalibrationError("conv \(index) channel \(output): corrected bias outside int32")
            }
            corrected[output] = bias
            description.convs[index].bias[output] = fileBias
            shiftSum += abs(Double(change)) * unit / Double(layer.outputScale)
        }
        if clampedHere { clampedNames.append("conv.\(index).bias") }
        shifts.append(shiftSum / Double(conv.outChannels))

        if let refiner, refiner.searchesThresholds {
            let chosen = refiner.chooseThreshold(index, description: description, inputScale: inScale, activation: activation,
                                                 pad: runtime.padValues(conv: index), methodThreshold: thresholds[index])
            refiner.reports[index].methodThreshold = thresholds[index]
            refiner.reports[index].chosenThreshold = chosen
            if chosen != thresholds[index] {
                thresholds[index] = chosen
                try setOutputThreshold(&description, network: network, layer: index, threshold: chosen,
                                       poolMaximum: refiner.poolMaximum)
                runtime = try layers(description)
            }
        } else if let refiner {
            refiner.reports[index].methodThreshold = thresholds[index]
            refiner.reports[index].chosenThreshold = thresholds[index]
        }
        refiner?.advance(index)

        // This layer's uint8 output with the corrected bias, from the runtime's kernel.
        do {
            activation = try runtime.conv(index, bias: corrected, input: activation, batch: data.count)
        } catch {
            throw CalibrationError("bias correction: the runtime failed on conv \(index): \(error)")
        }
        progress(index + 1)
        (height, width) = runtime.outputSize(conv: index)
        inScale = description.convs[index].outputScale
    }

    let channels = network.convs[network.convs.count - 1].outChannels
    let pooled: [UInt8]
    do {
        pooled = try runtime.pool(activation, batch: data.count)
    } catch {
        throw CalibrationError("bias correction: the runtime failed on the pool: \(error)")
    }
    var pooledSums = [Double](repeating: 0, count: channels)
    for image in 0..<data.count {
        for channel in 0..<channels { pooledSums[channel] += Double(pooled[image * channels + channel]) }
    }
    let fcLimit = fcBiasLimit(inChannels: channels)
    var fcShift = 0.0
    var fcClamped = false
    for k in 0..<network.numClasses where correcting {
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

/// Layer 0's weights as quantized: W / std of the input channel (docs/model-format.md).
func firstLayerWeights(_ network: FusedNetwork) -> [Float] {
    let conv = network.convs[0]
    let inPerGroup = conv.inChannels / conv.groups, outPerGroup = conv.outChannels / conv.groups
    var weights = conv.weight
    for position in weights.indices {
        let output = position / (inPerGroup * 9), channel = (position / 9) % inPerGroup
        weights[position] /= network.preprocessing.std[output / outPerGroup * inPerGroup + channel]
    }
    return weights
}

/// Gives conv `index` the output threshold `threshold` and requantizes what is expressed in its scale: the next
/// conv's bias (in units of this scale times its weight scales) or, for the last conv, the pool's scale and the
/// FC bias.
func setOutputThreshold(_ description: inout QuantizedModelDescription, network: FusedNetwork, layer index: Int,
                        threshold: Double, poolMaximum: Double) throws {
    let scale = activationScale(threshold: threshold)
    description.convs[index].outputScale = scale
    if index + 1 < network.convs.count {
        let next = network.convs[index + 1]
        let limit = convBiasLimit(inChannelsPerGroup: next.inChannels / next.groups)
        for output in 0..<next.outChannels {
            let unit = Double(scale) * Double(description.convs[index + 1].weightScale[output])
            var clamped = false
            description.convs[index + 1].bias[output] =
                Int32(clampedBias((Double(next.bias[output]) / unit).rounded(.toNearestOrEven), limit: limit, clamped: &clamped))
        }
    } else {
        description.poolOutputScale = activationScale(threshold: min(poolMaximum, threshold))
        let channels = network.convs[index].outChannels
        for k in 0..<network.numClasses {
            let unit = Double(description.poolOutputScale) * Double(description.fcWeightScale[k])
            var clamped = false
            description.fcBias[k] = Int32(clampedBias((Double(network.fcBias[k]) / unit).rounded(.toNearestOrEven),
                                                      limit: fcBiasLimit(inChannels: channels), clamped: &clamped))
        }
    }
}

// Semantic validation of a model and the quantities derived from it at load time (docs/model-format.md,
// "Derived at load time"). Everything the kernels rely on for memory safety and exact int32 arithmetic is
// established here, once, so the engine can call the kernels without re-checking.

import CQARepKernels

/// One conv layer as the engine runs it.
struct DerivedConvLayer: Sendable {
    var inHeight: Int, inWidth: Int, inChannels: Int
    var outHeight: Int, outWidth: Int, outChannels: Int
    var stride: Int, groups: Int
    var multiplier: [Float]
    /// Bias with the first layer's zero-point correction folded in.
    var bias: [Int32]
    /// Per input channel border value.
    var padValue: [UInt8]
    var macs: Int

    var inputBytes: Int { inHeight * inWidth * inChannels }
    var outputBytes: Int { outHeight * outWidth * outChannels }
}

struct DerivedArithmetic: Sendable {
    var layers: [DerivedConvLayer]
    var poolMultiplier: Float
    var fcMultiplier: [Float]
    var fcInChannels: Int
    var lastPixels: Int
    /// Largest per-image activation (network input included), in bytes.
    var maxActivationBytes: Int
    var macsPerImage: Double
}

private let int32Limit: Int64 = 1 << 31

private func checkScale(_ value: Float, _ name: String) throws(QARepError) {
    guard value.isFinite, value > 0 else { throw .invalidModel("tensor \"\(name)\" holds scale \(value), expected finite and > 0") }
}

private func checkMultiplier(_ value: Float, _ name: String) throws(QARepError) {
    guard value.isFinite, value > 0 else {
        throw .invalidModel("derived multiplier of \(name) is \(value) after rounding to float32, expected finite and > 0")
    }
}

private func checkWeights(_ weights: UnsafeBufferPointer<Int8>, _ name: String) throws(QARepError) {
    // min() first: a vectorized pass over every weight of the model, where firstIndex's early exit keeps the
    // loop scalar (it was 12% of a model load); the index is looked for only in a file that fails.
    if weights.min() == -128, let index = weights.firstIndex(of: -128) {
        throw .invalidModel("tensor \"\(name)\" holds -128 at element \(index), weights must lie in -127...127")
    }
}

struct LayerGeometry {
    var inChannels: Int, outChannels: Int, stride: Int, groups: Int
}

/// The layer chain, channel, stride, group and activation-size rules; returns each layer's output size.
/// Runs on the header alone, before any tensor is decoded, so absurd sizes are refused before they cost memory.
func checkLayerGeometry(inputHeight: Int, inputWidth: Int, layers: [LayerGeometry]) throws(QARepError) -> [(Int, Int)] {
    var height = inputHeight, width = inputWidth, channels = 3
    var sizes: [(Int, Int)] = []
    for (i, layer) in layers.enumerated() {
        guard layer.inChannels == channels else {
            throw .invalidModel("layers[\(i)] \"in\" is \(layer.inChannels) but the previous layer produces \(channels) channels")
        }
        guard (1...ModelFormat.maxChannels).contains(layer.outChannels) else {
            throw .invalidModel("layers[\(i)] \"out\" is \(layer.outChannels), expected 1...\(ModelFormat.maxChannels)")
        }
        guard layer.stride == 1 || layer.stride == 2 else { throw .invalidModel("layers[\(i)] stride is \(layer.stride), expected 1 or 2") }
        guard layer.groups >= 1, layer.inChannels % layer.groups == 0, layer.outChannels % layer.groups == 0 else {
            throw .invalidModel("layers[\(i)] groups \(layer.groups) does not divide in \(layer.inChannels) and out \(layer.outChannels)")
        }
        height = convOutputSize(height, stride: layer.stride)
        width = convOutputSize(width, stride: layer.stride)
        let outputBytes = height * width * layer.outChannels  // <= 4096 * 4096 * 8192, fits in Int
        guard outputBytes <= ModelFormat.maxActivationBytes else {
            throw .invalidModel("layers[\(i)] output of \(outputBytes) bytes per image exceeds the \(ModelFormat.maxActivationBytes)-byte activation limit")
        }
        sizes.append((height, width))
        channels = layer.outChannels
    }
    return sizes
}

/// Weights that passed validation, handed over one layer at a time (the fc layer last) while the rest of
/// the model is still being checked, so that a loader can pack and drop them before reading the next.
enum CheckedWeights {
    /// Every layer's shape, before any weights: the chain, channel, stride and group rules hold.
    case shapes([qk_conv_shape])
    /// The weights are valid only during the call.
    case conv(index: Int, layer: DerivedConvLayer, weight: UnsafeBufferPointer<Int8>)
    case fullyConnected(poolMultiplier: Float, fcMultiplier: [Float], weight: UnsafeBufferPointer<Int8>)
}

extension QuantizedModelDescription {
    /// Checks every rule of docs/model-format.md and computes the derived arithmetic.
    func validate() throws(QARepError) -> DerivedArithmetic {
        try validate(convWeight: { (i, body) throws(QARepError) in try convs[i].weight.withUnsafeBufferPointer(body) },
                     fcWeight: { (body) throws(QARepError) in try fcWeight.withUnsafeBufferPointer(body) },
                     checked: { _ in })
    }

    /// The same checks, in the same order, taking the weights of conv layer i from `convWeight(i, body)` and
    /// the fc weights from `fcWeight(body)` (each hands them to `body`) instead of the description's arrays
    /// (which a loader leaves empty), and passing each layer's weights to `checked` once everything about
    /// that layer holds. (`checked` is called during the call alone; it is marked escaping only because the
    /// weight closures, themselves parameters, call it.)
    func validate(convWeight: (Int, (UnsafeBufferPointer<Int8>) throws(QARepError) -> Void) throws(QARepError) -> Void,
                  fcWeight fcWeightOf: ((UnsafeBufferPointer<Int8>) throws(QARepError) -> Void) throws(QARepError) -> Void,
                  checked: @escaping (CheckedWeights) throws(QARepError) -> Void) throws(QARepError) -> DerivedArithmetic {
        guard (1...ModelFormat.maxInputSide).contains(inputHeight), (1...ModelFormat.maxInputSide).contains(inputWidth) else {
            throw .invalidModel("input size \(inputWidth)x\(inputHeight) outside 1...\(ModelFormat.maxInputSide)")
        }
        guard preprocessing.mean.count == 3, preprocessing.std.count == 3,
              preprocessing.mean.allSatisfy({ $0.isFinite }), preprocessing.std.allSatisfy({ $0.isFinite && $0 > 0 }) else {
            throw .invalidModel("metadata \"mean\"/\"std\" must be 3 finite numbers each, std > 0")
        }
        guard preprocessing.cropRatio.isFinite, preprocessing.cropRatio > 0, preprocessing.cropRatio <= 1 else {
            throw .invalidModel("metadata key \"crop_ratio\" is \(preprocessing.cropRatio), expected a value in (0, 1]")
        }
        try checkScale(inputScale, "input.scale")
        guard inputZeroPoint.count == 3 else { throw .invalidModel("tensor \"input.zero_point\" must have 3 values") }
        guard (1...ModelFormat.maxConvLayers).contains(convs.count) else {
            throw .invalidModel("model has \(convs.count) conv layers, expected 1...\(ModelFormat.maxConvLayers)")
        }
        let inputBytes = inputHeight * inputWidth * 3
        var maxActivation = inputBytes
        var height = inputHeight, width = inputWidth, channels = 3
        var inputScaleOfLayer = inputScale
        var layers: [DerivedConvLayer] = []
        var macs = 0
        let geometry = try checkLayerGeometry(inputHeight: inputHeight, inputWidth: inputWidth, layers: convs.map {
            LayerGeometry(inChannels: $0.inChannels, outChannels: $0.outChannels, stride: $0.stride, groups: $0.groups)
        })
        var shapeHeight = inputHeight, shapeWidth = inputWidth
        try checked(.shapes(convs.enumerated().map { i, conv in
            defer { (shapeHeight, shapeWidth) = geometry[i] }
            return qk_conv_shape(in_h: Int32(shapeHeight), in_w: Int32(shapeWidth), in_c: Int32(conv.inChannels),
                                 out_c: Int32(conv.outChannels), stride: Int32(conv.stride), groups: Int32(conv.groups))
        }))
        for (i, conv) in convs.enumerated() {
            let name = "conv.\(i)"
            let inPerGroup = conv.inChannels / conv.groups
            var handedOver = false
            try convWeight(i) { (weight) throws(QARepError) in
                handedOver = true
                guard weight.count == conv.outChannels * inPerGroup * 9 else {
                    throw .invalidModel("tensor \"\(name).weight\" has \(weight.count) values, expected \(conv.outChannels * inPerGroup * 9)")
                }
                guard conv.weightScale.count == conv.outChannels, conv.bias.count == conv.outChannels else {
                    throw .invalidModel("tensors \"\(name).weight_scale\" and \"\(name).bias\" must have \(conv.outChannels) values")
                }
                try checkWeights(weight, "\(name).weight")
                for s in conv.weightScale { try checkScale(s, "\(name).weight_scale") }
                try checkScale(conv.outputScale, "\(name).output_scale")

                let (outHeight, outWidth) = geometry[i]
                maxActivation = max(maxActivation, outHeight * outWidth * conv.outChannels)

                var multipliers: [Float] = []
                multipliers.reserveCapacity(conv.outChannels)
                for o in 0..<conv.outChannels {
                    let m = Float(Double(inputScaleOfLayer) * Double(conv.weightScale[o]) / Double(conv.outputScale))
                    try checkMultiplier(m, "\(name) channel \(o)")
                    multipliers.append(m)
                }
                let biasLimit = convBiasLimit(inChannelsPerGroup: inPerGroup)
                var bias: [Int32] = []
                bias.reserveCapacity(conv.outChannels)
                for o in 0..<conv.outChannels {
                    var b = Int64(conv.bias[o])
                    if i == 0 {
                        let group = o / (conv.outChannels / conv.groups)
                        for c in 0..<inPerGroup {
                            let zeroPoint = Int64(inputZeroPoint[group * inPerGroup + c])
                            let base = (o * inPerGroup + c) * 9
                            for tap in 0..<9 { b -= Int64(weight[base + tap]) * zeroPoint }
                        }
                    }
                    guard abs(b) <= biasLimit else {
                        throw .invalidModel("tensor \"\(name).bias\" channel \(o): bias \(b) plus the largest accumulation (\(Int64(Int32.max) - biasLimit)) could overflow int32")
                    }
                    bias.append(Int32(b))
                }
                var pad = [UInt8](repeating: 0, count: conv.inChannels)
                if i == 0 { for c in 0..<3 { pad[c] = inputZeroPoint[c] } }
                let layerMacs = outHeight * outWidth * conv.outChannels * inPerGroup * 9
                macs += layerMacs
                let layer = DerivedConvLayer(inHeight: height, inWidth: width, inChannels: channels,
                                             outHeight: outHeight, outWidth: outWidth, outChannels: conv.outChannels,
                                             stride: conv.stride, groups: conv.groups, multiplier: multipliers,
                                             bias: bias, padValue: pad, macs: layerMacs)
                try checked(.conv(index: i, layer: layer, weight: weight))
                layers.append(layer)
                height = outHeight; width = outWidth; channels = conv.outChannels
                inputScaleOfLayer = conv.outputScale
            }
            guard handedOver else { throw QARepError(.internal, "the weights of \(name) were not handed over") }
        }

        let lastPixels = height * width
        guard Int64(lastPixels) * 255 < int32Limit else {
            throw .invalidModel("last activation of \(lastPixels) pixels could overflow the int32 pooling sum")
        }
        try checkScale(poolOutputScale, "pool.output_scale")
        let poolMultiplier = Float(Double(inputScaleOfLayer) / (Double(lastPixels) * Double(poolOutputScale)))
        try checkMultiplier(poolMultiplier, "pool")

        guard (1...ModelFormat.maxClasses).contains(numClasses) else {
            throw .invalidModel("num_classes is \(numClasses), expected 1...\(ModelFormat.maxClasses)")
        }
        var fcMultiplier: [Float] = []
        var fcHandedOver = false
        try fcWeightOf { (fcWeight) throws(QARepError) in
            fcHandedOver = true
            guard fcWeight.count == numClasses * channels else {
                throw .invalidModel("tensor \"fc.weight\" has \(fcWeight.count) values, expected \(numClasses * channels)")
            }
            guard fcWeightScale.count == numClasses, fcBias.count == numClasses else {
                throw .invalidModel("tensors \"fc.weight_scale\" and \"fc.bias\" must have \(numClasses) values")
            }
            try checkWeights(fcWeight, "fc.weight")
            fcMultiplier.reserveCapacity(numClasses)
            let fcLimit = fcBiasLimit(inChannels: channels)
            for k in 0..<numClasses {
                try checkScale(fcWeightScale[k], "fc.weight_scale")
                let m = Float(Double(poolOutputScale) * Double(fcWeightScale[k]))
                try checkMultiplier(m, "fc class \(k)")
                fcMultiplier.append(m)
                guard abs(Int64(fcBias[k])) <= fcLimit else {
                    throw .invalidModel("tensor \"fc.bias\" class \(k): bias \(fcBias[k]) plus the largest accumulation (\(Int64(Int32.max) - fcLimit)) could overflow int32")
                }
            }
            guard labels.count == numClasses else {
                throw .invalidModel("metadata key \"labels\" has \(labels.count) entries, num_classes is \(numClasses)")
            }
            for (k, label) in labels.enumerated() where label.utf8.count > ModelFormat.maxLabelBytes {
                throw .invalidModel("metadata key \"labels\": label \(k) is \(label.utf8.count) bytes, the limit is \(ModelFormat.maxLabelBytes)")
            }
            try checked(.fullyConnected(poolMultiplier: poolMultiplier, fcMultiplier: fcMultiplier, weight: fcWeight))
        }
        guard fcHandedOver else { throw QARepError(.internal, "the weights of fc were not handed over") }
        macs += channels * numClasses
        return DerivedArithmetic(layers: layers, poolMultiplier: poolMultiplier, fcMultiplier: fcMultiplier,
                                 fcInChannels: channels, lastPixels: lastPixels, maxActivationBytes: maxActivation,
                                 macsPerImage: Double(macs))
    }
}

// FusedNetwork + chosen activation thresholds -> QuantizedModelDescription, with exactly the arithmetic of
// docs/model-format.md ("Quantization arithmetic" and "The network input and its border").
#if canImport(FoundationEssentials)
// FoundationEssentials, not Foundation: linked statically, Foundation's internationalization brings ICU's
// data (tens of MB) into the CLI. Glibc gives the math and stdio that Foundation re-exported.
import FoundationEssentials
import Glibc
#else
import Foundation
#endif
import QARep

public struct QuantizationError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Weight statistics of one layer (the paper's C1: fused weight ranges) and how int8 represents them.
public struct WeightStatistics: Sendable, Codable, Equatable {
    public var min: Float
    public var max: Float
    public var std: Float
    /// 10 log10(sum w^2 / sum (w - dequantized w)^2), over the whole layer.
    public var quantizationSQNR: Double
    public var minScale: Float
    public var maxScale: Float
}

struct QuantizedNetwork {
    var description: QuantizedModelDescription
    var convWeightStatistics: [WeightStatistics]
    var fcWeightStatistics: WeightStatistics
    /// Biases whose int32 value had to be clamped so the spec's overflow bound holds.
    var clampedBiases: [String]
}

/// Output scale of an activation clipped at `threshold` (uint8, zero point 0). A never-positive activation gets
/// scale 1: all its values are 0 and any positive scale represents them exactly.
func activationScale(threshold: Double) -> Float {
    let scale = Float(threshold / 255)
    return scale.isFinite && scale > 0 ? scale : 1
}

/// Rounds half to even in double and clamps to the loader's bound [-limit, limit].
private func quantizeBias(_ value: Double, limit: Int64, clamped: inout Bool) -> Int64 {
    let rounded = value.rounded(.toNearestOrEven)
    guard rounded.isFinite else {
        clamped = true
        return rounded > 0 ? limit : -limit
    }
    if rounded > Double(limit) { clamped = true; return limit }
    if rounded < Double(-limit) { clamped = true; return -limit }
    return Int64(rounded)
}

private func statistics(_ weights: [Float], quantized: [Int8], scales: [Float], rowLength: Int) -> WeightStatistics {
    var low = Float.infinity, high = -Float.infinity
    var sum = 0.0, squares = 0.0, noise = 0.0
    for (index, value) in weights.enumerated() {
        low = Swift.min(low, value)
        high = Swift.max(high, value)
        sum += Double(value)
        squares += Double(value) * Double(value)
        let restored = Double(quantized[index]) * Double(scales[index / rowLength])
        noise += (Double(value) - restored) * (Double(value) - restored)
    }
    let count = Double(Swift.max(weights.count, 1))
    let mean = sum / count
    let variance = Swift.max(squares / count - mean * mean, 0)
    let sqnr = noise > 0 ? 10 * log10(squares / noise) : Double.infinity
    return WeightStatistics(min: low, max: high, std: Float(variance.squareRoot()),
                            quantizationSQNR: sqnr.isFinite ? sqnr : 999,
                            minScale: scales.min() ?? 0, maxScale: scales.max() ?? 0)
}

/// `convThresholds[i]`: clipping value of conv i's ReLU output; `poolThreshold`: of the pooled vector.
func quantizeNetwork(_ network: FusedNetwork, convThresholds: [Double], poolThreshold: Double,
                     weightMethod: WeightCalibrationMethod, metadata: [String: String]) throws -> QuantizedNetwork {
    guard convThresholds.count == network.convs.count, !network.convs.isEmpty else {
        throw QuantizationError("need one activation threshold per conv layer")
    }
    let mean = network.preprocessing.mean, std = network.preprocessing.std
    guard mean.count == 3, std.count == 3, std.allSatisfy({ $0 > 0 && $0.isFinite }), mean.allSatisfy({ $0.isFinite }) else {
        throw QuantizationError("preprocessing needs 3 finite means and 3 positive stds")
    }
    let inputScale: Float = 1.0 / 255.0
    // round(255 * mean) half away from zero, as the format specifies; clamped to the pixel range.
    let zeroPoints: [UInt8] = mean.map { UInt8(min(max((255 * Double($0)).rounded(.toNearestOrAwayFromZero), 0), 255)) }

    var layers: [QuantizedConvLayer] = []
    var weightStatistics: [WeightStatistics] = []
    var clampedBiases: [String] = []
    var inScale = inputScale
    for (index, conv) in network.convs.enumerated() {
        let inPerGroup = conv.inChannels / conv.groups
        let rowLength = inPerGroup * 9
        guard conv.weight.count == conv.outChannels * rowLength, conv.bias.count == conv.outChannels else {
            throw QuantizationError("conv \(index): weight or bias size does not match its shape")
        }
        var weights = conv.weight
        var biasFloat = conv.bias.map(Double.init)
        if index == 0 {
            // Fold 1/std into the weights (W' = W / std[c]) and the zero point's rounding into the bias.
            for output in 0..<conv.outChannels {
                let group = output / (conv.outChannels / conv.groups)
                for channel in 0..<inPerGroup {
                    let c = group * inPerGroup + channel
                    let shift = (Double(zeroPoints[c]) - 255 * Double(mean[c])) / 255
                    for tap in 0..<9 {
                        let position = output * rowLength + channel * 9 + tap
                        weights[position] = conv.weight[position] / std[c]
                        biasFloat[output] += Double(weights[position]) * shift
                    }
                }
            }
        }
        var scales = [Float](repeating: 1, count: conv.outChannels)
        var quantized = [Int8](repeating: 0, count: weights.count)
        var biases = [Int32](repeating: 0, count: conv.outChannels)
        let limit = convBiasLimit(inChannelsPerGroup: inPerGroup)
        var clampedHere = false
        for output in 0..<conv.outChannels {
            let row = (output * rowLength)..<((output + 1) * rowLength)
            let scale = weightScale(weights[row], method: weightMethod)
            scales[output] = scale
            var zeroPointSum: Int64 = 0
            let group = output / (conv.outChannels / conv.groups)
            for position in row {
                let q = quantizeWeight(weights[position], scale: scale)
                quantized[position] = q
                if index == 0 {
                    let c = group * inPerGroup + (position - row.lowerBound) / 9
                    zeroPointSum += Int64(q) * Int64(zeroPoints[c])
                }
            }
            let unit = Double(inScale) * Double(scale)
            // The loader's bound is on B = bias - sum(w * zero_point) (layer 0) or bias (later layers).
            let effective = quantizeBias(biasFloat[output] / unit - Double(zeroPointSum),
                                         limit: limit, clamped: &clampedHere)
            biases[output] = Int32(effective + zeroPointSum)
        }
        if clampedHere { clampedBiases.append("conv.\(index).bias") }
        let outputScale = activationScale(threshold: convThresholds[index])
        layers.append(QuantizedConvLayer(inChannels: conv.inChannels, outChannels: conv.outChannels, stride: conv.stride,
                                         groups: conv.groups, weight: quantized, weightScale: scales, bias: biases,
                                         outputScale: outputScale))
        weightStatistics.append(statistics(weights, quantized: quantized, scales: scales, rowLength: rowLength))
        inScale = outputScale
    }

    let channels = network.convs[network.convs.count - 1].outChannels
    guard network.fcWeight.count == network.numClasses * channels, network.fcBias.count == network.numClasses else {
        throw QuantizationError("fc weight/bias size does not match \(network.numClasses) classes x \(channels) channels")
    }
    let poolScale = activationScale(threshold: poolThreshold)
    var fcScales = [Float](repeating: 1, count: network.numClasses)
    var fcWeights = [Int8](repeating: 0, count: network.fcWeight.count)
    var fcBiases = [Int32](repeating: 0, count: network.numClasses)
    var fcClamped = false
    for k in 0..<network.numClasses {
        let row = (k * channels)..<((k + 1) * channels)
        let scale = weightScale(network.fcWeight[row], method: weightMethod)
        fcScales[k] = scale
        for position in row { fcWeights[position] = quantizeWeight(network.fcWeight[position], scale: scale) }
        let unit = Double(poolScale) * Double(scale)
        fcBiases[k] = Int32(quantizeBias(Double(network.fcBias[k]) / unit, limit: fcBiasLimit(inChannels: channels),
                                         clamped: &fcClamped))
    }
    if fcClamped { clampedBiases.append("fc.bias") }
    let labels = network.labels.count == network.numClasses ? network.labels : (0..<network.numClasses).map { "class_\($0)" }
    let description = QuantizedModelDescription(
        inputHeight: network.inputHeight, inputWidth: network.inputWidth, preprocessing: network.preprocessing,
        inputScale: inputScale, inputZeroPoint: zeroPoints, convs: layers, poolOutputScale: poolScale,
        numClasses: network.numClasses, fcWeight: fcWeights, fcWeightScale: fcScales, fcBias: fcBiases,
        labels: labels, extraMetadata: metadata)
    return QuantizedNetwork(description: description, convWeightStatistics: weightStatistics,
                            fcWeightStatistics: statistics(network.fcWeight, quantized: fcWeights, scales: fcScales, rowLength: channels),
                            clampedBiases: clampedBiases)
}

// A random but numerically plausible quantized model of a given architecture. Benchmarks need activations
// that look like a real network's (mostly small, some zero from ReLU, few saturated): an all-zero or
// all-255 network would let branchy or sparse kernels look better than they are.
import QARep
import RepVGGArchitectures

/// Bulk draws on the offline module's seeded SplitMix64; SystemRandomNumberGenerator would make a syscall per
/// draw, which is minutes for B3's 110 million weights.
extension SeededGenerator {
    /// Uniform int8 weights in [-127, 127] (never -128, which the format forbids): 16 random bits each,
    /// scaled onto 0...254 and shifted.
    mutating func int8Weights(count: Int) -> [Int8] {
        values(count: count, bitsEach: 16) { Int8(Int((($0 & 0xFFFF) * 255) >> 16) - 127) }
    }

    /// Uniform bytes, e.g. random images.
    mutating func bytes(count: Int) -> [UInt8] {
        values(count: count, bitsEach: 8) { UInt8(truncatingIfNeeded: $0) }
    }

    /// Several values per 64-bit draw, each made from the low `bitsEach` bits.
    private mutating func values<T>(count: Int, bitsEach: Int, _ make: (UInt64) -> T) -> [T] {
        var result: [T] = []
        result.reserveCapacity(count)
        while result.count < count {
            var bits = next()
            for _ in 0..<min(64 / bitsEach, count - result.count) {
                result.append(make(bits))
                bits >>= UInt64(bitsEach)
            }
        }
        return result
    }
}

enum SyntheticModel {
    /// Typical magnitude (standard deviation before ReLU) each layer's requantized output is aimed at:
    /// the positive half then mostly lands in 1...180, and ReLU zeroes about half.
    static let targetOutputSpread = 60.0
    /// Every layer's output scale; only ratios matter, this just keeps the numbers like a real model's.
    static let activationScale: Float = 0.05
    /// Standard deviation of a weight uniform in [-127, 127].
    static let weightSpread = 127.0 / 3.0.squareRoot()

    /// Builds the model. Weight scales vary per channel by +-50% so the per-channel requantization is
    /// exercised; biases shift each channel by up to a third of its spread.
    static func make(architecture: RepVGGArchitecture, inputHeight: Int, inputWidth: Int, numClasses: Int = 1000,
                     seed: UInt64 = 1) -> QuantizedModelDescription {
        var random = SeededGenerator(seed: seed)
        let preprocessing = Preprocessing()
        let inputScale: Float = 1.0 / 255.0
        let inputZeroPoint = preprocessing.mean.map { UInt8((255 * $0).rounded(.toNearestOrAwayFromZero)) }

        // Root mean square of the values a layer multiplies its weights with: random pixels minus the zero
        // point for the first layer, the ReLU'd half-normal outputs of the previous layer after it.
        var inputRMS = 255.0 / 12.0.squareRoot()
        var layerInputScale = inputScale
        var convs: [QuantizedConvLayer] = []
        for shape in architecture.convLayers {
            let taps = 9 * shape.inChannels / shape.groups
            let accumulatorSpread = Double(taps).squareRoot() * inputRMS * weightSpread
            // multiplier = inputScale * weightScale / outputScale = targetOutputSpread / accumulatorSpread
            let baseWeightScale = Double(activationScale) * targetOutputSpread / (Double(layerInputScale) * accumulatorSpread)
            let weightScale = (0..<shape.outChannels).map { _ in
                Float(baseWeightScale * Double.random(in: 0.5...1.5, using: &random))
            }
            let biasBound = Int32(accumulatorSpread / 3)
            let bias = (0..<shape.outChannels).map { _ in Int32.random(in: -biasBound...biasBound, using: &random) }
            convs.append(QuantizedConvLayer(
                inChannels: shape.inChannels, outChannels: shape.outChannels, stride: shape.stride,
                groups: shape.groups,
                weight: random.int8Weights(count: shape.outChannels * (shape.inChannels / shape.groups) * 9),
                weightScale: weightScale, bias: bias, outputScale: activationScale))
            inputRMS = targetOutputSpread / 2.0.squareRoot()
            layerInputScale = activationScale
        }

        // A channel's mean after ReLU is about 0.4 of the spread; channel means vary a lot (each channel's
        // weights have their own sum), so map the typical one to ~40 to keep saturation at the pool rare.
        let pooledMean = 0.4 * targetOutputSpread
        let pooledTarget = 40.0
        let poolOutputScale = Float(Double(activationScale) * pooledMean / pooledTarget)
        let lastChannels = architecture.convLayers.last?.outChannels ?? 1
        // Logits with a spread of about 1.5, so softmax is neither flat nor one-hot.
        let fcAccumulatorSpread = Double(lastChannels).squareRoot() * pooledTarget * 1.2 * weightSpread
        let baseFCScale = 1.5 / (fcAccumulatorSpread * Double(poolOutputScale))
        let fcWeightScale = (0..<numClasses).map { _ in Float(baseFCScale * Double.random(in: 0.5...1.5, using: &random)) }
        let fcBiasBound = Int32(fcAccumulatorSpread / 3)
        let fcBias = (0..<numClasses).map { _ in Int32.random(in: -fcBiasBound...fcBiasBound, using: &random) }

        return QuantizedModelDescription(
            inputHeight: inputHeight, inputWidth: inputWidth, preprocessing: preprocessing,
            inputScale: inputScale, inputZeroPoint: inputZeroPoint, convs: convs,
            poolOutputScale: poolOutputScale, numClasses: numClasses,
            fcWeight: random.int8Weights(count: numClasses * lastChannels), fcWeightScale: fcWeightScale,
            fcBias: fcBias, labels: (0..<numClasses).map { "class_\($0)" },
            extraMetadata: ["producer": "qarep bench (synthetic \(architecture.name), seed \(seed), random weights)"])
    }
}

// Synthetic models built by the tests themselves (no files from /work/shared).
import QARep
import RepVGGArchitectures

/// The draws these tests need from the project's seeded SplitMix64.
extension SeededGenerator {
    mutating func int(in range: ClosedRange<Int>) -> Int {
        range.lowerBound + Int(next() % UInt64(range.upperBound - range.lowerBound + 1))
    }
    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
    mutating func bytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8(truncatingIfNeeded: next()) } }
}

struct LayerSpec {
    var out: Int
    var stride: Int
    var groups: Int = 1
}

/// A random network whose scales keep activations away from both clamps, so that the arithmetic is exercised
/// rather than saturated.
/// `fixedScales`: every activation keeps scale 1/255 and each layer's scale ratio goes into its weight
/// scales instead (the same multipliers), so that deep networks (B0's 28 layers) do not overflow float.
func makeRandomModel(seed: UInt64, height: Int, width: Int, layers: [LayerSpec], numClasses: Int,
                     labels: [String]? = nil, fixedScales: Bool = false) -> QuantizedModelDescription {
    var rng = SeededGenerator(seed: seed)
    let mean: [Float] = [0.485, 0.456, 0.406]
    let zeroPoint = mean.map { UInt8((255 * Double($0)).rounded(.toNearestOrAwayFromZero)) }
    var convs: [QuantizedConvLayer] = []
    var channels = 3
    var inputScale: Float = 1.0 / 255
    for spec in layers {
        let inPerGroup = channels / spec.groups
        let fanIn = Double(9 * inPerGroup)
        let weight = (0..<(spec.out * inPerGroup * 9)).map { _ in Int8(rng.int(in: -127...127)) }
        var weightScale = (0..<spec.out).map { _ in Float(0.002 + 0.01 * rng.unit()) }
        let bias = (0..<spec.out).map { _ in Int32(rng.int(in: -20000...40000)) }
        // Target multiplier ~ 40 / (sqrt(fanIn) * 100 * 73): typical outputs of a few tens.
        let multiplier = 40.0 / (fanIn.squareRoot() * 100 * 73)
        var outputScale = Float(Double(inputScale) * 0.007 / multiplier)
        if fixedScales {
            weightScale = weightScale.map { Float(Double($0) * multiplier / 0.007) }
            outputScale = inputScale
        }
        convs.append(QuantizedConvLayer(inChannels: channels, outChannels: spec.out, stride: spec.stride,
                                        groups: spec.groups, weight: weight, weightScale: weightScale,
                                        bias: bias, outputScale: outputScale))
        channels = spec.out
        inputScale = outputScale
    }
    let fcWeight = (0..<(numClasses * channels)).map { _ in Int8(rng.int(in: -127...127)) }
    let fcScale = (0..<numClasses).map { _ in Float(0.001 + 0.01 * rng.unit()) }
    let fcBias = (0..<numClasses).map { _ in Int32(rng.int(in: -5000...5000)) }
    return QuantizedModelDescription(
        inputHeight: height, inputWidth: width,
        preprocessing: Preprocessing(mean: mean, std: [0.229, 0.224, 0.225], cropRatio: 0.875),
        inputScale: 1.0 / 255, inputZeroPoint: zeroPoint, convs: convs, poolOutputScale: inputScale * 0.5,
        numClasses: numClasses, fcWeight: fcWeight, fcWeightScale: fcScale, fcBias: fcBias,
        labels: labels ?? (0..<numClasses).map { "class_\($0)" }, extraMetadata: ["producer": "QARepTests"])
}

func smallModel(seed: UInt64 = 1) -> QuantizedModelDescription {
    makeRandomModel(seed: seed, height: 9, width: 11,
                    layers: [LayerSpec(out: 8, stride: 2), LayerSpec(out: 16, stride: 1, groups: 2),
                             LayerSpec(out: 12, stride: 2)],
                    numClasses: 5, labels: ["cat", "dog", "bird \"quoted\"", "fish\n", "ünïcode"])
}

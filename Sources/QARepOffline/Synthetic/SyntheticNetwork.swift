// Random FP32 deploy networks of the RepVGG family, for benchmarks and peer comparisons that must go
// through the whole offline path (calibration, export) without a trained checkpoint.
#if canImport(FoundationEssentials)
// FoundationEssentials, not Foundation: linked statically, Foundation's internationalization brings ICU's
// data (tens of MB) into the CLI. Glibc gives the math and stdio that Foundation re-exported.
import FoundationEssentials
import Glibc
#else
import Foundation
#endif
import QARep
@_exported import RepVGGArchitectures

extension SeededGenerator {
    /// Standard normal by Box-Muller.
    mutating func gaussian() -> Float {
        let u1 = Double.random(in: Double.ulpOfOne..<1, using: &self)
        let u2 = Double.random(in: 0..<1, using: &self)
        return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
    }
}

/// A He-initialized network of the architecture with per-channel gains and biases like a trained, fused
/// RepVGG's (not all channels alike), so activations neither vanish nor explode through the ReLU stack.
public func syntheticNetwork(architecture: RepVGGArchitecture, inputHeight: Int = 224, inputWidth: Int = 224,
                             numClasses: Int = 1000, seed: UInt64 = 1) -> FusedNetwork {
    var rng = SeededGenerator(seed: seed)
    var convs: [FusedConv] = []
    for layer in architecture.convLayers {
        let perGroup = layer.inChannels / layer.groups
        let std = (2.0 / Float(perGroup * 9)).squareRoot()
        var weight = [Float](repeating: 0, count: layer.outChannels * perGroup * 9)
        var bias = [Float](repeating: 0, count: layer.outChannels)
        for o in 0..<layer.outChannels {
            let gain = Float.random(in: 0.6...1.4, using: &rng)
            for k in 0..<(perGroup * 9) { weight[o * perGroup * 9 + k] = rng.gaussian() * std * gain }
            bias[o] = Float.random(in: -0.3...0.3, using: &rng)
        }
        convs.append(FusedConv(inChannels: layer.inChannels, outChannels: layer.outChannels, stride: layer.stride,
                               groups: layer.groups, weight: weight, bias: bias))
    }
    let features = convs.last?.outChannels ?? 0
    let fcStd = (1.0 / Float(max(features, 1))).squareRoot()
    var fcWeight = [Float](repeating: 0, count: numClasses * features)
    for i in fcWeight.indices { fcWeight[i] = rng.gaussian() * fcStd }
    let fcBias = (0..<numClasses).map { _ in Float.random(in: -0.1...0.1, using: &rng) }
    return FusedNetwork(convs: convs, fcWeight: fcWeight, fcBias: fcBias, numClasses: numClasses,
                        inputHeight: inputHeight, inputWidth: inputWidth, preprocessing: Preprocessing(),
                        labels: (0..<numClasses).map { "class_\($0)" })
}

// Fixtures for the calibration, forward, export and image tests: a seeded generator, small synthetic fused
// networks, smooth synthetic images, and a direct (loop-nest) convolution used as the forward's oracle.
import Foundation
import QARep
@testable import QARepOffline

struct CalibRandom {
    private var state: UInt64
    init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }

    mutating func next() -> UInt64 {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        var z = state
        z = (z ^ (z >> 33)) &* 0xff51afd7ed558ccd
        return z ^ (z >> 33)
    }

    /// Uniform in [0, 1).
    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }

    mutating func uniform(_ low: Float, _ high: Float) -> Float { low + (high - low) * Float(unit()) }

    mutating func gaussian() -> Double {
        let u = max(unit(), 1e-300), v = unit()
        return (-2 * log(u)).squareRoot() * cos(2 * Double.pi * v)
    }
}

struct CalibLayerPlan {
    var out: Int
    var stride: Int
    var groups: Int
}

/// A random FusedNetwork with He-scaled weights and small biases.
func calibTestNetwork(plan: [CalibLayerPlan], height: Int, width: Int, classes: Int, seed: UInt64,
                      preprocessing: Preprocessing = Preprocessing(mean: [0.5, 0.45, 0.4], std: [0.25, 0.22, 0.2], cropRatio: 1)) -> FusedNetwork {
    var rng = CalibRandom(seed: seed)
    var convs: [FusedConv] = []
    var channels = 3
    for layer in plan {
        let inPerGroup = channels / layer.groups
        let bound = Float((6.0 / Double(inPerGroup * 9)).squareRoot())
        let weight = (0..<(layer.out * inPerGroup * 9)).map { _ in rng.uniform(-bound, bound) }
        let bias = (0..<layer.out).map { _ in rng.uniform(-0.1, 0.2) }
        convs.append(FusedConv(inChannels: channels, outChannels: layer.out, stride: layer.stride, groups: layer.groups,
                               weight: weight, bias: bias))
        channels = layer.out
    }
    let fcBound = Float((6.0 / Double(channels)).squareRoot())
    let fc = (0..<(classes * channels)).map { _ in rng.uniform(-fcBound, fcBound) }
    let fcBias = (0..<classes).map { _ in rng.uniform(-0.1, 0.1) }
    return FusedNetwork(convs: convs, fcWeight: fc, fcBias: fcBias, numClasses: classes, inputHeight: height,
                        inputWidth: width, preprocessing: preprocessing, labels: (0..<classes).map { "c\($0)" })
}

/// Smooth random images (sums of a few random gradients and blobs), HWC uint8: closer to photos than noise.
func calibTestImages(count: Int, height: Int, width: Int, seed: UInt64) -> [UInt8] {
    var rng = CalibRandom(seed: seed)
    var pixels = [UInt8](repeating: 0, count: count * height * width * 3)
    for image in 0..<count {
        for channel in 0..<3 {
            let base = Double(rng.uniform(40, 215))
            let gx = Double(rng.uniform(-90, 90)), gy = Double(rng.uniform(-90, 90))
            let cx = Double(rng.uniform(0, Float(width))), cy = Double(rng.uniform(0, Float(height)))
            let blob = Double(rng.uniform(-120, 120)), radius = Double(rng.uniform(1.5, Float(max(height, width))))
            for y in 0..<height {
                for x in 0..<width {
                    let dx = Double(x) - cx, dy = Double(y) - cy
                    var value = base + gx * (Double(x) / Double(width) - 0.5) + gy * (Double(y) / Double(height) - 0.5)
                    value += blob * exp(-(dx * dx + dy * dy) / (2 * radius * radius))
                    value += Double(rng.uniform(-8, 8))
                    pixels[((image * height + y) * width + x) * 3 + channel] = UInt8(min(max(value.rounded(), 0), 255))
                }
            }
        }
    }
    return pixels
}

/// `count` smooth synthetic images at the network's input size, as calibration data.
func calibTestData(_ network: FusedNetwork, count: Int, seed: UInt64) throws -> CalibrationData {
    let pixels = calibTestImages(count: count, height: network.inputHeight, width: network.inputWidth, seed: seed)
    return try CalibrationData(inputHeight: network.inputHeight, inputWidth: network.inputWidth, pixels: pixels,
                               names: (0..<count).map { "image\($0)" })
}

/// NCHW activations of one image.
struct CalibTensor {
    var channels: Int
    var height: Int
    var width: Int
    var values: [Double]
    subscript(c: Int, y: Int, x: Int) -> Double { values[(c * height + y) * width + x] }
}

/// Direct 3x3, pad-1 conv + bias + ReLU in double, the loop nest straight from the definition.
func calibDirectConv(_ x: CalibTensor, _ conv: FusedConv) -> CalibTensor {
    let outHeight = convOutputSize(x.height, stride: conv.stride), outWidth = convOutputSize(x.width, stride: conv.stride)
    let inPerGroup = conv.inChannels / conv.groups, outPerGroup = conv.outChannels / conv.groups
    var out = CalibTensor(channels: conv.outChannels, height: outHeight, width: outWidth,
                          values: [Double](repeating: 0, count: conv.outChannels * outHeight * outWidth))
    for o in 0..<conv.outChannels {
        let group = o / outPerGroup
        for oy in 0..<outHeight {
            for ox in 0..<outWidth {
                var sum = Double(conv.bias[o])
                for c in 0..<inPerGroup {
                    for ky in 0..<3 {
                        for kx in 0..<3 {
                            let iy = oy * conv.stride + ky - 1, ix = ox * conv.stride + kx - 1
                            guard iy >= 0, iy < x.height, ix >= 0, ix < x.width else { continue }
                            sum += Double(conv.weight[((o * inPerGroup + c) * 3 + ky) * 3 + kx]) * x[group * inPerGroup + c, iy, ix]
                        }
                    }
                }
                out.values[(o * outHeight + oy) * outWidth + ox] = max(sum, 0)
            }
        }
    }
    return out
}

/// Normalized input of image `index` from HWC pixels, as the format defines it.
func calibNormalizedInput(_ pixels: [UInt8], index: Int, height: Int, width: Int, preprocessing: Preprocessing) -> CalibTensor {
    var values = [Double](repeating: 0, count: 3 * height * width)
    for c in 0..<3 {
        for p in 0..<(height * width) {
            let pixel = Float(pixels[(index * height * width + p) * 3 + c])
            values[c * height * width + p] = Double((pixel / 255 - preprocessing.mean[c]) / preprocessing.std[c])
        }
    }
    return CalibTensor(channels: 3, height: height, width: width, values: values)
}

/// Per-layer activations and logits of the direct reference.
func calibDirectForward(_ network: FusedNetwork, _ input: CalibTensor) -> (layers: [CalibTensor], logits: [Double]) {
    var x = input
    var layers: [CalibTensor] = []
    for conv in network.convs {
        x = calibDirectConv(x, conv)
        layers.append(x)
    }
    let plane = Double(x.height * x.width)
    let pooled = (0..<x.channels).map { c in (0..<(x.height * x.width)).reduce(0.0) { $0 + x.values[c * x.height * x.width + $1] } / plane }
    let logits = (0..<network.numClasses).map { k in
        (0..<x.channels).reduce(Double(network.fcBias[k])) { $0 + Double(network.fcWeight[k * x.channels + $1]) * pooled[$1] }
    }
    return (layers, logits)
}

func calibTemporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("qarep-calib-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

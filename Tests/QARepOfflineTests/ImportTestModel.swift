// Test-side RepVGG-family networks in their TRAINING form (separate branches), with an unfused FP32 forward
// written directly from the block definitions, and a naive forward for the fused deploy form. Neither calls
// the importer's fusion code, so comparing them checks the fusion.
import QARepOffline

struct ImportTestRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed ^ 0x5DEE_CE66_D1CE_4E5B }
    mutating func next() -> UInt64 {
        // xorshift64*: a different generator from the runtime tests' on purpose (fixtures stay independent).
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 0x2545_F491_4F6C_DD1D
    }
    mutating func uniform(_ low: Float, _ high: Float) -> Float {
        low + (high - low) * Float(next() >> 40) / Float(1 << 24)
    }
    mutating func array(_ count: Int, _ low: Float, _ high: Float) -> [Float] {
        (0..<count).map { _ in uniform(low, high) }
    }
}

struct ImportTestBN {
    var gamma: [Float]?
    var beta: [Float]?
    var mean: [Float]
    var variance: [Float]

    static func random(_ channels: Int, _ rng: inout ImportTestRandom, affine: Bool = true) -> ImportTestBN {
        ImportTestBN(gamma: affine ? rng.array(channels, 0.5, 1.5) : nil,
                     beta: affine ? rng.array(channels, -0.3, 0.3) : nil,
                     mean: rng.array(channels, -0.3, 0.3), variance: rng.array(channels, 0.4, 1.6))
    }
}

struct ImportTestConv {
    /// OIHW [out][in/groups][k][k]
    var weight: [Float]
    var kernel: Int
    var bias: [Float]?
    var bn: ImportTestBN?
}

struct ImportTestBlock {
    var stage: Int
    var index: Int
    var inChannels: Int
    var outChannels: Int
    var stride: Int
    var groups: Int
    var dense: ImportTestConv?
    var pointwise: ImportTestConv?
    var alpha: Float?
    var hasIdentity = false
    var identityBN: ImportTestBN?
    var hasAveragePool = false
    /// Deploy-form fused conv (3x3 with bias), alone or followed by `postBN`.
    var fused: ImportTestConv?
    var postBN: ImportTestBN?
}

struct ImportTestNetwork {
    var blocks: [ImportTestBlock]
    var fcWeight: [Float]
    var fcBias: [Float]
    var numClasses: Int
    var epsilon: Float = 1e-5
}

/// One block's channels and stride in the builder layout.
struct ImportTestLayout {
    var stage: Int
    var index: Int
    var inChannels: Int
    var outChannels: Int
    var stride: Int
    var groups: Int = 1

    var identityFits: Bool { inChannels == outChannels && stride == 1 }
}

/// Stem stride 1 (small inputs), a stage of two, and a grouped stage of three.
let importTestLayouts: [ImportTestLayout] = [
    ImportTestLayout(stage: 0, index: 0, inChannels: 3, outChannels: 8, stride: 1),
    ImportTestLayout(stage: 1, index: 0, inChannels: 8, outChannels: 8, stride: 2),
    ImportTestLayout(stage: 1, index: 1, inChannels: 8, outChannels: 8, stride: 1, groups: 2),
    ImportTestLayout(stage: 2, index: 0, inChannels: 8, outChannels: 12, stride: 2),
    ImportTestLayout(stage: 2, index: 1, inChannels: 12, outChannels: 12, stride: 1, groups: 4),
    ImportTestLayout(stage: 2, index: 2, inChannels: 12, outChannels: 12, stride: 1),
]

extension ImportTestConv {
    static func random(out: Int, inPerGroup: Int, kernel: Int, bias: Bool, bn: Bool, _ rng: inout ImportTestRandom) -> ImportTestConv {
        let scale = 1.2 / Float(inPerGroup * kernel * kernel).squareRoot()
        return ImportTestConv(weight: rng.array(out * inPerGroup * kernel * kernel, -scale, scale), kernel: kernel,
                              bias: bias ? rng.array(out, -0.2, 0.2) : nil, bn: bn ? .random(out, &rng) : nil)
    }
}

extension ImportTestNetwork {
    /// Builds blocks from a layout; `configure` decides each block's branches.
    static func build(layouts: [ImportTestLayout] = importTestLayouts, numClasses: Int = 5, seed: UInt64,
                      configure: (ImportTestLayout, inout ImportTestRandom) -> ImportTestBlock) -> ImportTestNetwork {
        var rng = ImportTestRandom(seed: seed)
        let blocks = layouts.map { configure($0, &rng) }
        let features = layouts.last?.outChannels ?? 0
        return ImportTestNetwork(blocks: blocks, fcWeight: rng.array(numClasses * features, -0.8, 0.8),
                                 fcBias: rng.array(numClasses, -0.3, 0.3), numClasses: numClasses)
    }
}

extension ImportTestBlock {
    init(_ layout: ImportTestLayout) {
        self.init(stage: layout.stage, index: layout.index, inChannels: layout.inChannels, outChannels: layout.outChannels,
                  stride: layout.stride, groups: layout.groups)
    }
    var inPerGroup: Int { inChannels / groups }
}

// MARK: - Naive forward passes (CHW, batch 1)

struct ImportTestTensor {
    var channels: Int
    var height: Int
    var width: Int
    var data: [Float]
}

func importTestConv(_ x: ImportTestTensor, weight: [Float], outChannels: Int, kernel: Int, stride: Int, groups: Int,
                    bias: [Float]?) -> ImportTestTensor {
    let pad = kernel / 2
    let outH = (x.height + 2 * pad - kernel) / stride + 1
    let outW = (x.width + 2 * pad - kernel) / stride + 1
    let inPerGroup = x.channels / groups
    let outPerGroup = outChannels / groups
    var y = [Float](repeating: 0, count: outChannels * outH * outW)
    for o in 0..<outChannels {
        let g = o / outPerGroup
        for oy in 0..<outH {
            for ox in 0..<outW {
                var sum: Float = bias?[o] ?? 0
                for c in 0..<inPerGroup {
                    let inputChannel = g * inPerGroup + c
                    for ky in 0..<kernel {
                        let iy = oy * stride + ky - pad
                        guard iy >= 0, iy < x.height else { continue }
                        for kx in 0..<kernel {
                            let ix = ox * stride + kx - pad
                            guard ix >= 0, ix < x.width else { continue }
                            sum += weight[((o * inPerGroup + c) * kernel + ky) * kernel + kx]
                                * x.data[(inputChannel * x.height + iy) * x.width + ix]
                        }
                    }
                }
                y[(o * outH + oy) * outW + ox] = sum
            }
        }
    }
    return ImportTestTensor(channels: outChannels, height: outH, width: outW, data: y)
}

func importTestBatchNorm(_ x: ImportTestTensor, _ bn: ImportTestBN, epsilon: Float) -> ImportTestTensor {
    var y = x
    let plane = x.height * x.width
    for c in 0..<x.channels {
        let inv = 1 / (bn.variance[c] + epsilon).squareRoot()
        for i in 0..<plane {
            let v = (x.data[c * plane + i] - bn.mean[c]) * inv
            y.data[c * plane + i] = v * (bn.gamma?[c] ?? 1) + (bn.beta?[c] ?? 0)
        }
    }
    return y
}

/// AvgPool2d(3, stride 1, padding 1) counting the zero padding (PyTorch's default).
func importTestAveragePool(_ x: ImportTestTensor) -> ImportTestTensor {
    var y = x
    for c in 0..<x.channels {
        for oy in 0..<x.height {
            for ox in 0..<x.width {
                var sum: Float = 0
                for iy in max(0, oy - 1)...min(x.height - 1, oy + 1) {
                    for ix in max(0, ox - 1)...min(x.width - 1, ox + 1) { sum += x.data[(c * x.height + iy) * x.width + ix] }
                }
                y.data[(c * x.height + oy) * x.width + ox] = sum / 9
            }
        }
    }
    return y
}

private func addInPlace(_ a: inout ImportTestTensor?, _ b: ImportTestTensor) {
    guard var sum = a else { a = b; return }
    for i in sum.data.indices { sum.data[i] += b.data[i] }
    a = sum
}

private func globalPoolAndClassify(_ x: ImportTestTensor, weight: [Float], bias: [Float], numClasses: Int) -> [Float] {
    let plane = x.height * x.width
    let pooled = (0..<x.channels).map { c in x.data[(c * plane)..<((c + 1) * plane)].reduce(0, +) / Float(plane) }
    return (0..<numClasses).map { k in
        (0..<x.channels).reduce(bias[k]) { $0 + weight[k * x.channels + $1] * pooled[$1] }
    }
}

extension ImportTestNetwork {
    /// Training-form forward: every branch separately, summed, post-BN, ReLU; then GAP and FC.
    func unfusedLogits(_ input: ImportTestTensor) -> [Float] {
        var x = input
        for block in blocks {
            var sum: ImportTestTensor? = nil
            for conv in [block.dense, block.pointwise, block.fused].compactMap({ $0 }) {
                var y = importTestConv(x, weight: conv.weight, outChannels: block.outChannels, kernel: conv.kernel,
                                       stride: block.stride, groups: block.groups, bias: conv.bias)
                if let bn = conv.bn { y = importTestBatchNorm(y, bn, epsilon: epsilon) }
                if let alpha = block.alpha, conv.kernel == 1 { y.data = y.data.map { $0 * alpha } }
                addInPlace(&sum, y)
            }
            if block.hasIdentity {
                addInPlace(&sum, block.identityBN.map { importTestBatchNorm(x, $0, epsilon: epsilon) } ?? x)
            }
            if block.hasAveragePool { addInPlace(&sum, importTestAveragePool(x)) }
            guard var y = sum else { return [] }
            if let bn = block.postBN { y = importTestBatchNorm(y, bn, epsilon: epsilon) }
            y.data = y.data.map { max($0, 0) }
            x = y
        }
        return globalPoolAndClassify(x, weight: fcWeight, bias: fcBias, numClasses: numClasses)
    }
}

func importTestFusedLogits(_ net: FusedNetwork, _ input: ImportTestTensor) -> [Float] {
    var x = input
    for conv in net.convs {
        var y = importTestConv(x, weight: conv.weight, outChannels: conv.outChannels, kernel: 3, stride: conv.stride,
                               groups: conv.groups, bias: conv.bias)
        y.data = y.data.map { max($0, 0) }
        x = y
    }
    return globalPoolAndClassify(x, weight: net.fcWeight, bias: net.fcBias, numClasses: net.numClasses)
}

func importTestInput(seed: UInt64, height: Int = 12, width: Int = 12) -> ImportTestTensor {
    var rng = ImportTestRandom(seed: seed)
    return ImportTestTensor(channels: 3, height: height, width: width, data: rng.array(3 * height * width, -1.5, 1.5))
}

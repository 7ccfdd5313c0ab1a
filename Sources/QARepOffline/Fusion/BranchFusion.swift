// Exact reparameterization of one recognized block into a single 3x3 conv + bias, in double precision.
// The equations are written out in docs/fusion.md.

struct FusedKernel {
    /// OIHW [out][in / groups][3][3]
    var weight: [Double]
    var bias: [Double]
}

/// Per-channel affine form of an inference BatchNorm: y = scale * x + shift.
private func batchNormAffine(_ norm: BatchNormTensors, epsilon: Double) throws -> (scale: [Double], shift: [Double]) {
    guard let mean = norm.mean, let variance = norm.variance else {
        throw ImportError("'\(norm.keyPrefix)' lacks running statistics")
    }
    var scale = [Double](repeating: 0, count: mean.count)
    var shift = [Double](repeating: 0, count: mean.count)
    for c in mean.indices {
        let denominator = (variance[c] + epsilon).squareRoot()
        guard denominator > 0, denominator.isFinite else {
            throw ImportError("'\(norm.keyPrefix).running_var'[\(c)] = \(variance[c]) gives a non-positive variance + eps")
        }
        let t = (norm.gamma?[c] ?? 1) / denominator
        scale[c] = t
        shift[c] = (norm.beta?[c] ?? 0) - mean[c] * t
    }
    return (scale, shift)
}

func fuseBlock(_ block: RecognizedBlock, epsilon: Double) throws -> FusedKernel {
    let out = block.outChannels
    let inPerGroup = block.inChannels / block.groups
    let taps = inPerGroup * 9
    var weight = [Double](repeating: 0, count: out * taps)
    var bias = [Double](repeating: 0, count: out)

    /// Adds `gain * BN(conv(x) + b)` of a 3x3 or 1x1 branch; a 1x1 kernel lands on the 3x3 centre tap.
    func addConvBranch(_ conv: ConvTensors, kernel: Int, gain: Double) throws {
        guard let w = conv.weight else { return }
        var scale = [Double](repeating: 1, count: out)
        var shift = [Double](repeating: 0, count: out)
        if let norm = conv.batchNorm { (scale, shift) = try batchNormAffine(norm, epsilon: epsilon) }
        for o in 0..<out {
            let t = gain * scale[o]
            for c in 0..<inPerGroup {
                if kernel == 3 {
                    for k in 0..<9 { weight[o * taps + c * 9 + k] += w[(o * inPerGroup + c) * 9 + k] * t }
                } else {
                    weight[o * taps + c * 9 + 4] += w[o * inPerGroup + c] * t
                }
            }
            bias[o] += gain * ((conv.bias?[o] ?? 0) * scale[o] + shift[o])
        }
    }

    if let dense = block.dense { try addConvBranch(dense, kernel: 3, gain: 1) }
    if let pointwise = block.pointwise { try addConvBranch(pointwise, kernel: 1, gain: block.alpha ?? 1) }
    if let fused = block.reparameterized { try addConvBranch(fused, kernel: 3, gain: 1) }

    // Identity: output channel i reads input channel i, which is index i % (in/groups) inside its group.
    if block.hasIdentityKeys || block.addsParameterFreeIdentity {
        var scale = [Double](repeating: 1, count: out)
        var shift = [Double](repeating: 0, count: out)
        if let norm = block.identity { (scale, shift) = try batchNormAffine(norm, epsilon: epsilon) }
        for i in 0..<out {
            weight[i * taps + (i % inPerGroup) * 9 + 4] += scale[i]
            bias[i] += shift[i]
        }
    }
    // AvgPool2d(3, stride 1, padding 1, count_include_pad) is a 3x3 depthwise conv of 1/9 everywhere.
    if block.addsAveragePool {
        for i in 0..<out {
            for k in 0..<9 { weight[i * taps + (i % inPerGroup) * 9 + k] += 1.0 / 9.0 }
        }
    }
    if let norm = block.postNorm {
        let (scale, shift) = try batchNormAffine(norm, epsilon: epsilon)
        for o in 0..<out {
            for k in 0..<taps { weight[o * taps + k] *= scale[o] }
            bias[o] = bias[o] * scale[o] + shift[o]
        }
    }
    guard weight.allSatisfy(\.isFinite), bias.allSatisfy(\.isFinite) else {
        throw ImportError("block '\(block.name)' fuses to non-finite weights (the checkpoint holds inf/NaN or extreme BatchNorm statistics)")
    }
    return FusedKernel(weight: weight, bias: bias)
}

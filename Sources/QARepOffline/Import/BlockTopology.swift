// Fills in what key names do not say: channel counts and groups (from weight shapes), strides (from the
// RepVGG builder convention) and whether a parameter-free identity / average-pool branch exists.

/// Where a block's stride came from, so a conflict with an identity branch is reported or resolved correctly.
private enum StrideSource { case explicit, convention }

func resolveTopology(_ network: inout RecognizedNetwork, options: ImportOptions, metadataStrides: [Int]?) throws {
    let explicitStrides = options.blockStrides ?? metadataStrides
    if let strides = explicitStrides {
        guard strides.count == network.blocks.count else {
            throw ImportError("\(strides.count) block strides given but the checkpoint has \(network.blocks.count) blocks")
        }
        guard strides.allSatisfy({ $0 == 1 || $0 == 2 }) else {
            throw ImportError("block strides must be 1 or 2, got \(strides)")
        }
    }
    let stemStride = options.stemStride ?? (min(options.inputHeight, options.inputWidth) <= 64 ? 1 : 2)
    guard stemStride == 1 || stemStride == 2 else { throw ImportError("stem stride must be 1 or 2, got \(stemStride)") }

    var previousOut: Int? = nil
    var previousStage: String? = nil
    for index in network.blocks.indices {
        var block = network.blocks[index]
        let stage = stageName(ofCanonicalBlock: canonicalBlockName(block.name))
        defer { previousStage = stage }

        // super-gradients saves an unused fused-conv placeholder next to the training branches.
        if block.dense != nil || block.pointwise != nil { block.reparameterized = nil }
        let convs = [block.dense, block.pointwise, block.reparameterized].compactMap { $0 }
        guard !convs.isEmpty else {
            throw ImportError("block '\(block.name)' has no convolution (no 3x3, 1x1 or fused conv weight)")
        }
        for conv in convs where conv.weight == nil {
            throw ImportError("block '\(block.name)': '\(conv.keyPrefix)' has parameters but no conv weight")
        }
        let reference = convs[0]
        let outChannels = reference.weightShape[0]
        let inPerGroup = reference.weightShape[1]
        let inChannels = previousOut ?? inPerGroup
        guard outChannels > 0, inPerGroup > 0, inChannels % inPerGroup == 0 else {
            throw ImportError("'\(reference.keyPrefix).weight' has shape \(reference.weightShape): its \(inPerGroup) input channels per group do not divide the \(inChannels) channels the previous block produces")
        }
        let groups = inChannels / inPerGroup
        guard outChannels % groups == 0 else {
            throw ImportError("'\(reference.keyPrefix).weight' has \(outChannels) output channels, not divisible by its \(groups) groups")
        }
        try checkConv(block.dense, kernel: 3, out: outChannels, inPerGroup: inPerGroup)
        try checkConv(block.pointwise, kernel: 1, out: outChannels, inPerGroup: inPerGroup)
        try checkConv(block.reparameterized, kernel: 3, out: outChannels, inPerGroup: inPerGroup)
        try checkNorm(block.identity, channels: outChannels, requireStatistics: true)
        try checkNorm(block.postNorm, channels: outChannels, requireStatistics: true)
        if block.hasIdentityKeys, inChannels != outChannels {
            throw ImportError("block '\(block.name)' has an identity branch ('\(block.identity?.keyPrefix ?? block.name)') but maps \(inChannels) to \(outChannels) channels")
        }

        var stride: Int
        let source: StrideSource
        if let strides = explicitStrides {
            stride = strides[index]
            source = .explicit
        } else if index == 0 {
            stride = stemStride
            source = .convention
        } else {
            stride = stage != previousStage ? 2 : 1
            source = .convention
        }
        if block.hasIdentityKeys, stride != 1 {
            guard source == .convention else {
                throw ImportError("block '\(block.name)' has an identity branch, so its stride must be 1, but stride \(stride) was given")
            }
            stride = 1
        }

        // QARepVGG-style blocks (post-BN, or a 1x1 without BN) carry an identity that has no parameters:
        // present exactly where the builder creates it, in == out and stride 1.
        let parameterFreeForm = block.postNorm != nil || (block.pointwise != nil && block.pointwise?.batchNorm == nil)
        let trainingForm = block.dense != nil || block.pointwise != nil
        let identityFits = inChannels == outChannels && stride == 1
        block.addsParameterFreeIdentity = trainingForm && !block.hasIdentityKeys && identityFits
            && (options.implicitIdentity ?? parameterFreeForm)
        block.addsAveragePool = trainingForm && identityFits && options.averagePoolBranch

        block.inChannels = inChannels
        block.outChannels = outChannels
        block.groups = groups
        block.stride = stride
        network.blocks[index] = block
        previousOut = outChannels
    }

    let lastOut = previousOut ?? 0
    guard network.head.inFeatures == lastOut else {
        throw ImportError("'\(network.head.weightKey)' expects \(network.head.inFeatures) features but the last block produces \(lastOut) channels")
    }
}

private func checkConv(_ conv: ConvTensors?, kernel: Int, out: Int, inPerGroup: Int) throws {
    guard let conv else { return }
    let expected = [out, inPerGroup, kernel, kernel]
    guard conv.weightShape == expected else {
        throw ImportError("'\(conv.keyPrefix)' weight has shape [\(conv.weightShape.map(String.init).joined(separator: ", "))], expected [\(expected.map(String.init).joined(separator: ", "))]")
    }
    if let bias = conv.bias, bias.count != out {
        throw ImportError("'\(conv.keyPrefix)' bias has \(bias.count) values, expected \(out)")
    }
    try checkNorm(conv.batchNorm, channels: out, requireStatistics: true)
}

private func checkNorm(_ norm: BatchNormTensors?, channels: Int, requireStatistics: Bool) throws {
    guard let norm else { return }
    let fields: [(String, [Double]?)] = [("weight", norm.gamma), ("bias", norm.beta), ("running_mean", norm.mean),
                                         ("running_var", norm.variance)]
    for (field, values) in fields {
        if let values, values.count != channels {
            throw ImportError("'\(norm.keyPrefix).\(field)' has \(values.count) values, expected \(channels)")
        }
        if values == nil, requireStatistics, field.hasPrefix("running") {
            throw ImportError("'\(norm.keyPrefix).\(field)' is missing: BatchNorm without running statistics cannot be fused")
        }
    }
}

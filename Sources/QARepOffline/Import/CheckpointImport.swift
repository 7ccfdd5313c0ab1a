// Entry point of checkpoint import: read the container, recognize the RepVGG-family layout by key names and
// shapes, fuse every block exactly (double precision), and package the result as a FusedNetwork.
import QARep

/// What a state_dict cannot tell about a model.
public struct ImportOptions: Sendable {
    /// BatchNorm epsilon (not stored in state_dicts): 1e-5 for most sources, 1e-3 for YOLOv6.
    public var bnEpsilon: Double = 1e-5
    public var inputHeight: Int = 224
    public var inputWidth: Int = 224
    public var preprocessing = Preprocessing()
    /// One label per class; nil gives class_0, class_1, ...
    public var labels: [String]? = nil
    /// Stride of the first block (the stem). nil: 2, as the RepVGG builders do, except for inputs of at most
    /// 64 px (CIFAR-style models keep the full resolution in the stem), where it is 1.
    public var stemStride: Int? = nil
    /// Stride of every block, in order; overrides the builder convention (first block of each stage stride 2).
    public var blockStrides: [Int]? = nil
    /// Whether blocks without identity parameters still add their input (QARepVGG, YOLOv6 and super-gradients
    /// QARepVGG blocks do, wherever in == out and stride is 1). nil: yes for blocks with a post-BN or a 1x1
    /// branch without BN; set false for variants built without the residual (PP-YOLOE style).
    public var implicitIdentity: Bool? = nil
    /// YOLOv6 QARepVGGBlockV2 adds a parameter-free 3x3 average-pool branch wherever the identity is; a
    /// state_dict cannot show it, so it must be asked for.
    public var averagePoolBranch: Bool = false

    public init() {}
}

public struct ImportError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// How one deployed conv layer was derived, for logs and `qarep fuse` output.
public struct ImportedBlockSummary: Sendable, Equatable {
    /// Module name in the checkpoint, e.g. "stage1.0" or "stages.0.0".
    public var name: String
    public var inChannels: Int
    public var outChannels: Int
    public var stride: Int
    public var groups: Int
    /// Branches folded into the layer, e.g. ["3x3+bn", "1x1", "identity", "post-bn"].
    public var branches: [String]
    /// Per BatchNorm of a training-form block, gamma / sqrt(running_var + eps) per channel: the gain each branch
    /// gives its output before the branches are summed (the paper's C1 condition). Empty for fused checkpoints.
    public var branchGains: [BranchGain] = []
}

public struct BranchGain: Sendable, Equatable, Codable {
    /// "3x3", "1x1", "identity" or "post".
    public var branch: String
    public var values: [Double]
}

public struct ImportReport: Sendable {
    public var blocks: [ImportedBlockSummary]
    public var headKey: String
    public var numClasses: Int

    /// One line per layer: "stage1.0  32->64  stride 2  groups 1  [3x3+bn, 1x1+bn]".
    public var layerListing: String {
        var lines = blocks.enumerated().map { index, b in
            "\(index): \(b.name)  \(b.inChannels)->\(b.outChannels)  stride \(b.stride)  groups \(b.groups)  [\(b.branches.joined(separator: ", "))]"
        }
        lines.append("head: \(headKey)  \(blocks.last?.outChannels ?? 0)->\(numClasses)")
        return lines.joined(separator: "\n")
    }
}

/// Reads a checkpoint (safetensors, or a PyTorch torch.save zip through a restricted unpickler), recognizes its
/// RepVGG-family layout by key names and shapes, and fuses every block into one 3x3 conv + bias.
public func importCheckpoint(path: String, options: ImportOptions) throws -> FusedNetwork {
    try importCheckpointWithReport(path: path, options: options).network
}

/// `importCheckpoint`, plus the per-layer account of what was recognized.
public func importCheckpointWithReport(path: String, options: ImportOptions) throws -> (network: FusedNetwork, report: ImportReport) {
    let stateDict = try readStateDict(path: path)
    return try fuseStateDict(stateDict, options: options)
}

func fuseStateDict(_ stateDict: StateDict, options: ImportOptions) throws -> (network: FusedNetwork, report: ImportReport) {
    guard options.bnEpsilon >= 0, options.bnEpsilon.isFinite else {
        throw ImportError("BatchNorm epsilon must be finite and non-negative, got \(options.bnEpsilon)")
    }
    guard options.inputHeight > 0, options.inputWidth > 0 else {
        throw ImportError("input size must be positive, got \(options.inputHeight)x\(options.inputWidth)")
    }
    var network = try recognizeNetwork(stateDict)
    try resolveTopology(&network, options: options, metadataStrides: try fusedCheckpointStrides(stateDict.metadata))

    var convs: [FusedConv] = []
    var summaries: [ImportedBlockSummary] = []
    for block in network.blocks {
        let fused = try fuseBlock(block, epsilon: options.bnEpsilon)
        convs.append(FusedConv(inChannels: block.inChannels, outChannels: block.outChannels, stride: block.stride,
                               groups: block.groups, weight: fused.weight.map { Float($0) }, bias: fused.bias.map { Float($0) }))
        summaries.append(ImportedBlockSummary(name: block.name, inChannels: block.inChannels, outChannels: block.outChannels,
                                              stride: block.stride, groups: block.groups, branches: branchNames(block),
                                              branchGains: branchGains(block, epsilon: options.bnEpsilon)))
    }
    let head = network.head
    let labels = options.labels ?? (0..<head.numClasses).map { "class_\($0)" }
    guard labels.count == head.numClasses else {
        throw ImportError("\(labels.count) labels given but '\(head.weightKey)' has \(head.numClasses) classes")
    }
    guard head.weight.allSatisfy(\.isFinite), head.bias?.allSatisfy(\.isFinite) ?? true else {
        throw ImportError("'\(head.weightKey)' holds non-finite values")
    }
    let net = FusedNetwork(convs: convs, fcWeight: head.weight.map { Float($0) },
                           fcBias: (head.bias ?? [Double](repeating: 0, count: head.numClasses)).map { Float($0) },
                           numClasses: head.numClasses, inputHeight: options.inputHeight, inputWidth: options.inputWidth,
                           preprocessing: options.preprocessing, labels: labels)
    return (net, ImportReport(blocks: summaries, headKey: head.weightKey, numClasses: head.numClasses))
}

private func branchNames(_ block: RecognizedBlock) -> [String] {
    func conv(_ label: String, _ c: ConvTensors?) -> String? {
        guard let c else { return nil }
        return label + (c.batchNorm != nil ? "+bn" : "") + (c.bias != nil ? "+bias" : "")
    }
    var names = [conv("3x3", block.dense), conv("1x1", block.pointwise), conv("fused", block.reparameterized)].compactMap { $0 }
    if block.alpha != nil { names.append("alpha") }
    if block.hasIdentityKeys { names.append("identity+bn") }
    if block.addsParameterFreeIdentity { names.append("identity") }
    if block.addsAveragePool { names.append("avgpool") }
    if block.postNorm != nil { names.append("post-bn") }
    return names
}

private func branchGains(_ block: RecognizedBlock, epsilon: Double) -> [BranchGain] {
    let norms: [(String, BatchNormTensors?)] = [("3x3", block.dense?.batchNorm), ("1x1", block.pointwise?.batchNorm),
                                                ("identity", block.identity), ("post", block.postNorm)]
    return norms.compactMap { name, norm in
        guard let norm, let variance = norm.variance else { return nil }
        return BranchGain(branch: name, values: variance.indices.map { c in
            (norm.gamma?[c] ?? 1) / (variance[c] + epsilon).squareRoot()
        })
    }
}

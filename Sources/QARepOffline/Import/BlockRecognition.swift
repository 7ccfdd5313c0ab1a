// Recognizes a RepVGG-family network from a state_dict's key names and shapes alone. A key is split at its
// first branch token (rbr_dense, conv_kxk, branch_3x3, rbr_1x1, ..., bn, post_bn, alpha): what precedes it
// names the block, what follows names the parameter. Blocks are recognized by which branches are present,
// not by which project wrote them, so any subset of {3x3 conv [+BN] [+bias], 1x1 conv [+BN] [+bias],
// identity [+BN]} with an optional post-BN, or a fused conv with an optional post-BN, is accepted.

struct BatchNormTensors {
    var keyPrefix: String
    var gamma: [Double]?
    var beta: [Double]?
    var mean: [Double]?
    var variance: [Double]?
}

struct ConvTensors {
    var keyPrefix: String
    var weight: [Double]?
    var weightShape: [Int] = []
    var bias: [Double]?
    var batchNorm: BatchNormTensors?
}

enum BranchKind: Sendable {
    case dense, pointwise, identity, reparameterized, postNorm, alpha
}

private let branchTokens: [String: BranchKind] = [
    "rbr_dense": .dense, "conv_kxk": .dense, "branch_3x3": .dense,
    "rbr_1x1": .pointwise, "conv_1x1": .pointwise, "branch_1x1": .pointwise,
    "rbr_identity": .identity, "identity": .identity, "no_conv_branch": .identity,
    "rbr_reparam": .reparameterized, "reparam_conv": .reparameterized,
    "bn": .postNorm, "post_bn": .postNorm,
    "alpha": .alpha,
]

struct RecognizedBlock {
    /// Module name as found in the checkpoint (e.g. "stage1.0", "stages.0.0").
    var name: String
    var dense: ConvTensors?
    var pointwise: ConvTensors?
    var identity: BatchNormTensors?
    var hasIdentityKeys = false
    var reparameterized: ConvTensors?
    var postNorm: BatchNormTensors?
    var alpha: Double?
    var alphaKey: String?

    // Resolved by `resolveTopology`.
    var inChannels = 0
    var outChannels = 0
    var groups = 1
    var stride = 1
    var addsParameterFreeIdentity = false
    var addsAveragePool = false

    var usesTrainingBranches: Bool { dense != nil || pointwise != nil || hasIdentityKeys }
}

struct RecognizedHead {
    var weightKey: String
    var weight: [Double]
    var numClasses: Int
    var inFeatures: Int
    var bias: [Double]?
}

struct RecognizedNetwork {
    var blocks: [RecognizedBlock]
    var head: RecognizedHead
}

/// One component of a module name for ordering: numbers compare numerically ("stage10" after "stage2").
private enum NameComponent: Comparable {
    case number(Int)
    case text(String)
}

private func naturalComponents(_ name: String) -> [NameComponent] {
    var result: [NameComponent] = []
    for part in name.split(separator: ".") {
        let letters = part.prefix { !$0.isNumber }
        let digits = part.dropFirst(letters.count)
        if !letters.isEmpty { result.append(.text(String(letters))) }
        if !digits.isEmpty {
            if digits.allSatisfy(\.isNumber), let n = Int(digits) { result.append(.number(n)) }
            else { result.append(.text(String(digits))) }
        }
    }
    return result
}

/// timm numbers `stem`, `stages.0`, ... where the official code has `stage0`, `stage1`, ...
func canonicalBlockName(_ name: String) -> String {
    if name == "stem" { return "stage0" }
    let parts = name.split(separator: ".", omittingEmptySubsequences: false)
    if parts.count >= 2, parts[0] == "stages", let s = Int(parts[1]) {
        return (["stage\(s + 1)"] + parts.dropFirst(2).map(String.init)).joined(separator: ".")
    }
    return name
}

/// Blocks of one stage share everything but a trailing block index ("stage2.3" -> "stage2").
func stageName(ofCanonicalBlock name: String) -> String {
    let parts = name.split(separator: ".")
    if parts.count > 1, let last = parts.last, last.allSatisfy(\.isNumber) {
        return parts.dropLast().joined(separator: ".")
    }
    return name
}

private func shapeText(_ shape: [Int]) -> String { "[" + shape.map(String.init).joined(separator: ", ") + "]" }

func recognizeNetwork(_ stateDict: StateDict) throws -> RecognizedNetwork {
    var blocksByName: [String: RecognizedBlock] = [:]
    var otherKeys: [String] = []

    for key in stateDict.names {
        guard let tensor = stateDict.tensors[key] else { continue }
        let parts = key.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        if parts.last == "num_batches_tracked" { continue }
        guard let tokenIndex = parts.indices.first(where: { $0 > 0 && branchTokens[parts[$0]] != nil }),
              let kind = branchTokens[parts[tokenIndex]] else {
            otherKeys.append(key)
            continue
        }
        let blockName = parts[..<tokenIndex].joined(separator: ".")
        let branchPrefix = parts[...tokenIndex].joined(separator: ".")
        let rest = Array(parts[(tokenIndex + 1)...])
        var block = blocksByName[blockName] ?? RecognizedBlock(name: blockName)
        try assign(tensor, key: key, kind: kind, branchPrefix: branchPrefix, rest: rest, to: &block)
        blocksByName[blockName] = block
    }
    guard !blocksByName.isEmpty else {
        throw ImportError("no RepVGG-style block found: no key contains rbr_dense, rbr_1x1, rbr_reparam, conv_kxk, reparam_conv, branch_3x3 or similar (first key: '\(stateDict.names.first ?? "none")')")
    }
    let ordered = blocksByName.values.sorted {
        naturalComponents(canonicalBlockName($0.name)).lexicographicallyPrecedes(naturalComponents(canonicalBlockName($1.name)))
    }
    let head = try recognizeHead(stateDict, candidates: otherKeys)
    return RecognizedNetwork(blocks: ordered, head: head)
}

private func assign(_ tensor: CheckpointTensor, key: String, kind: BranchKind, branchPrefix: String,
                    rest: [String], to block: inout RecognizedBlock) throws {
    func values() throws -> [Double] {
        guard let v = tensor.doubles() else {
            throw ImportError("'\(key)' has integer dtype \(tensor.dtype.rawValue); expected floating-point weights")
        }
        return v
    }
    func unknown() -> ImportError {
        ImportError("unrecognized key '\(key)' (shape \(shapeText(tensor.shape))) in block '\(block.name)'")
    }
    func setBatchNorm(_ norm: inout BatchNormTensors?, prefix: String, field: String) throws {
        var target = norm ?? BatchNormTensors(keyPrefix: prefix)
        guard tensor.shape.count == 1 else {
            throw ImportError("'\(key)' has shape \(shapeText(tensor.shape)); a BatchNorm parameter must be 1-D")
        }
        switch field {
        case "weight": target.gamma = try values()
        case "bias": target.beta = try values()
        case "running_mean": target.mean = try values()
        case "running_var": target.variance = try values()
        default: throw unknown()
        }
        norm = target
    }
    func setConv(_ conv: inout ConvTensors?) throws {
        var target = conv ?? ConvTensors(keyPrefix: branchPrefix)
        switch rest {
        case ["conv", "weight"], ["weight"]:
            guard tensor.shape.count == 4 else {
                throw ImportError("'\(key)' has shape \(shapeText(tensor.shape)); a conv weight must be 4-D [out, in/groups, k, k]")
            }
            target.weight = try values()
            target.weightShape = tensor.shape
        case ["conv", "bias"], ["bias"]:
            target.bias = try values()
        case let r where r.count == 2 && r[0] == "bn":
            try setBatchNorm(&target.batchNorm, prefix: branchPrefix + ".bn", field: r[1])
        default:
            throw unknown()
        }
        conv = target
    }

    switch kind {
    case .dense: try setConv(&block.dense)
    case .pointwise: try setConv(&block.pointwise)
    case .reparameterized: try setConv(&block.reparameterized)
    case .identity:
        block.hasIdentityKeys = true
        let field = rest.count == 2 && rest[0] == "bn" ? rest[1] : (rest.count == 1 ? rest[0] : "")
        try setBatchNorm(&block.identity, prefix: branchPrefix, field: field)
    case .postNorm:
        guard rest.count == 1 else { throw unknown() }
        try setBatchNorm(&block.postNorm, prefix: branchPrefix, field: rest[0])
    case .alpha:
        let v = try values()
        guard rest.isEmpty, v.count == 1 else { throw unknown() }
        block.alpha = v[0]
        block.alphaKey = key
    }
}

private func recognizeHead(_ stateDict: StateDict, candidates: [String]) throws -> RecognizedHead {
    var weights: [String] = []
    for key in candidates {
        guard let tensor = stateDict.tensors[key] else { continue }
        let isLinear = tensor.shape.count == 2
        let isPointwiseConv = tensor.shape.count == 4 && tensor.shape[2] == 1 && tensor.shape[3] == 1
        if key.hasSuffix(".weight"), isLinear || isPointwiseConv {
            weights.append(key)
        } else if key.hasSuffix(".bias"), tensor.shape.count == 1,
                  candidates.contains(String(key.dropLast(5)) + ".weight") {
            continue
        } else {
            throw ImportError("unrecognized key '\(key)' (shape \(shapeText(tensor.shape))): not part of a RepVGG block or the classifier head")
        }
    }
    guard let weightKey = weights.first else {
        throw ImportError("no classifier head found (expected a 2-D weight such as 'linear.weight' or 'head.fc.weight')")
    }
    guard weights.count == 1 else {
        throw ImportError("several classifier head candidates: " + weights.map { "'\($0)'" }.joined(separator: ", "))
    }
    guard let tensor = stateDict.tensors[weightKey], let weight = tensor.doubles() else {
        throw ImportError("'\(weightKey)' has an integer dtype; expected floating-point weights")
    }
    let biasKey = String(weightKey.dropLast(6)) + "bias"
    var bias: [Double]? = nil
    if let biasTensor = stateDict.tensors[biasKey] {
        guard let b = biasTensor.doubles(), b.count == tensor.shape[0] else {
            throw ImportError("'\(biasKey)' has shape \(shapeText(biasTensor.shape)); expected [\(tensor.shape[0])]")
        }
        bias = b
    }
    return RecognizedHead(weightKey: weightKey, weight: weight, numClasses: tensor.shape[0], inFeatures: tensor.shape[1], bias: bias)
}

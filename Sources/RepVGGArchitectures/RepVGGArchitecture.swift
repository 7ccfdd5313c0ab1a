// The RepVGG family as the official builder (DingXiaoH/RepVGG, repvgg.py) lays it out, in deployed form:
// one 3x3 conv per block. Used by bench (synthetic INT8 models) and `qarep synthesize` (synthetic FP32 ones).
// A target of its own, without Foundation or BLAS, so that bench needs nothing of the offline module: loading
// OpenBLAS starts a worker thread that slows bench's first runs.

/// Shape of one deployed 3x3 conv layer (padding 1).
public struct ConvLayerShape: Equatable, Sendable {
    public var inChannels: Int
    public var outChannels: Int
    public var stride: Int
    public var groups: Int
}

public struct RepVGGArchitecture: Equatable, Sendable {
    public var name: String
    /// Blocks in stages 1...4 (the stem, stage 0, is always one block).
    public var blocksPerStage: [Int]
    /// Width multipliers a (stages 1-3, and the stem up to 64 channels) and b (stage 4).
    public var widthA: Double
    public var widthB: Double
    /// Groups of the grouped blocks (1: none).
    public var groups: Int

    private static let blocksA = [2, 4, 14, 1]
    private static let blocksB = [4, 6, 16, 1]

    /// Base variants; a `g2` / `g4` suffix adds grouped convs to any of them.
    private static let baseVariants: [String: (blocks: [Int], a: Double, b: Double)] = [
        "A0": (blocksA, 0.75, 2.5), "A1": (blocksA, 1, 2.5), "A2": (blocksA, 1.5, 2.75),
        "B0": (blocksB, 1, 2.5), "B1": (blocksB, 2, 4), "B2": (blocksB, 2.5, 5), "B3": (blocksB, 3, 5),
    ]

    /// The names the benchmark advertises (the published variants).
    public static let publishedNames = ["A0", "A1", "A2", "B0", "B1", "B1g2", "B1g4", "B2", "B2g4", "B3"]

    /// Parses "A0", "B1g2", "b2g4", ...; nil for an unknown name.
    public init?(named rawName: String) {
        let name = String(rawName.uppercased().map { $0 == "G" ? "g" : $0 })
        var base = name
        var groups = 1
        if let gIndex = name.firstIndex(of: "g") {
            base = String(name[..<gIndex])
            guard let g = Int(name[name.index(after: gIndex)...]), g == 2 || g == 4 else { return nil }
            groups = g
        }
        guard let variant = Self.baseVariants[base] else { return nil }
        self.name = name
        self.blocksPerStage = variant.blocks
        self.widthA = variant.a
        self.widthB = variant.b
        self.groups = groups
    }

    /// Official: blocks counted from the first block of stage 1 as 1; these even indices are grouped.
    /// The stem is not counted and the last stage's single block always has an odd index.
    private static let groupedBlockIndices: Set<Int> = Set(stride(from: 2, through: 26, by: 2))

    /// Conv layers in order (stem first). Every stage starts with a stride-2 block.
    public var convLayers: [ConvLayerShape] {
        let stageWidths = [Int(64 * widthA), Int(128 * widthA), Int(256 * widthA), Int(512 * widthB)]
        let stemWidth = min(64, Int(64 * widthA))
        var layers = [ConvLayerShape(inChannels: 3, outChannels: stemWidth, stride: 2, groups: 1)]
        var inChannels = stemWidth
        var blockIndex = 1
        for (stage, blocks) in blocksPerStage.enumerated() {
            for block in 0..<blocks {
                let grouped = groups > 1 && Self.groupedBlockIndices.contains(blockIndex)
                layers.append(ConvLayerShape(inChannels: inChannels, outChannels: stageWidths[stage],
                                             stride: block == 0 ? 2 : 1, groups: grouped ? groups : 1))
                inChannels = stageWidths[stage]
                blockIndex += 1
            }
        }
        return layers
    }
}

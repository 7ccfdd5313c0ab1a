/// One step of the forward pass, for reports and profiling.
public struct LayerInfo: Sendable, Equatable {
    /// What the step computes; a struct so that kinds added later do not break code that switches over it.
    public struct Kind: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        /// The kind's name.
        public var description: String { rawValue }

        /// A fused 3x3 conv + bias + ReLU, padding 1.
        public static let conv3x3 = Kind(rawValue: "conv3x3")
        /// The global average pool before the classifier.
        public static let globalAveragePool = Kind(rawValue: "global_average_pool")
        /// The fully connected classifier, which produces the logits.
        public static let fullyConnected = Kind(rawValue: "fully_connected")
    }

    /// What the step computes.
    public var kind: Kind
    /// "conv.0", "conv.1", ..., "pool", "fc".
    public var name: String
    /// The step's input per image: height, width, channels.
    public var inputHeight: Int, inputWidth: Int, inputChannels: Int
    /// The step's output per image: height, width, channels.
    public var outputHeight: Int, outputWidth: Int, outputChannels: Int
    /// 1 or 2 for convs, 1 otherwise.
    public var stride: Int
    /// Channel groups of a conv (1: dense), 1 otherwise.
    public var groups: Int
    /// Multiply-accumulates per image (3x3 taps including the padding).
    public var macs: Int
    /// How a session's kernels run a conv layer: "direct", "direct-dense" (few input channels),
    /// "winograd" (exact F(2x2,3x3), or over the input's phases at stride 2) or "winograd-4x4" (exact
    /// F(4x4,3x3)). nil in ``Model/layers`` (a session picks the path) and for pool and fc.
    public var algorithm: String? = nil
    /// Bytes of a conv layer's packed weights in a session's path (transformed ones for Winograd); nil in
    /// ``Model/layers`` and for pool and fc.
    public var packedWeightBytes: Int? = nil
}

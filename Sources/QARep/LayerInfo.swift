/// One step of the forward pass, for reports and profiling.
public struct LayerInfo: Sendable, Equatable {
    /// What the step computes; a struct so that kinds added later do not break code that switches over it.
    public struct Kind: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        public static let conv3x3 = Kind(rawValue: "conv3x3")
        public static let globalAveragePool = Kind(rawValue: "global_average_pool")
        public static let fullyConnected = Kind(rawValue: "fully_connected")
    }

    public var kind: Kind
    public var name: String
    public var inputHeight: Int, inputWidth: Int, inputChannels: Int
    public var outputHeight: Int, outputWidth: Int, outputChannels: Int
    public var stride: Int
    public var groups: Int
    public var macs: Int
}

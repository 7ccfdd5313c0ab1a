// The one error type of the runtime. Codes mirror qarep_status in include/qarep.h so the C ABI can pass
// them through unchanged.

public struct QARepError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong, as qarep_status numbers it. A struct rather than an enum, so that codes added later
    /// do not break code that switches over it.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }

        public static let invalidArgument = Code(rawValue: 1)
        public static let bufferSize = Code(rawValue: 2)
        public static let io = Code(rawValue: 3)
        public static let invalidModel = Code(rawValue: 4)
        public static let unsupportedVersion = Code(rawValue: 5)
        public static let unsupportedKernel = Code(rawValue: 6)
        public static let outOfMemory = Code(rawValue: 7)
        public static let noResult = Code(rawValue: 8)
        public static let `internal` = Code(rawValue: 9)

        public var description: String { summary }
    }

    public var code: Code
    /// Names the tensor, key or argument and says what is wrong with it.
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.summary): \(message)" }

    static func invalidModel(_ message: String) -> QARepError { QARepError(.invalidModel, message) }
    static func invalidArgument(_ message: String) -> QARepError { QARepError(.invalidArgument, message) }
}

extension QARepError.Code {
    private static let summaries: [Int32: String] = [
        1: "invalid argument", 2: "wrong buffer size", 3: "I/O error", 4: "invalid model",
        5: "unsupported model format version", 6: "unsupported kernel", 7: "out of memory", 8: "no result",
        9: "internal error",
    ]

    /// Short constant text, as qarep_status_string returns.
    public var summary: String { Self.summaries[rawValue] ?? "unknown status" }
}

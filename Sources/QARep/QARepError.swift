// The one error type of the runtime. Codes mirror qarep_status in include/qarep.h so the C ABI can pass
// them through unchanged.

/// The one error every throwing function of QARep throws (typed: `throws(QARepError)`): a code, which
/// the C API returns as its `qarep_status`, and a message naming what is wrong.
///
/// ```swift
/// do { _ = try Model(contentsOfFile: path) } catch { print(error.code, error.message) }
/// ```
public struct QARepError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong, as qarep_status numbers it. A struct rather than an enum, so that codes added later
    /// do not break code that switches over it.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }

        /// A value out of range, an unknown name, a session used from two threads at once.
        public static let invalidArgument = Code(rawValue: 1)
        /// A buffer whose size does not match what the call needs.
        public static let bufferSize = Code(rawValue: 2)
        /// A file that could not be opened or read.
        public static let io = Code(rawValue: 3)
        /// A malformed model file; the message names the key or tensor.
        public static let invalidModel = Code(rawValue: 4)
        /// A model file newer than this library reads.
        public static let unsupportedVersion = Code(rawValue: 5)
        /// A kernel path this CPU cannot run.
        public static let unsupportedKernel = Code(rawValue: 6)
        /// Memory could not be had, or would exceed the machine's.
        public static let outOfMemory = Code(rawValue: 7)
        /// Results asked for before a successful run.
        public static let noResult = Code(rawValue: 8)
        /// A bug in QARep.
        public static let `internal` = Code(rawValue: 9)

        /// The short text of ``summary``.
        public var description: String { summary }
    }

    /// What kind of failure it is.
    public var code: Code
    /// Names the tensor, key or argument and says what is wrong with it.
    public var message: String

    /// An error with this code and message.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// "summary: message".
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

// The one error type of the runtime. Codes mirror qarep_status in include/qarep.h so the C ABI can pass
// them through unchanged.

public struct QARepError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: Int32, Sendable {
        case invalidArgument = 1
        case bufferSize = 2
        case io = 3
        case invalidModel = 4
        case unsupportedVersion = 5
        case unsupportedKernel = 6
        case outOfMemory = 7
        case noResult = 8
        case `internal` = 9
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
    /// Short constant text, as qarep_status_string returns.
    public var summary: String {
        switch self {
        case .invalidArgument: return "invalid argument"
        case .bufferSize: return "wrong buffer size"
        case .io: return "I/O error"
        case .invalidModel: return "invalid model"
        case .unsupportedVersion: return "unsupported model format version"
        case .unsupportedKernel: return "unsupported kernel"
        case .outOfMemory: return "out of memory"
        case .noResult: return "no result"
        case .internal: return "internal error"
        }
    }
}

// Printing without Foundation's String(format:), FileHandle and JSONSerialization, which FoundationEssentials
// lacks (see the imports): numbers through the C library's printf, JSON through FoundationEssentials'
// JSONEncoder.
#if canImport(FoundationEssentials)
import FoundationEssentials
import Glibc
#else
import Foundation
#endif

/// printf-style formatting of numbers; Swift strings go in by interpolation (pass Int as %ld, Double as %f/%e).
func cFormat(_ format: String, _ arguments: CVarArg...) -> String {
    let length = withVaList(arguments) { vsnprintf(nil, 0, format, $0) }
    guard length > 0 else { return "" }
    var buffer = [CChar](repeating: 0, count: Int(length) + 1)
    _ = withVaList(arguments) { vsnprintf(&buffer, buffer.count, format, $0) }
    return String(decoding: buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// `text` right-aligned in `width` columns, as printf's %8s would.
func rightAligned(_ text: String, _ width: Int) -> String {
    String(repeating: " ", count: max(0, width - text.count)) + text
}

/// Writes to file descriptor 2 directly (Glibc's `stderr` is a global var, which Swift 6 refuses to touch).
func printToStandardError(_ text: String) { writeAll(STDERR_FILENO, text) }

/// Writes to file descriptor 1 directly, unbuffered: --jsonl and the text output of classify stream a batch at
/// a time (print's buffer would hold them until it fills when stdout is a pipe).
func writeToStandardOutput(_ text: String) { writeAll(STDOUT_FILENO, text) }

private func writeAll(_ descriptor: Int32, _ text: String) {
    var bytes = Array(text.utf8)[...]
    while !bytes.isEmpty {
        let written = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        if written < 0 && errno == EINTR { continue }
        guard written > 0 else { return }
        bytes = bytes.dropFirst(written)
    }
}

/// A JSON value of the [String: Any] trees the commands build (what JSONSerialization accepted).
private struct AnyJSON: Encodable {
    let value: Any

    func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch value {
        case let v as Bool: try container.encode(v)
        case let v as Int: try container.encode(v)
        case let v as Double: try container.encode(v)
        case let v as Float: try container.encode(Double(v))
        case let v as String: try container.encode(v)
        case let v as [Any]: try container.encode(v.map(AnyJSON.init))
        case let v as [String: Any]: try container.encode(v.mapValues(AnyJSON.init))
        default:
            throw EncodingError.invalidValue(value, .init(codingPath: encoder.codingPath,
                                                          debugDescription: "no JSON form for \(type(of: value))"))
        }
    }
}

/// One line of JSON (sorted keys, no spaces), for --jsonl.
func jsonLine(_ object: [String: Any]) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return String(decoding: try encoder.encode(AnyJSON(value: object)), as: UTF8.self)
}

func printJSON(_ object: [String: Any]) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    print(String(decoding: try encoder.encode(AnyJSON(value: object)), as: UTF8.self))
}

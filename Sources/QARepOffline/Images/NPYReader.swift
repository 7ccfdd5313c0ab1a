// Minimal reader for NumPy .npy files holding an already-normalized float32 NCHW calibration batch.
#if canImport(FoundationEssentials)
// FoundationEssentials, not Foundation: linked statically, Foundation's internationalization brings ICU's
// data (tens of MB) into the CLI. Glibc gives the math and stdio that Foundation re-exported.
import FoundationEssentials
import Glibc
#else
import Foundation
#endif
import QARep

/// A 4-D float32 array [N, 3, H, W], row-major.
public struct NCHWFloatArray: Sendable {
    public var count: Int
    public var channels: Int
    public var height: Int
    public var width: Int
    public var values: [Float]
}

/// Parses an .npy file: magic, version 1/2/3 header, `descr` `<f4`, `fortran_order` False, a 4-D shape with
/// 3 channels, and a data size that matches the shape exactly.
public func readNPYFloat32NCHW(path: String) throws -> NCHWFloatArray {
    let bytes: [UInt8]
    do {
        bytes = try readFileBytes(path: path)  // the runtime's reader: no FIFOs, nothing larger than memory
    } catch {
        throw InputFileError(source: path, reason: "cannot read file (\(error.message))")
    }
    return try parseNPYFloat32NCHW(bytes: bytes, path: path)
}

public func parseNPYFloat32NCHW(bytes: [UInt8], path: String) throws -> NCHWFloatArray {
    func fail(_ reason: String) -> InputFileError { InputFileError(source: path, reason: reason) }
    let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]
    guard bytes.count >= 10, Array(bytes[0..<6]) == magic else { throw fail("not an .npy file (bad magic)") }
    let major = bytes[6]
    let headerLength: Int
    let headerStart: Int
    switch major {
    case 1:
        headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
        headerStart = 10
    case 2, 3:
        guard bytes.count >= 12 else { throw fail("truncated header") }
        headerLength = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
        headerStart = 12
    default:
        throw fail("unsupported .npy version \(major)")
    }
    guard headerLength <= 1 << 20, headerStart + headerLength <= bytes.count else { throw fail("truncated or oversized header") }
    guard let header = String(bytes: bytes[headerStart..<(headerStart + headerLength)], encoding: major == 3 ? .utf8 : .isoLatin1) else {
        throw fail("header is not text")
    }
    let compact = header.filter { !$0.isWhitespace }
    guard compact.hasPrefix("{"), compact.contains("}") else { throw fail("header is not a dictionary") }
    guard let descr = npyField(compact, key: "descr") else { throw fail("header has no descr") }
    guard descr == "'<f4'" || descr == "\"<f4\"" else {
        throw fail("dtype \(descr) is not little-endian float32 ('<f4')")
    }
    guard let order = npyField(compact, key: "fortran_order") else { throw fail("header has no fortran_order") }
    guard order == "False" else { throw fail("Fortran-ordered arrays are not supported") }
    guard let shapeText = npyField(compact, key: "shape"), shapeText.hasPrefix("("), shapeText.hasSuffix(")") else {
        throw fail("header has no shape tuple")
    }
    let parts = shapeText.dropFirst().dropLast().split(separator: ",", omittingEmptySubsequences: true)
    var shape: [Int] = []
    for part in parts {
        guard let value = Int(part), value >= 0, value <= 1 << 31 else { throw fail("bad shape entry '\(part)'") }
        shape.append(value)
    }
    guard shape.count == 4 else { throw fail("shape \(shapeText) is not 4-D NCHW") }
    guard shape[1] == 3 else { throw fail("shape \(shapeText) has \(shape[1]) channels, expected 3 (NCHW RGB)") }
    guard shape[0] > 0, shape[2] > 0, shape[3] > 0 else { throw fail("shape \(shapeText) is empty") }
    let (partial, overflow1) = shape[0].multipliedReportingOverflow(by: shape[1] * shape[2])
    let (elementCount, overflow2) = partial.multipliedReportingOverflow(by: shape[3])
    let dataStart = headerStart + headerLength
    guard !overflow1, !overflow2, elementCount <= (bytes.count - dataStart) / 4 + 1 else {
        throw fail("data is \(bytes.count - dataStart) bytes, shape \(shapeText) needs more")
    }
    guard elementCount * 4 == bytes.count - dataStart else {
        throw fail("data is \(bytes.count - dataStart) bytes, shape \(shapeText) needs \(elementCount * 4)")
    }
    var values = [Float](repeating: 0, count: elementCount)
    values.withUnsafeMutableBytes { target in
        bytes.withUnsafeBytes { source in
            target.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[dataStart...]))
        }
    }
    // Stored little-endian; convert on big-endian hosts.
    if UInt32(1).bigEndian == 1 {
        values = values.map { Float(bitPattern: UInt32(littleEndian: $0.bitPattern)) }
    }
    return NCHWFloatArray(count: shape[0], channels: shape[1], height: shape[2], width: shape[3], values: values)
}

/// The raw value text of `'key':` in a whitespace-free Python dict literal, up to the next top-level comma.
private func npyField(_ header: String, key: String) -> String? {
    let characters = Array(header)
    for quote in ["'", "\""] {
        let needle = Array("\(quote)\(key)\(quote):")
        guard let start = findSubsequence(characters, needle) else { continue }
        var index = start + needle.count
        var depth = 0
        var value: [Character] = []
        while index < characters.count {
            let character = characters[index]
            if character == "(" { depth += 1 }
            if character == ")" { depth -= 1 }
            if depth == 0 && (character == "," || character == "}") { break }
            value.append(character)
            index += 1
        }
        return String(value)
    }
    return nil
}

private func findSubsequence(_ haystack: [Character], _ needle: [Character]) -> Int? {
    guard needle.count <= haystack.count else { return nil }
    for start in 0...(haystack.count - needle.count) where Array(haystack[start..<(start + needle.count)]) == needle {
        return start
    }
    return nil
}

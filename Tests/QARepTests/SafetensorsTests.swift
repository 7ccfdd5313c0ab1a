import XCTest
@testable import QARep

final class SafetensorsTests: XCTestCase {
    func testJSONParsesAndRejects() throws {
        let value = try JSONValue.parse(#" {"a": [1, -2.5e3, true, null, "x\u00e9\ud83d\ude00\n"], "b": {}} "#)
        XCTAssertEqual(value.objectValue?["a"]?.arrayValue?.count, 5)
        XCTAssertEqual(value.objectValue?["a"]?.arrayValue?[4].stringValue, "xé😀\n")
        XCTAssertEqual(value.objectValue?["a"]?.arrayValue?[1].doubleValue, -2500)
        for bad in ["", "{", "[1,]", "{\"a\":1,}", "01", "1.", "-", "\"\\x\"", "\"\u{01}\"", "{\"a\":1,\"a\":2}",
                    "[1] 2", "tru", "\"\\ud800\"", "{1:2}", "nul"] {
            XCTAssertThrowsError(try JSONValue.parse(bad), "accepted \(bad)")
        }
        let deep = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        XCTAssertThrowsError(try JSONValue.parse(deep)) { error in
            XCTAssertTrue("\(error)".contains("nesting"))
        }
        XCTAssertThrowsError(try JSONValue.parse([0x22, 0xFF, 0x22])) // invalid UTF-8
    }

    func testJSONRoundTrip() throws {
        let value = JSONValue.object(["k\"ey": .array([.float(0.485), .integer(-3), .string("a\u{01}b"), .bool(false), .null])])
        XCTAssertEqual(try JSONValue.parse(value.serialized()), value)
        XCTAssertEqual(JSONValue.float(0.485).floatValue, Float(0.485))
    }

    func testWriterReaderRoundTrip() throws {
        var writer = SafetensorsWriter(metadata: ["k": "v"])
        try writer.add(name: "bytes", dtype: .u8, shape: [3], values: [UInt8(1), 2, 3])
        try writer.add(name: "ints", dtype: .i32, shape: [2, 1], values: [Int32(-5), 70000])
        try writer.add(name: "floats", shape: [2], float32: [1.5, -0.25])
        try writer.add(name: "empty", dtype: .i8, shape: [0, 4], values: [Int8]())
        let bytes = writer.serialized()
        let archive = try SafetensorsArchive(bytes: bytes)
        XCTAssertEqual(archive.dataStart % 8, 0)
        XCTAssertEqual(archive.metadata, ["k": "v"])
        XCTAssertEqual(try archive.uint8Values(XCTUnwrap(archive.tensors["bytes"])), [1, 2, 3])
        XCTAssertEqual(try archive.int32Values(XCTUnwrap(archive.tensors["ints"])), [-5, 70000])
        XCTAssertEqual(try archive.float32Values(XCTUnwrap(archive.tensors["floats"])), [1.5, -0.25])
        XCTAssertEqual(archive.tensors["ints"]?.shape, [2, 1])
        XCTAssertEqual(archive.tensors["empty"]?.elementCount, 0)
        XCTAssertThrowsError(try writer.add(name: "bytes", dtype: .u8, shape: [1], values: [UInt8(1)]))
        XCTAssertThrowsError(try writer.add(name: "bad", dtype: .u8, shape: [2], values: [UInt8(1)]))
    }

    /// A raw safetensors file from a header string and a data area.
    static func rawFile(_ header: String, data: [UInt8]) -> [UInt8] {
        let h = Array(header.utf8)
        var out: [UInt8] = (0..<8).map { UInt8(truncatingIfNeeded: UInt64(h.count) >> (8 * UInt64($0))) }
        out += h
        out += data
        return out
    }

    func assertInvalid(_ bytes: [UInt8], _ fragment: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try SafetensorsArchive(bytes: bytes), file: file, line: line) { error in
            guard let e = error as? QARepError else { return XCTFail("wrong error type \(error)", file: file, line: line) }
            XCTAssertEqual(e.code, .invalidModel, file: file, line: line)
            XCTAssertTrue(e.message.contains(fragment), "message \"\(e.message)\" lacks \"\(fragment)\"", file: file, line: line)
        }
    }

    func testArchiveRejections() {
        assertInvalid([1, 0, 0], "shorter than the 8-byte")
        assertInvalid([255, 255, 255, 255, 255, 255, 255, 255, 0x7B], "exceeds the limit")
        assertInvalid([100, 0, 0, 0, 0, 0, 0, 0, 0x7B, 0x7D], "runs past the end")
        assertInvalid(Self.rawFile("{\"a\":", data: []), "not valid JSON")
        assertInvalid(Self.rawFile("{\"t\":{\"dtype\":\"Q7\",\"shape\":[1],\"data_offsets\":[0,1]}}", data: [0]), "unknown dtype \"Q7\"")
        assertInvalid(Self.rawFile("{\"t\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,1]}}", data: [0]), "\"t\": shape dimension 0")
        assertInvalid(Self.rawFile("{\"t\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,1]}}", data: [0, 0]), "\"t\": data_offsets span 1 bytes")
        assertInvalid(Self.rawFile("{\"t\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", data: [0, 0]), "outside the 2-byte data area")
        assertInvalid(Self.rawFile("{\"t\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776],\"data_offsets\":[0,4]}}", data: [0, 0, 0, 0]), "too large")
        assertInvalid(Self.rawFile("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[1,3]}}", data: [0, 0, 0]), "overlaps")
        assertInvalid(Self.rawFile("{\"__metadata__\":{\"k\":1}}", data: []), "metadata key \"k\" is not a string")
        assertInvalid(Self.rawFile("{\"t\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"x\":1}}", data: [0]), "unknown header field \"x\"")
    }
}

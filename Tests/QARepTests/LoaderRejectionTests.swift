import XCTest
@testable import QARep

/// Every rejection asserts its specific code and that the message names what is wrong.
final class LoaderRejectionTests: XCTestCase {
    struct RawTensor { var dtype: SafetensorsDType; var shape: [Int]; var data: [UInt8] }

    /// Re-encodes the small valid model after editing its metadata and tensors (no validation on the way).
    func rebuilt(metadata editMetadata: (inout [String: String]) -> Void = { _ in },
                 tensors editTensors: (inout [String: RawTensor]) -> Void = { _ in }) throws -> [UInt8] {
        let archive = try SafetensorsArchive(bytes: smallModel().serialized())
        var metadata = archive.metadata
        editMetadata(&metadata)
        var tensors: [String: RawTensor] = [:]
        for (name, info) in archive.tensors {
            tensors[name] = RawTensor(dtype: info.dtype, shape: info.shape, data: Array(archive.tensorBytes(info)))
        }
        editTensors(&tensors)
        var writer = SafetensorsWriter(metadata: metadata)
        for name in tensors.keys.sorted() {
            let t = try XCTUnwrap(tensors[name])
            try writer.add(name: name, dtype: t.dtype, shape: t.shape, data: t.data)
        }
        return writer.serialized()
    }

    /// Rewrites the JSON header of a valid file, keeping its data area.
    func rewrittenHeader(_ edit: (inout [String: JSONValue]) -> Void) throws -> [UInt8] {
        let bytes = try smallModel().serialized()
        let archive = try SafetensorsArchive(bytes: bytes)
        var header = try XCTUnwrap(JSONValue.parse(bytes[8..<archive.dataStart]).objectValue)
        edit(&header)
        let text = Array(JSONValue.object(header).serialized().utf8)
        let out: [UInt8] = (0..<8).map { UInt8(truncatingIfNeeded: UInt64(text.count) >> (8 * UInt64($0))) }
        return out + text + bytes[archive.dataStart...]
    }

    /// With QAREP_REJECTION_CASES=DIR, every file these tests feed the loader is also written to DIR, so that
    /// CI can load the same files through the C library built with Embedded Swift and through this build's, and
    /// require the same statuses and messages (tests/c/load_models.c).
    static let caseDirectory: String? = ProcessInfo.processInfo.environment["QAREP_REJECTION_CASES"]
    nonisolated(unsafe) static var writtenCases = 0

    func writeCase(_ bytes: [UInt8], _ name: String) {
        guard let directory = Self.caseDirectory else { return }
        Self.writtenCases += 1
        let path = "\(directory)/\(String(format: "%04d", Self.writtenCases))-\(name).qarep"
        XCTAssertNoThrow(try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true))
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(bytes)), "cannot write \(path)")
    }

    func assertRejected(_ bytes: [UInt8], _ code: QARepError.Code, _ fragments: String...,
                        file: StaticString = #filePath, line: UInt = #line, function: String = #function) {
        writeCase(bytes, "\(function.prefix { $0 != "(" })-line\(line)")
        XCTAssertThrowsError(try Model(bytes: bytes), file: file, line: line) { error in
            guard let e = error as? QARepError else { return XCTFail("wrong error type \(error)", file: file, line: line) }
            XCTAssertEqual(e.code, code, e.message, file: file, line: line)
            for fragment in fragments {
                XCTAssertTrue(e.message.contains(fragment), "message \"\(e.message)\" lacks \"\(fragment)\"", file: file, line: line)
            }
        }
    }

    func floats(_ values: [Float]) -> [UInt8] {
        values.flatMap { v in (0..<4).map { UInt8(truncatingIfNeeded: v.bitPattern >> (8 * UInt32($0))) } }
    }

    func testContainerErrors() throws {
        let valid = try smallModel().serialized()
        XCTAssertNoThrow(try Model(bytes: valid))
        assertRejected(Array(valid.prefix(5)), .invalidModel, "shorter than the 8-byte")
        assertRejected(Array(valid.dropLast(3)), .invalidModel, "outside the", "data area")
        var beyond = valid
        beyond[0] = 0xFF; beyond[1] = 0xFF; beyond[2] = 0x0F  // ~1 MiB header in a small file
        assertRejected(beyond, .invalidModel, "runs past the end")
        beyond[7] = 1
        assertRejected(beyond, .invalidModel, "exceeds the limit")
        var badJSON = valid
        badJSON[9] = UInt8(ascii: "#")
        assertRejected(badJSON, .invalidModel, "not valid JSON")
    }

    func testMetadataErrors() throws {
        assertRejected(try rebuilt(metadata: { $0["format"] = "onnx" }), .invalidModel, "\"format\"", "onnx")
        assertRejected(try rebuilt(metadata: { $0["format_version"] = "2" }), .unsupportedVersion, "version 2")
        assertRejected(try rebuilt(metadata: { $0["format_version"] = "99999999999999999999999" }), .unsupportedVersion)
        assertRejected(try rebuilt(metadata: { $0["format_version"] = "1.0" }), .invalidModel, "format_version")
        assertRejected(try rebuilt(metadata: { $0["crop_ratio"] = nil }), .invalidModel, "metadata key \"crop_ratio\" is missing")
        assertRejected(try rebuilt(metadata: { $0["crop_ratio"] = "1.5" }), .invalidModel, "crop_ratio")
        assertRejected(try rebuilt(metadata: { $0["std"] = "[0.2, 0, 0.2]" }), .invalidModel, "std")
        assertRejected(try rebuilt(metadata: { $0["mean"] = "[0.2, 0.2]" }), .invalidModel, "\"mean\"")
        assertRejected(try rebuilt(metadata: { $0["channel_order"] = "BGR" }), .invalidModel, "channel_order")
        assertRejected(try rebuilt(metadata: { $0["layers"] = "[{\"in\":3}" }), .invalidModel, "\"layers\" is not valid JSON")
        assertRejected(try rebuilt(metadata: { $0["labels"] = "[\"a\"]" }), .invalidModel, "\"labels\" has 1 entries")
        let longLabel = String(repeating: "x", count: 2000)
        assertRejected(try rebuilt(metadata: { $0["labels"] = "[\"a\",\"b\",\"c\",\"d\",\"\(longLabel)\"]" }), .invalidModel, "label 4")
        // Unknown metadata keys and tensors are ignored.
        XCTAssertNoThrow(try Model(bytes: rebuilt(metadata: { $0["future_key"] = "x" },
                                                  tensors: { $0["extra.tensor"] = RawTensor(dtype: .bf16, shape: [1], data: [0, 0]) })))
    }

    func testAbsurdSizesAreRefusedBeforeAllocation() throws {
        assertRejected(try rebuilt(metadata: { $0["input_height"] = "100000" }), .invalidModel, "input_height")
        assertRejected(try rebuilt(metadata: { $0["input_width"] = "-3" }), .invalidModel, "input_width")
        assertRejected(try rebuilt(metadata: { $0["num_classes"] = "1000000000" }), .invalidModel, "num_classes")
        assertRejected(try rebuilt(metadata: { $0["layers"] = "[{\"in\":3,\"out\":1000000000,\"stride\":1,\"groups\":1}]" }),
                       .invalidModel, "layers[0] \"out\" is 1000000000")
        // 4096 x 4096 x 8192 bytes would be 128 GiB per image.
        assertRejected(try rebuilt(metadata: {
            $0["input_height"] = "4096"; $0["input_width"] = "4096"
            $0["layers"] = "[{\"in\":3,\"out\":8192,\"stride\":1,\"groups\":1}]"
        }), .invalidModel, "activation limit")
        let manyLayers = "[" + Array(repeating: "{\"in\":3,\"out\":3,\"stride\":1,\"groups\":1}", count: 300).joined(separator: ",") + "]"
        assertRejected(try rebuilt(metadata: { $0["layers"] = manyLayers }), .invalidModel, "300 layers")
        assertRejected(try rebuilt(metadata: { $0["layers"] = "[{\"in\":3,\"out\":8,\"stride\":3,\"groups\":1}]" }), .invalidModel, "stride is 3")
        assertRejected(try rebuilt(metadata: { $0["layers"] = "[{\"in\":3,\"out\":8,\"stride\":1,\"groups\":2}]" }), .invalidModel, "groups 2")
    }

    func testTensorErrors() throws {
        assertRejected(try rebuilt(tensors: { $0["conv.1.bias"] = nil }), .invalidModel, "tensor \"conv.1.bias\" is missing")
        assertRejected(try rebuilt(tensors: { $0["conv.0.weight"]?.dtype = .u8 }), .invalidModel, "\"conv.0.weight\" has dtype U8, expected I8")
        assertRejected(try rebuilt(tensors: { $0["fc.weight"]?.shape = [12, 5] }), .invalidModel, "\"fc.weight\" has shape [12, 5]")
        assertRejected(try rewrittenHeader { header in
            header["conv.0.bias"] = .object(["dtype": .string("I32"), "shape": .array([.integer(8)]),
                                             "data_offsets": .array([.integer(1 << 20), .integer((1 << 20) + 32)])])
        }, .invalidModel, "\"conv.0.bias\"", "outside")
        var overlapOffsets: JSONValue = .null
        let overlapping = try rewrittenHeader { header in
            overlapOffsets = header["conv.0.weight_scale"]?.objectValue?["data_offsets"] ?? .null
            header["conv.0.output_scale"] = .object(["dtype": .string("F32"), "shape": .array([.integer(1)]),
                "data_offsets": .array([.integer((overlapOffsets.arrayValue?[0].intValue ?? 0) + 4),
                                        .integer((overlapOffsets.arrayValue?[0].intValue ?? 0) + 8)])])
        }
        assertRejected(overlapping, .invalidModel, "overlaps", "conv.0.weight_scale")
    }

    func testShapeChainMismatch() throws {
        // Layer 1 claims 10 input channels (with a matching weight tensor) while layer 0 produces 8.
        let bytes = try rebuilt(metadata: {
            $0["layers"] = "[{\"in\":3,\"out\":8,\"stride\":2,\"groups\":1},{\"in\":10,\"out\":16,\"stride\":1,\"groups\":2},{\"in\":16,\"out\":12,\"stride\":2,\"groups\":1}]"
        }, tensors: { $0["conv.1.weight"] = RawTensor(dtype: .i8, shape: [16, 5, 3, 3], data: [UInt8](repeating: 1, count: 16 * 5 * 9)) })
        assertRejected(bytes, .invalidModel, "layers[1] \"in\" is 10 but the previous layer produces 8")
        assertRejected(try rebuilt(metadata: {
            $0["layers"] = "[{\"in\":4,\"out\":8,\"stride\":2,\"groups\":1}]"
        }), .invalidModel, "layers[0] \"in\" is 4 but the previous layer produces 3")
    }

    func testBadScales() throws {
        for (value, label) in [(Float.nan, "nan"), (0, "0.0"), (-1, "-1.0"), (Float.infinity, "inf")] {
            assertRejected(try rebuilt(tensors: { $0["conv.0.weight_scale"]?.data.replaceSubrange(4..<8, with: floats([value])) }),
                           .invalidModel, "\"conv.0.weight_scale\"", label, "finite and > 0")
            assertRejected(try rebuilt(tensors: { $0["conv.2.output_scale"]?.data = floats([value]) }), .invalidModel, "\"conv.2.output_scale\"")
            assertRejected(try rebuilt(tensors: { $0["pool.output_scale"]?.data = floats([value]) }), .invalidModel, "\"pool.output_scale\"")
            assertRejected(try rebuilt(tensors: { $0["input.scale"]?.data = floats([value]) }), .invalidModel, "\"input.scale\"")
            assertRejected(try rebuilt(tensors: { $0["fc.weight_scale"]?.data.replaceSubrange(0..<4, with: floats([value])) }),
                           .invalidModel, "\"fc.weight_scale\"")
        }
        // Each scale is fine but the multiplier underflows float32.
        assertRejected(try rebuilt(tensors: {
            $0["conv.0.weight_scale"]?.data.replaceSubrange(0..<4, with: floats([1e-30]))
            $0["conv.0.output_scale"]?.data = floats([1e20])
        }), .invalidModel, "multiplier of conv.0 channel 0")
    }

    func testWeightAndBiasRanges() throws {
        assertRejected(try rebuilt(tensors: { $0["conv.1.weight"]?.data[7] = 0x80 }), .invalidModel, "\"conv.1.weight\" holds -128 at element 7")
        assertRejected(try rebuilt(tensors: { $0["fc.weight"]?.data[0] = 0x80 }), .invalidModel, "\"fc.weight\" holds -128")
        let huge: [UInt8] = [0xFF, 0xFF, 0xFF, 0x7F]  // Int32.max
        assertRejected(try rebuilt(tensors: { $0["conv.2.bias"]?.data.replaceSubrange(0..<4, with: huge) }),
                       .invalidModel, "\"conv.2.bias\" channel 0", "overflow int32")
        assertRejected(try rebuilt(tensors: { $0["fc.bias"]?.data.replaceSubrange(8..<12, with: huge) }),
                       .invalidModel, "\"fc.bias\" class 2", "overflow int32")
    }

    func testDescriptionValidationAndWriterRefusal() throws {
        var description = smallModel()
        description.convs[1].inChannels = 10
        XCTAssertThrowsError(try Model(description: description)) { XCTAssertEqual(($0 as? QARepError)?.code, .invalidModel) }
        XCTAssertThrowsError(try description.serialized()) { XCTAssertEqual(($0 as? QARepError)?.code, .invalidModel) }
        description = smallModel()
        description.extraMetadata["format"] = "other"
        XCTAssertThrowsError(try description.serialized()) { XCTAssertEqual(($0 as? QARepError)?.code, .invalidArgument) }
    }

    /// Truncating or corrupting a valid file anywhere must give an error or a model that runs, never a crash.
    func testCorruptedFilesNeverCrash() throws {
        let valid = try smallModel().serialized()
        let image = [UInt8](repeating: 100, count: 9 * 11 * 3)
        var loaded = 0, rejected = 0
        let step = max(1, valid.count / 1500)
        for position in stride(from: 0, to: valid.count, by: step) {
            XCTAssertThrowsError(try Model(bytes: Array(valid.prefix(position))))
            // A sample for the C libraries' comparison: every 64th truncation and flip.
            if position % (64 * step) == 0 { writeCase(Array(valid.prefix(position)), "truncated-\(position)") }
            for flip: UInt8 in [0xFF, 0x01, 0x80] {
                var bytes = valid
                bytes[position] ^= flip
                if position % (64 * step) == 0 { writeCase(bytes, "flipped-\(position)-\(flip)") }
                do {
                    let model = try Model(bytes: bytes)
                    loaded += 1
                    _ = try Session(model: model, threads: 1, maxBatch: 1, kernel: .scalar).run(images: image, batch: 1)
                } catch {
                    // Typed throws: every error here is a QARepError, which is all this loop may see.
                    rejected += 1
                }
            }
        }
        XCTAssertGreaterThan(loaded, 0)
        XCTAssertGreaterThan(rejected, 0)
    }
}

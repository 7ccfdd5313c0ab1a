// The loader's edges against the file system and the caller's memory: what Tests/Fuzz cannot reach with
// in-memory inputs (files that change or are not files) and what it checks only under ASan (the memory
// path keeping no pointer into the caller's buffer).
import CQARepAPI
import Foundation
import XCTest
@testable import QARep

final class LoaderHardeningTests: XCTestCase {
    private func temporaryPath(_ name: String) -> String {
        NSTemporaryDirectory() + "qarep-hardening-\(getpid())-\(name)"
    }

    /// A file cut short after it was opened (its size taken) must fail as an I/O error on the read that
    /// reaches past the new end, not hand back a zero-filled or uninitialized tail.
    func testFileShrinkingAfterOpenIsAnIOError() throws {
        let path = temporaryPath("shrinks.qarep")
        let bytes = try smallModel().serialized()
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        defer { unlink(path) }
        let source = try FileByteSource(path: path)
        XCTAssertEqual(source.count, bytes.count)
        XCTAssertEqual(truncate(path, off_t(bytes.count / 2)), 0)
        XCTAssertEqual(try source.bytes(at: 0, count: 16), Array(bytes[0..<16]))
        XCTAssertThrowsError(try source.bytes(at: 0, count: bytes.count)) { error in
            let error = error as? QARepError
            XCTAssertEqual(error?.code, .io)
            XCTAssertTrue(error?.message.contains("shrank") ?? false, error?.message ?? "")
        }

        // The whole loader, on a file cut right after its header once opened: the first tensor read fails.
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let headerEnd = try SafetensorsArchive(bytes: bytes).dataStart
        let opened = try FileByteSource(path: path)
        XCTAssertEqual(truncate(path, off_t(headerEnd)), 0)
        XCTAssertThrowsError(try ModelFileContents(source: opened)) { error in
            XCTAssertEqual((error as? QARepError)?.code, .io)
        }
    }

    /// Header lengths and data offsets at the edges of UInt64 and Int must be refused by the range checks, with
    /// no sum on the way that could wrap (8 + length, data start + offset).
    func testOffsetsAtTheIntegerLimitsAreRefused() {
        func assertInvalid(_ bytes: [UInt8], _ fragment: String, line: UInt = #line) {
            XCTAssertThrowsError(try SafetensorsArchive(bytes: bytes), line: line) { error in
                let error = error as? QARepError
                XCTAssertEqual(error?.code, .invalidModel, line: line)
                XCTAssertTrue(error?.message.contains(fragment) ?? false, error?.message ?? "", line: line)
            }
        }
        func tensor(offsets: String, shape: String = "[0]") -> [UInt8] {
            SafetensorsTests.rawFile("{\"t\":{\"dtype\":\"U8\",\"shape\":\(shape),\"data_offsets\":\(offsets)}}", data: [0, 0])
        }
        for length: UInt64 in [UInt64.max, UInt64.max - 7, UInt64(Int.max), UInt64(Int.max) - 7, 1 << 63] {
            var bytes = (0..<8).map { UInt8(truncatingIfNeeded: length >> (8 * UInt64($0))) }
            bytes += Array("{}".utf8)
            assertInvalid(bytes, "exceeds the limit")
        }
        assertInvalid(tensor(offsets: "[9223372036854775807,9223372036854775807]"), "outside the 2-byte data area")
        assertInvalid(tensor(offsets: "[0,9223372036854775807]", shape: "[9223372036854775807]"), "shape dimension 0")
        assertInvalid(tensor(offsets: "[1,9223372036854775807]", shape: "[1099511627776,8]"), "too large")
        assertInvalid(tensor(offsets: "[2,1]"), "not ordered")
        assertInvalid(tensor(offsets: "[-1,0]"), "not ordered")
        assertInvalid(tensor(offsets: "[0,18446744073709551615]"), "not an array of two integers")
        assertInvalid(tensor(offsets: "[-9223372036854775808,0]"), "not ordered")
        assertInvalid(tensor(offsets: "[0,1e3]"), "not an array of two integers")
    }

    /// Opening a FIFO for reading waits for a writer; the loader must refuse it at once instead. Were the open
    /// to block again, the watchdog below opens the writer side so that the test fails rather than hangs.
    func testFIFOIsRefusedWithoutWaitingForAWriter() throws {
        let path = temporaryPath("fifo")
        unlink(path)
        XCTAssertEqual(mkfifo(path, 0o600), 0)
        defer { unlink(path) }
        let finished = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var status = QAREP_OK
        Thread.detachNewThread {
            var model: OpaquePointer? = nil
            status = qarep_model_load_file(path, &model)
            qarep_model_release(model)
            finished.signal()
        }
        if finished.wait(timeout: .now() + 30) == .timedOut {
            XCTFail("qarep_model_load_file blocked on a FIFO")
            let writer = open(path, O_WRONLY | O_NONBLOCK)
            finished.wait()
            if writer >= 0 { close(writer) }
        }
        XCTAssertEqual(status, QAREP_ERROR_IO)
    }

    /// qarep_model_load_memory's caller may free the buffer right after the call: a model that kept a pointer
    /// into it would run on the garbage written over it here.
    func testMemoryLoadKeepsNothingOfTheCallersBuffer() throws {
        let description = smallModel(seed: 7)
        let bytes = try description.serialized()
        let buffer = try XCTUnwrap(malloc(bytes.count))
        buffer.copyMemory(from: bytes, byteCount: bytes.count)
        var model: OpaquePointer? = nil
        XCTAssertEqual(qarep_model_load_memory(buffer, bytes.count, &model), QAREP_OK)
        memset(buffer, 0x5A, bytes.count)
        free(buffer)
        defer { qarep_model_release(model) }

        let handle = Unmanaged<CModelHandle>.fromOpaque(UnsafeRawPointer(try XCTUnwrap(model))).takeUnretainedValue()
        XCTAssertEqual(try handle.model.description, description)
        let expected = try Session(model: Model(description: description), threads: 1).run(
            images: [UInt8](repeating: 77, count: handle.model.imageBytes), batch: 1)
        var session: OpaquePointer? = nil
        var options = qarep_session_options(num_threads: 1, max_batch: 1, kernel: QAREP_KERNEL_AUTO)
        XCTAssertEqual(qarep_session_create(model, &options, &session), QAREP_OK)
        defer { qarep_session_destroy(session) }
        let image = [UInt8](repeating: 77, count: handle.model.imageBytes)
        XCTAssertEqual(image.withUnsafeBufferPointer { qarep_session_run_u8(session, $0.baseAddress, $0.count, 1) }, QAREP_OK)
        var logits = [Float](repeating: .nan, count: description.numClasses)
        XCTAssertEqual(logits.withUnsafeMutableBufferPointer { qarep_session_get_logits(session, $0.baseAddress, $0.count) }, QAREP_OK)
        XCTAssertEqual(logits, expected)
    }

    /// Packing can take many times a file's bytes; the running total is refused past the memory limit.
    func testPackingBudgetRefusesTotalsPastTheLimit() throws {
        var budget = PackedNetwork.Budget(limit: 1000)
        XCTAssertNoThrow(try budget.reserve(600))
        XCTAssertNoThrow(try budget.reserve(400))
        do {
            try budget.reserve(1)
            XCTFail("1001 bytes accepted under a 1000-byte limit")
        } catch {
            XCTAssertEqual(error.code, .outOfMemory)
            XCTAssertTrue(error.message.contains("1001"), error.message)
        }
        var unlimited = PackedNetwork.Budget(limit: nil)
        XCTAssertNoThrow(try unlimited.reserve(Int.max / 2))
    }

    /// A header of many tiny entries is refused while parsing, before it builds a tree many times its size.
    func testHeaderWithTooManyValuesIsRefused() throws {
        var header = "{\"__metadata__\":{\"format\":\"qarep.int8\"}"
        for i in 0..<10_000 { header += ",\"t\(i)\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[0,1]}" }
        header += "}"
        var bytes = withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { Array($0) }
        bytes += Array(header.utf8) + [0]
        XCTAssertThrowsError(try Model(bytes: bytes)) { error in
            guard let error = error as? QARepError else { return XCTFail("unexpected error \(error)") }
            XCTAssertEqual(error.code, .invalidModel)
            XCTAssertTrue(error.message.contains("more than \(ModelFormat.maxHeaderValues) values"), error.message)
        }
    }
}

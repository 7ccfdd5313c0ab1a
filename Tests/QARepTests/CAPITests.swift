import CQARepAPI
import Foundation
import XCTest
@testable import QARep

/// The C ABI through its header, as a C program would call it.
final class CAPITests: XCTestCase {
    var modelBytes: [UInt8] = []

    override func setUpWithError() throws {
        modelBytes = try smallModel().serialized()
    }

    func loadModel() throws -> OpaquePointer {
        var model: OpaquePointer? = nil
        let status = modelBytes.withUnsafeBytes { qarep_model_load_memory($0.baseAddress, $0.count, &model) }
        XCTAssertEqual(status, QAREP_OK)
        return try XCTUnwrap(model)
    }

    var lastError: String { String(cString: qarep_last_error_message()) }

    func testLibraryFunctions() throws {
        XCTAssertEqual(qarep_version(), 0x000100)
        XCTAssertEqual(String(cString: qarep_version_string()), "0.1.0")
        XCTAssertEqual(qarep_max_model_format_version(), UInt32(QAREP_MODEL_FORMAT_VERSION))
        XCTAssertEqual(String(cString: qarep_status_string(QAREP_ERROR_INVALID_MODEL)), "invalid model")
        XCTAssertEqual(String(cString: qarep_status_string(qarep_status(rawValue: 77))), "unknown status")
        XCTAssertEqual(qarep_kernel_supported(QAREP_KERNEL_AUTO), 1)
        XCTAssertEqual(qarep_kernel_supported(QAREP_KERNEL_SCALAR), 1)
        let beyond = qarep_kernel(rawValue: UInt32(qarep_kernel_count()) + 1)
        XCTAssertEqual(qarep_kernel_supported(beyond), 0)
        XCTAssertEqual(String(cString: qarep_kernel_name(QAREP_KERNEL_AVX512VNNI)), "avx512vnni")
        XCTAssertNil(qarep_kernel_name(beyond))
        // Values 1...count are the library's paths, each reachable by its name.
        XCTAssertEqual(Int(qarep_kernel_count()), Kernel.all.count)
        for value in 0...UInt32(qarep_kernel_count()) {
            let name = try XCTUnwrap(qarep_kernel_name(qarep_kernel(rawValue: value)))
            var found = QAREP_KERNEL_SCALAR
            XCTAssertEqual(qarep_kernel_from_name(name, &found), QAREP_OK)
            XCTAssertEqual(found.rawValue, value)
        }
        var found = QAREP_KERNEL_SCALAR
        XCTAssertEqual(qarep_kernel_from_name("fastest", &found), QAREP_ERROR_INVALID_ARGUMENT)
        XCTAssertTrue(String(cString: qarep_last_error_message()).contains("avx512vnni"))
        XCTAssertEqual(qarep_kernel_from_name(nil, &found), QAREP_ERROR_INVALID_ARGUMENT)
        XCTAssertEqual(qarep_kernel_from_name("auto", nil), QAREP_ERROR_INVALID_ARGUMENT)
    }

    func testLoadErrors() throws {
        var model: OpaquePointer? = OpaquePointer(bitPattern: 0x10)
        XCTAssertEqual(qarep_model_load_file("/nonexistent/dir/model.qarep", &model), QAREP_ERROR_IO)
        XCTAssertNil(model)
        XCTAssertTrue(lastError.contains("/nonexistent/dir/model.qarep"), lastError)
        XCTAssertEqual(qarep_model_load_file(nil, &model), QAREP_ERROR_INVALID_ARGUMENT)
        XCTAssertEqual(qarep_model_load_file("/tmp", nil), QAREP_ERROR_INVALID_ARGUMENT)
        XCTAssertEqual(qarep_model_load_file("/tmp", &model), QAREP_ERROR_IO)
        XCTAssertEqual(qarep_model_load_memory(nil, 10, &model), QAREP_ERROR_INVALID_ARGUMENT)
        let garbage: [UInt8] = [1, 2, 3]
        XCTAssertEqual(garbage.withUnsafeBytes { qarep_model_load_memory($0.baseAddress, $0.count, &model) }, QAREP_ERROR_INVALID_MODEL)
        XCTAssertNil(model)
        var newer = try SafetensorsArchive(bytes: modelBytes).metadata
        newer["format_version"] = "7"
        var writer = SafetensorsWriter(metadata: newer)
        try writer.add(name: "x", dtype: .u8, shape: [1], values: [UInt8(0)])
        let newerBytes = writer.serialized()
        XCTAssertEqual(newerBytes.withUnsafeBytes { qarep_model_load_memory($0.baseAddress, $0.count, &model) }, QAREP_ERROR_UNSUPPORTED_VERSION)

        let path = NSTemporaryDirectory() + "qarep-capi-\(getpid()).qarep"
        try Data(modelBytes).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        XCTAssertEqual(qarep_model_load_file(path, &model), QAREP_OK)
        qarep_model_release(model)
        qarep_model_release(nil)
        qarep_session_destroy(nil)
    }

    /// The QAREP_LOAD_* flags: unknown bits refused, each flag holding no more packed weights than none.
    func testLoadFlagsAndPackedBytes() throws {
        var model: OpaquePointer? = nil
        var status = modelBytes.withUnsafeBytes { qarep_model_load_memory_with_flags($0.baseAddress, $0.count, 0x4, &model) }
        XCTAssertEqual(status, QAREP_ERROR_INVALID_ARGUMENT)
        XCTAssertNil(model)
        XCTAssertTrue(lastError.contains("0x4"), lastError)
        XCTAssertEqual(qarep_model_load_file_with_flags("/nonexistent.qarep", 0x80, &model), QAREP_ERROR_INVALID_ARGUMENT)
        var bytesOfDefault = 0
        let plain = try loadModel()
        defer { qarep_model_release(plain) }
        XCTAssertEqual(qarep_model_packed_bytes(plain, &bytesOfDefault), QAREP_OK)
        XCTAssertGreaterThan(bytesOfDefault, 0)
        for flags in [QAREP_LOAD_NO_WINOGRAD_4X4, QAREP_LOAD_NO_WINOGRAD, QAREP_LOAD_NO_WINOGRAD_4X4 | QAREP_LOAD_NO_WINOGRAD] {
            status = modelBytes.withUnsafeBytes { qarep_model_load_memory_with_flags($0.baseAddress, $0.count, flags, &model) }
            XCTAssertEqual(status, QAREP_OK, "flags \(flags)")
            var bytes = 0
            XCTAssertEqual(qarep_model_packed_bytes(model, &bytes), QAREP_OK)
            XCTAssertLessThanOrEqual(bytes, bytesOfDefault, "flags \(flags)")
            qarep_model_release(model)
        }
        XCTAssertEqual(qarep_model_packed_bytes(nil, &bytesOfDefault), QAREP_ERROR_INVALID_ARGUMENT)
        XCTAssertEqual(qarep_model_packed_bytes(plain, nil), QAREP_ERROR_INVALID_ARGUMENT)
    }

    func testModelInfoAndLabels() throws {
        let model = try loadModel()
        defer { qarep_model_release(model) }
        var info = qarep_model_info()
        XCTAssertEqual(qarep_model_get_info(model, &info), QAREP_OK)
        XCTAssertEqual(info.input_height, 9)
        XCTAssertEqual(info.input_width, 11)
        XCTAssertEqual(info.input_channels, 3)
        XCTAssertEqual(info.num_classes, 5)
        XCTAssertEqual(info.num_conv_layers, 3)
        XCTAssertEqual(info.format_version, 1)
        XCTAssertGreaterThan(info.macs_per_image, 0)
        XCTAssertEqual(qarep_model_get_info(nil, &info), QAREP_ERROR_INVALID_ARGUMENT)
        XCTAssertEqual(qarep_model_get_info(model, nil), QAREP_ERROR_INVALID_ARGUMENT)
        XCTAssertEqual(String(cString: qarep_model_label(model, 0)), "cat")
        XCTAssertEqual(String(cString: qarep_model_label(model, 4)), "ünïcode")
        XCTAssertNil(qarep_model_label(model, 5))
        XCTAssertNil(qarep_model_label(model, -1))
        XCTAssertNil(qarep_model_label(nil, 0))
    }

    /// The workspace is reported, grows with max_batch, and a limit below it is refused up front with
    /// OUT_OF_MEMORY (0: no limit); a session at exactly the limit runs.
    func testWorkspaceBytesAndLimit() throws {
        let model = try loadModel()
        defer { qarep_model_release(model) }
        var options = qarep_session_options_default()
        options.num_threads = 1
        var sizes: [Int] = []
        for batch: Int32 in [1, 4] {
            options.max_batch = batch
            var session: OpaquePointer? = nil
            XCTAssertEqual(qarep_session_create(model, &options, &session), QAREP_OK)
            var bytes = 0
            XCTAssertEqual(qarep_session_workspace_bytes(session, &bytes), QAREP_OK)
            XCTAssertEqual(qarep_session_workspace_bytes(session, nil), QAREP_ERROR_INVALID_ARGUMENT)
            qarep_session_destroy(session)
            sizes.append(bytes)
        }
        var unused = 0
        XCTAssertEqual(qarep_session_workspace_bytes(nil, &unused), QAREP_ERROR_INVALID_ARGUMENT)
        // Input, ping, pong, pooled and logits of 4 images hold at least 4 inputs.
        XCTAssertGreaterThan(sizes[1], sizes[0])
        XCTAssertGreaterThanOrEqual(sizes[1], 4 * 9 * 11 * 3)
        for (limit, status) in [(0, QAREP_OK), (sizes[1], QAREP_OK), (sizes[1] - 1, QAREP_ERROR_OUT_OF_MEMORY),
                                (1, QAREP_ERROR_OUT_OF_MEMORY)] {
            var session: OpaquePointer? = nil
            XCTAssertEqual(qarep_session_create_limited(model, &options, limit, &session), status, "limit \(limit)")
            if status == QAREP_OK {
                let images = [UInt8](repeating: 7, count: 4 * 9 * 11 * 3)
                XCTAssertEqual(qarep_session_run_u8(session, images, images.count, 4), QAREP_OK)
            } else {
                XCTAssertNil(session)
                XCTAssertTrue(lastError.contains("exceeds the limit of \(limit) bytes"), lastError)
            }
            qarep_session_destroy(session)
        }
        // size_t's largest value is no limit too.
        var session: OpaquePointer? = nil
        XCTAssertEqual(qarep_session_create_limited(model, &options, Int(bitPattern: UInt.max), &session), QAREP_OK)
        qarep_session_destroy(session)
    }

    func testSessionArgumentErrors() throws {
        let model = try loadModel()
        var session: OpaquePointer? = nil
        var options = qarep_session_options_default()
        XCTAssertEqual(options.max_batch, 1)
        XCTAssertEqual(options.num_threads, 0)
        XCTAssertEqual(options.kernel, QAREP_KERNEL_AUTO)
        XCTAssertEqual(qarep_session_create(nil, &options, &session), QAREP_ERROR_INVALID_ARGUMENT)
        XCTAssertEqual(qarep_session_create(model, &options, nil), QAREP_ERROR_INVALID_ARGUMENT)
        options.kernel = qarep_kernel(rawValue: 42)
        XCTAssertEqual(qarep_session_create(model, &options, &session), QAREP_ERROR_INVALID_ARGUMENT)
        XCTAssertTrue(lastError.contains("kernel"), lastError)
        options = qarep_session_options_default()
        options.max_batch = 0
        XCTAssertEqual(qarep_session_create(model, &options, &session), QAREP_ERROR_INVALID_ARGUMENT)
        options.max_batch = 2
        options.num_threads = -4
        XCTAssertEqual(qarep_session_create(model, &options, &session), QAREP_ERROR_INVALID_ARGUMENT)
        XCTAssertNil(session)
        for value in 1...UInt32(qarep_kernel_count()) where qarep_kernel_supported(qarep_kernel(rawValue: value)) == 0 {
            let kernel = qarep_kernel(rawValue: value)
            options = qarep_session_options_default()
            options.kernel = kernel
            XCTAssertEqual(qarep_session_create(model, &options, &session), QAREP_ERROR_UNSUPPORTED_KERNEL)
        }
        options = qarep_session_options_default()
        options.max_batch = 2
        options.num_threads = 1
        options.kernel = QAREP_KERNEL_SCALAR
        XCTAssertEqual(qarep_session_create(model, &options, &session), QAREP_OK)
        // The session keeps the model alive after the caller's release.
        qarep_model_release(model)
        defer { qarep_session_destroy(session) }
        XCTAssertEqual(qarep_session_kernel(session), QAREP_KERNEL_SCALAR)

        var logits = [Float](repeating: 0, count: 10)
        XCTAssertEqual(qarep_session_get_logits(session, &logits, 5), QAREP_ERROR_NO_RESULT)
        var predictions = [qarep_prediction](repeating: qarep_prediction(), count: 8)
        var count: Int32 = 0
        XCTAssertEqual(qarep_session_top_k(session, 0, 1, &predictions, &count), QAREP_ERROR_NO_RESULT)

        let imageBytes = 9 * 11 * 3
        let images = [UInt8](repeating: 128, count: 2 * imageBytes)
        XCTAssertEqual(qarep_session_run_u8(nil, images, images.count, 2), QAREP_ERROR_INVALID_ARGUMENT)
        XCTAssertEqual(qarep_session_run_u8(session, nil, images.count, 2), QAREP_ERROR_INVALID_ARGUMENT)
        XCTAssertEqual(qarep_session_run_u8(session, images, images.count, 0), QAREP_ERROR_INVALID_ARGUMENT)
        XCTAssertEqual(qarep_session_run_u8(session, images, images.count, 3), QAREP_ERROR_INVALID_ARGUMENT)
        XCTAssertTrue(lastError.contains("batch is 3"), lastError)
        XCTAssertEqual(qarep_session_run_u8(session, images, images.count - 1, 2), QAREP_ERROR_BUFFER_SIZE)
        XCTAssertEqual(qarep_session_run_u8(session, images, images.count, 1), QAREP_ERROR_BUFFER_SIZE)
        let floats = [Float](repeating: 0, count: 2 * imageBytes)
        XCTAssertEqual(qarep_session_run_f32(session, floats, floats.count + 1, 2), QAREP_ERROR_BUFFER_SIZE)
        XCTAssertEqual(qarep_session_run_f32(session, nil, floats.count, 2), QAREP_ERROR_INVALID_ARGUMENT)

        XCTAssertEqual(qarep_session_run_u8(session, images, images.count, 2), QAREP_OK)
        XCTAssertEqual(qarep_session_get_logits(session, &logits, 5), QAREP_ERROR_BUFFER_SIZE)
        XCTAssertEqual(qarep_session_get_logits(session, nil, 10), QAREP_ERROR_INVALID_ARGUMENT)
        XCTAssertEqual(qarep_session_get_logits(session, &logits, 10), QAREP_OK)
        XCTAssertEqual(Array(logits[0..<5]), Array(logits[5..<10]))  // two identical images

        XCTAssertEqual(qarep_session_top_k(session, 2, 1, &predictions, &count), QAREP_ERROR_INVALID_ARGUMENT)
        XCTAssertEqual(qarep_session_top_k(session, -1, 1, &predictions, &count), QAREP_ERROR_INVALID_ARGUMENT)
        XCTAssertEqual(qarep_session_top_k(session, 0, 0, &predictions, &count), QAREP_ERROR_INVALID_ARGUMENT)
        XCTAssertEqual(qarep_session_top_k(session, 0, 1, nil, &count), QAREP_ERROR_INVALID_ARGUMENT)
        XCTAssertEqual(qarep_session_top_k(session, 0, 1, &predictions, nil), QAREP_ERROR_INVALID_ARGUMENT)
        XCTAssertEqual(qarep_session_top_k(session, 1, 8, &predictions, &count), QAREP_OK)
        XCTAssertEqual(count, 5)
        let best = Int(predictions[0].class_index)
        XCTAssertEqual(logits[best], logits[0..<5].max())
        XCTAssertEqual(predictions[0..<5].map(\.probability).reduce(0, +), 1, accuracy: 1e-5)
        XCTAssertEqual(String(cString: predictions[0].label), ["cat", "dog", "bird \"quoted\"", "fish\n", "ünïcode"][best])

        // The float path gives the logits of the pixels it encodes.
        let description = smallModel()
        var normalized = [Float](repeating: 0, count: 2 * imageBytes)
        for c in 0..<3 {
            let value = (Float(128) / 255 - description.preprocessing.mean[c]) / description.preprocessing.std[c]
            for i in 0..<(9 * 11) { normalized[c * 99 + i] = value; normalized[(3 + c) * 99 + i] = value }
        }
        var floatLogits = [Float](repeating: 0, count: 10)
        XCTAssertEqual(qarep_session_run_f32(session, normalized, normalized.count, 2), QAREP_OK)
        XCTAssertEqual(qarep_session_get_logits(session, &floatLogits, 10), QAREP_OK)
        XCTAssertEqual(floatLogits, logits)
    }

    func testPreprocessThroughC() throws {
        let model = try loadModel()
        defer { qarep_model_release(model) }
        let width: Int32 = 30, height: Int32 = 20
        let rgb = [UInt8](repeating: 77, count: Int(width * height) * 3 + 5)
        var out = [UInt8](repeating: 0, count: 9 * 11 * 3)
        XCTAssertEqual(qarep_model_preprocess(model, rgb, width, height, Int(width) * 3, &out, out.count), QAREP_OK)
        XCTAssertEqual(Set(out), [77])
        XCTAssertEqual(qarep_model_preprocess(model, rgb, width, height, Int(width) * 3, &out, out.count - 1), QAREP_ERROR_BUFFER_SIZE)
        XCTAssertEqual(qarep_model_preprocess(model, rgb, width, height, Int(width) * 3 - 1, &out, out.count), QAREP_ERROR_INVALID_ARGUMENT)
        XCTAssertEqual(qarep_model_preprocess(model, rgb, 0, height, 0, &out, out.count), QAREP_ERROR_INVALID_ARGUMENT)
        XCTAssertEqual(qarep_model_preprocess(model, nil, width, height, Int(width) * 3, &out, out.count), QAREP_ERROR_INVALID_ARGUMENT)
        XCTAssertEqual(qarep_model_preprocess(model, rgb, width, height, Int(width) * 3, nil, out.count), QAREP_ERROR_INVALID_ARGUMENT)
        XCTAssertEqual(qarep_model_preprocess(nil, rgb, width, height, Int(width) * 3, &out, out.count), QAREP_ERROR_INVALID_ARGUMENT)
    }

    func testLastErrorIsPerThread() throws {
        XCTAssertEqual(qarep_model_load_file(nil, nil), QAREP_ERROR_INVALID_ARGUMENT)
        let mine = lastError
        let thread = Thread {
            var model: OpaquePointer? = nil
            _ = qarep_model_load_file("/nonexistent-other-thread", &model)
        }
        thread.start()
        while !thread.isFinished { usleep(1000) }
        XCTAssertEqual(lastError, mine)
    }
}

// The C ABI of include/qarep.h, implemented over the Swift API. Every entry point checks its pointers and
// sizes, turns every thrown QARepError into a status plus a per-thread message, and never traps.
// Handles are retained Swift objects passed as opaque pointers: a session holds a strong reference to its
// model's handle, so releasing a model while sessions exist is safe.
import CQARepAPI
import CQARepKernels
#if hasFeature(Embedded)
import CQARepLibc  // packaging/embedded: Embedded Swift has no Glibc overlay, so libc comes through a module map
#elseif canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A model plus the C strings handed out for it (labels live as long as the model).
final class CModelHandle {
    let model: Model
    let labelStrings: [UnsafeMutablePointer<CChar>?]

    init(model: Model) {
        self.model = model
        labelStrings = model.labels.map { strdup($0) }
    }

    deinit { for s in labelStrings { free(s) } }
}

final class CSessionHandle {
    let modelHandle: CModelHandle
    let session: Session

    init(modelHandle: CModelHandle, session: Session) {
        self.modelHandle = modelHandle
        self.session = session
    }
}

// MARK: - Error reporting

private let lastErrorKey: pthread_key_t? = {
    var key = pthread_key_t()
    guard pthread_key_create(&key, { free($0) }) == 0 else { return nil }
    return key
}()

private nonisolated(unsafe) let emptyCString: UnsafeMutablePointer<CChar>? = strdup("")

private func recordError(_ message: String) {
    guard let key = lastErrorKey else { return }
    free(pthread_getspecific(key))
    pthread_setspecific(key, strdup(message))
}

private func fail(_ status: qarep_status, _ message: String) -> qarep_status {
    recordError(message)
    return status
}

private func fail(_ error: QARepError) -> qarep_status {
    fail(qarep_status(rawValue: UInt32(error.code.rawValue)), error.message)
}

private func modelHandle(_ pointer: OpaquePointer?) -> CModelHandle? {
    guard let pointer else { return nil }
    return Unmanaged<CModelHandle>.fromOpaque(UnsafeRawPointer(pointer)).takeUnretainedValue()
}

private func sessionHandle(_ pointer: OpaquePointer?) -> CSessionHandle? {
    guard let pointer else { return nil }
    return Unmanaged<CSessionHandle>.fromOpaque(UnsafeRawPointer(pointer)).takeUnretainedValue()
}

// MARK: - Library

private nonisolated(unsafe) let versionCString: UnsafeMutablePointer<CChar>? =
    strdup("\(QAREP_VERSION_MAJOR).\(QAREP_VERSION_MINOR).\(QAREP_VERSION_PATCH)")

// The C strings below are written once at first use and never freed or modified afterwards.
private nonisolated(unsafe) let statusCStrings: [UnsafeMutablePointer<CChar>?] = (0...9).map { raw -> UnsafeMutablePointer<CChar>? in
    raw == 0 ? strdup("ok") : strdup(QARepError.Code(rawValue: Int32(raw)).summary)
}

private nonisolated(unsafe) let unknownStatusCString: UnsafeMutablePointer<CChar>? = strdup("unknown status")

private nonisolated(unsafe) let autoKernelCString: UnsafeMutablePointer<CChar>? = strdup(Kernel.auto.name)

// qarep_kernel values: 0 is AUTO, value i + 1 the kernels' path i (the order of qk_paths.h).
private func kernel(from value: qarep_kernel) -> Kernel? {
    if value == QAREP_KERNEL_AUTO { return .auto }
    guard value.rawValue >= 1, value.rawValue <= QK_PATH_COUNT.rawValue else { return nil }
    return Kernel(path: qk_path(rawValue: value.rawValue - 1))
}

private func cKernel(_ kernel: Kernel) -> qarep_kernel {
    guard let path = kernel.path else { return QAREP_KERNEL_AUTO }
    return qarep_kernel(rawValue: path.rawValue + 1)
}

@_cdecl("qarep_version")
public func _qarepVersion() -> UInt32 {
    UInt32(QAREP_VERSION_MAJOR) << 16 | UInt32(QAREP_VERSION_MINOR) << 8 | UInt32(QAREP_VERSION_PATCH)
}

@_cdecl("qarep_version_string")
public func _qarepVersionString() -> UnsafePointer<CChar>? { UnsafePointer(versionCString) }

@_cdecl("qarep_max_model_format_version")
public func _qarepMaxModelFormatVersion() -> UInt32 { ModelFormat.version }

@_cdecl("qarep_status_string")
public func _qarepStatusString(_ status: qarep_status) -> UnsafePointer<CChar>? {
    let raw = Int(status.rawValue)
    guard raw < statusCStrings.count else { return UnsafePointer(unknownStatusCString) }
    return UnsafePointer(statusCStrings[raw])
}

@_cdecl("qarep_last_error_message")
public func _qarepLastErrorMessage() -> UnsafePointer<CChar>? {
    if let key = lastErrorKey, let message = pthread_getspecific(key) {
        return UnsafePointer(message.assumingMemoryBound(to: CChar.self))
    }
    return UnsafePointer(emptyCString)
}

@_cdecl("qarep_kernel_supported")
public func _qarepKernelSupported(_ value: qarep_kernel) -> Int32 {
    guard let kernel = kernel(from: value) else { return 0 }
    return kernel.isSupported ? 1 : 0
}

@_cdecl("qarep_kernel_name")
public func _qarepKernelName(_ value: qarep_kernel) -> UnsafePointer<CChar>? {
    if value == QAREP_KERNEL_AUTO { return UnsafePointer(autoKernelCString) }
    guard value.rawValue >= 1, value.rawValue <= QK_PATH_COUNT.rawValue else { return nil }
    return qk_path_name(qk_path(rawValue: value.rawValue - 1))
}

@_cdecl("qarep_kernel_count")
public func _qarepKernelCount() -> Int32 { Int32(QK_PATH_COUNT.rawValue) }

@_cdecl("qarep_kernel_from_name")
public func _qarepKernelFromName(_ name: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<qarep_kernel>?) -> qarep_status {
    guard let name else { return fail(QAREP_ERROR_INVALID_ARGUMENT, "name is NULL") }
    guard let out else { return fail(QAREP_ERROR_INVALID_ARGUMENT, "out_kernel is NULL") }
    let text = String(cString: name)
    guard let kernel = Kernel(name: text) else {
        let known = ([Kernel.auto] + Kernel.all).map { $0.name }.joined(separator: ", ")
        return fail(QAREP_ERROR_INVALID_ARGUMENT, "\"\(text.prefix(40))\" is not a kernel name; known: \(known)")
    }
    out.pointee = cKernel(kernel)
    return QAREP_OK
}

// MARK: - Model

private func publish(_ load: () throws(QARepError) -> Model, into out: UnsafeMutablePointer<OpaquePointer?>) -> qarep_status {
    do {
        let handle = CModelHandle(model: try load())
        out.pointee = OpaquePointer(Unmanaged.passRetained(handle).toOpaque())
        return QAREP_OK
    } catch {
        return fail(error)
    }
}

@_cdecl("qarep_model_load_file")
public func _qarepModelLoadFile(_ path: UnsafePointer<CChar>?, _ outModel: UnsafeMutablePointer<OpaquePointer?>?) -> qarep_status {
    _qarepModelLoadFileWithFlags(path, 0, outModel)
}

@_cdecl("qarep_model_load_file_with_flags")
public func _qarepModelLoadFileWithFlags(_ path: UnsafePointer<CChar>?, _ flags: UInt32,
                                         _ outModel: UnsafeMutablePointer<OpaquePointer?>?) -> qarep_status {
    guard let outModel else { return fail(QAREP_ERROR_INVALID_ARGUMENT, "out_model is NULL") }
    outModel.pointee = nil
    guard let path else { return fail(QAREP_ERROR_INVALID_ARGUMENT, "path is NULL") }
    guard let packing = packingOptions(flags) else { return unknownFlags(flags) }
    let pathString = String(cString: path)
    return publish({ () throws(QARepError) -> Model in try Model(contentsOfFile: pathString, packing: packing) }, into: outModel)
}

@_cdecl("qarep_model_load_memory")
public func _qarepModelLoadMemory(_ data: UnsafeRawPointer?, _ size: Int, _ outModel: UnsafeMutablePointer<OpaquePointer?>?) -> qarep_status {
    _qarepModelLoadMemoryWithFlags(data, size, 0, outModel)
}

@_cdecl("qarep_model_load_memory_with_flags")
public func _qarepModelLoadMemoryWithFlags(_ data: UnsafeRawPointer?, _ size: Int, _ flags: UInt32,
                                           _ outModel: UnsafeMutablePointer<OpaquePointer?>?) -> qarep_status {
    guard let outModel else { return fail(QAREP_ERROR_INVALID_ARGUMENT, "out_model is NULL") }
    outModel.pointee = nil
    guard let data else { return fail(QAREP_ERROR_INVALID_ARGUMENT, "data is NULL") }
    // size_t arrives as Int; values above Int.max wrap negative and cannot be a real buffer.
    guard size >= 0 else { return fail(QAREP_ERROR_INVALID_ARGUMENT, "size is larger than any addressable buffer") }
    guard let packing = packingOptions(flags) else { return unknownFlags(flags) }
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    return publish({ () throws(QARepError) -> Model in try Model(unsafeBytes: bytes, packing: packing) }, into: outModel)
}

/// The QAREP_LOAD_* bits as options; nil when a bit is unknown.
private func packingOptions(_ flags: UInt32) -> Model.PackingOptions? {
    guard flags & ~(QAREP_LOAD_NO_WINOGRAD_4X4 | QAREP_LOAD_NO_WINOGRAD) == 0 else { return nil }
    var options: Model.PackingOptions = []
    if flags & QAREP_LOAD_NO_WINOGRAD_4X4 != 0 { options.insert(.noWinograd4x4) }
    if flags & QAREP_LOAD_NO_WINOGRAD != 0 { options.insert(.noWinograd) }
    return options
}

private func unknownFlags(_ flags: UInt32) -> qarep_status {
    fail(QAREP_ERROR_INVALID_ARGUMENT, "flags 0x\(String(flags, radix: 16)) has bits no QAREP_LOAD_* flag defines")
}

@_cdecl("qarep_model_packed_bytes")
public func _qarepModelPackedBytes(_ model: OpaquePointer?, _ outBytes: UnsafeMutablePointer<Int>?) -> qarep_status {
    guard let handle = modelHandle(model) else { return fail(QAREP_ERROR_INVALID_ARGUMENT, "model is NULL") }
    guard let outBytes else { return fail(QAREP_ERROR_INVALID_ARGUMENT, "out_bytes is NULL") }
    outBytes.pointee = handle.model.packedWeightBytes
    return QAREP_OK
}

@_cdecl("qarep_model_release")
public func _qarepModelRelease(_ model: OpaquePointer?) {
    guard let model else { return }
    Unmanaged<CModelHandle>.fromOpaque(UnsafeRawPointer(model)).release()
}

@_cdecl("qarep_model_get_info")
public func _qarepModelGetInfo(_ model: OpaquePointer?, _ outInfo: UnsafeMutablePointer<qarep_model_info>?) -> qarep_status {
    guard let handle = modelHandle(model) else { return fail(QAREP_ERROR_INVALID_ARGUMENT, "model is NULL") }
    guard let outInfo else { return fail(QAREP_ERROR_INVALID_ARGUMENT, "out_info is NULL") }
    let m = handle.model
    outInfo.pointee = qarep_model_info(
        input_height: Int32(m.inputHeight), input_width: Int32(m.inputWidth), input_channels: Int32(m.inputChannels),
        num_classes: Int32(m.numClasses), num_conv_layers: Int32(m.numConvLayers), format_version: m.formatVersion,
        macs_per_image: m.macsPerImage)
    return QAREP_OK
}

@_cdecl("qarep_model_label")
public func _qarepModelLabel(_ model: OpaquePointer?, _ classIndex: Int32) -> UnsafePointer<CChar>? {
    guard let handle = modelHandle(model), classIndex >= 0, Int(classIndex) < handle.labelStrings.count else { return nil }
    return UnsafePointer(handle.labelStrings[Int(classIndex)])
}

@_cdecl("qarep_model_preprocess")
public func _qarepModelPreprocess(_ model: OpaquePointer?, _ rgb: UnsafePointer<UInt8>?, _ width: Int32, _ height: Int32,
                                  _ rowStride: Int, _ out: UnsafeMutablePointer<UInt8>?, _ outSize: Int) -> qarep_status {
    guard let handle = modelHandle(model) else { return fail(QAREP_ERROR_INVALID_ARGUMENT, "model is NULL") }
    guard let rgb else { return fail(QAREP_ERROR_INVALID_ARGUMENT, "rgb is NULL") }
    guard let out else { return fail(QAREP_ERROR_INVALID_ARGUMENT, "out is NULL") }
    let m = handle.model
    guard width >= 1, height >= 1, Int(width) <= PreprocessLimits.maxSourceSide, Int(height) <= PreprocessLimits.maxSourceSide else {
        return fail(QAREP_ERROR_INVALID_ARGUMENT, "image size \(width)x\(height) outside 1...\(PreprocessLimits.maxSourceSide)")
    }
    guard rowStride >= Int(width) * 3, rowStride <= Int(Int32.max) else {
        return fail(QAREP_ERROR_INVALID_ARGUMENT, "row_stride \(rowStride) is not in width * 3 ... 2^31 - 1")
    }
    guard outSize == m.imageBytes else {
        return fail(QAREP_ERROR_BUFFER_SIZE, "out_size is \(outSize), expected input_height * input_width * 3 = \(m.imageBytes)")
    }
    // The caller promises height rows of row_stride bytes, the last one at least width * 3 long.
    let count = (Int(height) - 1) * rowStride + Int(width) * 3
    do {
        let pixels = try m.preprocess(unsafeRGB: UnsafeBufferPointer(start: rgb, count: count), width: Int(width),
                                      height: Int(height), rowStride: rowStride)
        pixels.withUnsafeBufferPointer { source in
            if let base = source.baseAddress { out.update(from: base, count: min(source.count, outSize)) }
        }
        return QAREP_OK
    } catch {
        return fail(error)
    }
}

// MARK: - Session

@_cdecl("qarep_session_options_default")
public func _qarepSessionOptionsDefault() -> qarep_session_options {
    qarep_session_options(num_threads: 0, max_batch: 1, kernel: QAREP_KERNEL_AUTO)
}

@_cdecl("qarep_session_create")
public func _qarepSessionCreate(_ model: OpaquePointer?, _ options: UnsafePointer<qarep_session_options>?,
                                _ outSession: UnsafeMutablePointer<OpaquePointer?>?) -> qarep_status {
    _qarepSessionCreateLimited(model, options, 0, outSession)
}

@_cdecl("qarep_session_create_limited")
public func _qarepSessionCreateLimited(_ model: OpaquePointer?, _ options: UnsafePointer<qarep_session_options>?,
                                       _ maxWorkspaceBytes: Int, _ outSession: UnsafeMutablePointer<OpaquePointer?>?) -> qarep_status {
    guard let outSession else { return fail(QAREP_ERROR_INVALID_ARGUMENT, "out_session is NULL") }
    outSession.pointee = nil
    guard let handle = modelHandle(model) else { return fail(QAREP_ERROR_INVALID_ARGUMENT, "model is NULL") }
    let settings = options?.pointee ?? _qarepSessionOptionsDefault()
    guard let kernel = kernel(from: settings.kernel) else {
        return fail(QAREP_ERROR_INVALID_ARGUMENT, "options.kernel \(settings.kernel.rawValue) is not a qarep_kernel value")
    }
    // size_t arrives as Int; a limit above Int.max is no limit at all.
    let limit = maxWorkspaceBytes < 0 ? 0 : maxWorkspaceBytes
    do {
        let session = try Session(model: handle.model, threads: Int(settings.num_threads),
                                  maxBatch: Int(settings.max_batch), kernel: kernel, maxWorkspaceBytes: limit)
        let sessionHandle = CSessionHandle(modelHandle: handle, session: session)
        outSession.pointee = OpaquePointer(Unmanaged.passRetained(sessionHandle).toOpaque())
        return QAREP_OK
    } catch {
        return fail(error)
    }
}

@_cdecl("qarep_session_workspace_bytes")
public func _qarepSessionWorkspaceBytes(_ session: OpaquePointer?, _ outBytes: UnsafeMutablePointer<Int>?) -> qarep_status {
    guard let outBytes else { return fail(QAREP_ERROR_INVALID_ARGUMENT, "out_bytes is NULL") }
    guard let handle = sessionHandle(session) else { return fail(QAREP_ERROR_INVALID_ARGUMENT, "session is NULL") }
    outBytes.pointee = handle.session.workspaceBytes
    return QAREP_OK
}

@_cdecl("qarep_session_destroy")
public func _qarepSessionDestroy(_ session: OpaquePointer?) {
    guard let session else { return }
    Unmanaged<CSessionHandle>.fromOpaque(UnsafeRawPointer(session)).release()
}

@_cdecl("qarep_session_kernel")
public func _qarepSessionKernel(_ session: OpaquePointer?) -> qarep_kernel {
    guard let handle = sessionHandle(session) else {
        recordError("session is NULL")
        return QAREP_KERNEL_AUTO
    }
    return cKernel(handle.session.kernel)
}

private func checkedBatch(_ batch: Int32, _ session: Session) -> qarep_status? {
    guard batch >= 1, Int(batch) <= session.maxBatch else {
        return fail(QAREP_ERROR_INVALID_ARGUMENT, "batch is \(batch), expected 1...\(session.maxBatch)")
    }
    return nil
}

/// The checks both run entry points share (handle, pointer, batch, element count), then the run itself.
/// `shape` spells out the expected count in the error message, e.g. "batch * input_height * input_width * 3".
private func checkedRun(_ session: OpaquePointer?, _ input: UnsafeRawPointer?, inputName: String, count: Int,
                        countName: String, shape: String, batch: Int32,
                        _ run: (Session) throws(QARepError) -> Void) -> qarep_status {
    guard let handle = sessionHandle(session) else { return fail(QAREP_ERROR_INVALID_ARGUMENT, "session is NULL") }
    guard input != nil else { return fail(QAREP_ERROR_INVALID_ARGUMENT, "\(inputName) is NULL") }
    if let status = checkedBatch(batch, handle.session) { return status }
    let expected = Int(batch) * handle.session.model.imageBytes
    guard count == expected else {
        return fail(QAREP_ERROR_BUFFER_SIZE, "\(countName) is \(count), expected \(shape) = \(expected)")
    }
    do {
        try run(handle.session)
        return QAREP_OK
    } catch {
        return fail(error)
    }
}

@_cdecl("qarep_session_run_u8")
public func _qarepSessionRunU8(_ session: OpaquePointer?, _ images: UnsafePointer<UInt8>?, _ size: Int, _ batch: Int32) -> qarep_status {
    checkedRun(session, images, inputName: "images", count: size, countName: "size",
               shape: "batch * input_height * input_width * 3", batch: batch) { (session) throws(QARepError) in
        // Logits stay in the session for get_logits/top_k; the Swift API's returned copy is not needed here.
        try session.run(images: UnsafeBufferPointer(start: images, count: size), batch: Int(batch), stepClock: nil)
    }
}

@_cdecl("qarep_session_run_f32")
public func _qarepSessionRunF32(_ session: OpaquePointer?, _ input: UnsafePointer<Float>?, _ count: Int, _ batch: Int32) -> qarep_status {
    checkedRun(session, input, inputName: "input", count: count, countName: "count",
               shape: "batch * 3 * input_height * input_width", batch: batch) { (session) throws(QARepError) in
        _ = try session.run(unsafeNormalized: UnsafeBufferPointer(start: input, count: count), batch: Int(batch))
    }
}

@_cdecl("qarep_session_get_logits")
public func _qarepSessionGetLogits(_ session: OpaquePointer?, _ out: UnsafeMutablePointer<Float>?, _ count: Int) -> qarep_status {
    guard let handle = sessionHandle(session) else { return fail(QAREP_ERROR_INVALID_ARGUMENT, "session is NULL") }
    guard let out else { return fail(QAREP_ERROR_INVALID_ARGUMENT, "out is NULL") }
    guard let batch = handle.session.lastBatch else { return fail(QARepError(.noResult, "no successful run yet")) }
    let expected = batch * handle.session.model.numClasses
    guard count == expected else {
        return fail(QAREP_ERROR_BUFFER_SIZE, "count is \(count), expected batch * num_classes = \(expected) for the last run")
    }
    handle.session.copyLogits(batch: batch, into: UnsafeMutableBufferPointer(start: out, count: count))
    return QAREP_OK
}

@_cdecl("qarep_session_top_k")
public func _qarepSessionTopK(_ session: OpaquePointer?, _ imageIndex: Int32, _ k: Int32,
                              _ out: UnsafeMutablePointer<qarep_prediction>?, _ outCount: UnsafeMutablePointer<Int32>?) -> qarep_status {
    guard let handle = sessionHandle(session) else { return fail(QAREP_ERROR_INVALID_ARGUMENT, "session is NULL") }
    guard let out else { return fail(QAREP_ERROR_INVALID_ARGUMENT, "out is NULL") }
    guard let outCount else { return fail(QAREP_ERROR_INVALID_ARGUMENT, "out_count is NULL") }
    do {
        let predictions = try handle.session.topK(imageIndex: Int(imageIndex), k: Int(k))
        for (i, p) in predictions.enumerated() {
            out[i] = qarep_prediction(class_index: Int32(p.classIndex), probability: p.probability,
                                      label: UnsafePointer(handle.modelHandle.labelStrings[p.classIndex]))
        }
        outCount.pointee = Int32(predictions.count)
        return QAREP_OK
    } catch {
        return fail(error)
    }
}

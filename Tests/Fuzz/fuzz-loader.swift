// libFuzzer harness for the model loader and the C API around it (not part of `swift test`; see fuzz.sh).
// Built against Sources/QARep compiled with -enable-testing, so it calls the C entry points' Swift definitions
// (_qarepModelLoadMemory is qarep_model_load_memory) and can build seed models with the real writer.
//
// Each input is loaded from a private heap copy that is freed right after the load returns: if the model kept
// a pointer into the caller's buffer, ASan reports a use-after-free on the session run or the unpacking below.
// A model small enough to run fast also gets its description (which unpacks every weight) and, for every kernel
// path this CPU has, a session (max_batch 1, one thread), one uint8 run, its logits (which must agree across
// paths) and top-k; then the default path on two threads with batches of one to three, which must agree too.
import CQARepAPI
@testable import QARep
#if canImport(Glibc)
import Glibc
#endif

private let maxRunPixels = 64 * 64
private let maxRunMacs = 20_000_000
/// QAREP_FUZZ_VERBOSE=1 prints why each input was refused (for `fuzz.sh repro loader`).
private let verbose = getenv("QAREP_FUZZ_VERBOSE") != nil

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzLoaderTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
#if STRUCTURED
    // Byte mutations mostly break the JSON header; here the input chooses a model's geometry and values instead,
    // and the writer (without validation) lays out a well-formed file, so the checks and kernels behind the
    // header get the inputs.
    let file = structuredModelFile(UnsafeBufferPointer(start: data, count: data == nil ? 0 : size))
    return file.withUnsafeBufferPointer { loadAndExercise($0.baseAddress, $0.count) }
#else
    return loadAndExercise(data, size)
#endif
}

private func loadAndExercise(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let copy = malloc(max(size, 1)) else { return 0 }
    if size > 0, let data { copy.copyMemory(from: data, byteCount: size) }
    var model: OpaquePointer? = nil
    let status = _qarepModelLoadMemory(UnsafeRawPointer(copy), size, &model)
    // Poison the bytes before freeing, so a stale pointer reads garbage even without ASan.
    memset(copy, 0xA5, max(size, 1))
    free(copy)
    guard status == QAREP_OK, let model else {
        guard model == nil, let message = _qarepLastErrorMessage() else { fatalError("failed load left *out_model set") }
        if verbose { print("load: status \(status.rawValue): \(String(cString: message))") }
        return 0
    }
    exercise(model)
    _qarepModelRelease(model)
    return 0
}

private func exercise(_ model: OpaquePointer) {
    var info = qarep_model_info()
    guard _qarepModelGetInfo(model, &info) == QAREP_OK else { fatalError("get_info failed on a loaded model") }
    for k in 0..<min(info.num_classes, 8) {
        guard let label = _qarepModelLabel(model, k) else { fatalError("label \(k) missing") }
        _ = strlen(label)
    }
    let pixels = Int(info.input_height) * Int(info.input_width)
    guard pixels <= maxRunPixels, info.macs_per_image <= Double(maxRunMacs) else { return }
    checkPreprocessing(model, outputBytes: pixels * 3)

    let handle = Unmanaged<CModelHandle>.fromOpaque(UnsafeRawPointer(model)).takeUnretainedValue()
    guard let unpacked = try? handle.model.description else { fatalError("a loaded model's weights do not unpack") }
    guard (try? unpacked.validate()) != nil else { fatalError("a loaded model's description does not validate") }

    // Every path this CPU has (a forced one repacks from the default path's weights) must give the same logits.
    var reference: [Float]? = nil
    for kernel in (0...UInt32(_qarepKernelCount())).map({ qarep_kernel(rawValue: $0) })
    where _qarepKernelSupported(kernel) != 0 {
        let logits = runOnce(model, kernel: kernel, classes: Int(info.num_classes), pixels: pixels)
        if let reference, reference.map(\.bitPattern) != logits.map(\.bitPattern) {
            fatalError("kernel \(kernel.rawValue) gives other logits than AUTO")
        }
        reference = reference ?? logits
    }
    // Two threads split each layer's rows for a batch of one, claim whole images for a batch of two, and do both
    // for a batch of three (the same image each time): every image's logits must be the single-threaded ones.
    guard let reference else { return }
    for batch in 1...3 {
        let logits = runOnce(model, kernel: QAREP_KERNEL_AUTO, classes: Int(info.num_classes), pixels: pixels,
                             threads: 2, batch: batch)
        guard logits.map(\.bitPattern) == Array(repeating: reference, count: batch).joined().map(\.bitPattern) else {
            fatalError("two threads with batch \(batch) give other logits than one thread")
        }
    }
}

private func runOnce(_ model: OpaquePointer, kernel: qarep_kernel, classes: Int, pixels: Int, threads: Int32 = 1,
                     batch: Int = 1) -> [Float] {
    var options = qarep_session_options(num_threads: threads, max_batch: Int32(batch), kernel: kernel)
    var session: OpaquePointer? = nil
    guard _qarepSessionCreate(model, &options, &session) == QAREP_OK, let session else {
        fatalError("session_create failed on a loaded model: \(String(cString: _qarepLastErrorMessage()!))")
    }
    defer { _qarepSessionDestroy(session) }
    var image = [UInt8](repeating: 0, count: pixels * 3)
    for i in image.indices { image[i] = UInt8(truncatingIfNeeded: i &* 37 &+ 11) }
    let images = Array(repeating: image, count: batch).joined()
    let run = Array(images).withUnsafeBufferPointer { _qarepSessionRunU8(session, $0.baseAddress, $0.count, Int32(batch)) }
    guard run == QAREP_OK else { fatalError("run failed on a loaded model: \(String(cString: _qarepLastErrorMessage()!))") }
    var logits = [Float](repeating: 0, count: batch * classes)
    guard logits.withUnsafeMutableBufferPointer({ _qarepSessionGetLogits(session, $0.baseAddress, $0.count) }) == QAREP_OK else {
        fatalError("get_logits failed after a run")
    }
    checkArgumentErrors(session, imageBytes: pixels * 3, classes: classes, batch: batch)
    var predictions = [qarep_prediction](repeating: qarep_prediction(), count: 3)
    var count: Int32 = 0
    guard predictions.withUnsafeMutableBufferPointer({ _qarepSessionTopK(session, 0, 3, $0.baseAddress, &count) }) == QAREP_OK,
          Int(count) == min(3, classes) else {
        fatalError("top_k failed after a run")
    }
    return logits
}

/// The model's crop ratio and input size (both from the file) on a few source shapes, strides and sizes.
private func checkPreprocessing(_ model: OpaquePointer, outputBytes: Int) {
    var out = [UInt8](repeating: 0, count: outputBytes)
    for (width, height, stride) in [(1, 1, 3), (7, 5, 23), (300, 2, 900), (2, 129, 6)] {
        let rgb = (0..<((height - 1) * stride + width * 3)).map { UInt8(truncatingIfNeeded: $0 &* 29) }
        let status = out.withUnsafeMutableBufferPointer { o in
            rgb.withUnsafeBufferPointer { _qarepModelPreprocess(model, $0.baseAddress, Int32(width), Int32(height), stride, o.baseAddress, o.count) }
        }
        guard status == QAREP_OK else { fatalError("preprocess failed: \(String(cString: _qarepLastErrorMessage()!))") }
    }
    let tooSmall = out.withUnsafeMutableBufferPointer { _qarepModelPreprocess(model, [1, 2, 3], 1, 1, 3, $0.baseAddress, $0.count - 1) }
    guard tooSmall == QAREP_ERROR_BUFFER_SIZE else { fatalError("preprocess took a short output buffer") }
}

/// Wrong sizes, batches and indices must fail with the documented status, never run.
private func checkArgumentErrors(_ session: OpaquePointer, imageBytes: Int, classes: Int, batch: Int) {
    let images = [UInt8](repeating: 9, count: imageBytes * (batch + 1))
    let floats = [Float](repeating: .nan, count: imageBytes * batch)
    images.withUnsafeBufferPointer { buffer in
        let base = buffer.baseAddress
        guard _qarepSessionRunU8(session, base, imageBytes * batch - 1, Int32(batch)) == QAREP_ERROR_BUFFER_SIZE,
              _qarepSessionRunU8(session, base, imageBytes * (batch + 1), Int32(batch + 1)) == QAREP_ERROR_INVALID_ARGUMENT,
              _qarepSessionRunU8(session, base, 0, 0) == QAREP_ERROR_INVALID_ARGUMENT,
              _qarepSessionRunU8(session, nil, imageBytes, 1) == QAREP_ERROR_INVALID_ARGUMENT else {
            fatalError("run_u8 accepted a wrong size or batch")
        }
    }
    // NaN input is defined (clamps to pixel 0) and must run.
    guard floats.withUnsafeBufferPointer({ _qarepSessionRunF32(session, $0.baseAddress, $0.count, Int32(batch)) }) == QAREP_OK else {
        fatalError("run_f32 failed: \(String(cString: _qarepLastErrorMessage()!))")
    }
    var logits = [Float](repeating: 0, count: batch * classes + 1)
    var predictions = [qarep_prediction](repeating: qarep_prediction(), count: classes + 1)
    var count: Int32 = 0
    guard logits.withUnsafeMutableBufferPointer({ _qarepSessionGetLogits(session, $0.baseAddress, $0.count) }) == QAREP_ERROR_BUFFER_SIZE,
          predictions.withUnsafeMutableBufferPointer({ _qarepSessionTopK(session, Int32(batch), 1, $0.baseAddress, &count) }) == QAREP_ERROR_INVALID_ARGUMENT,
          predictions.withUnsafeMutableBufferPointer({ _qarepSessionTopK(session, 0, 0, $0.baseAddress, &count) }) == QAREP_ERROR_INVALID_ARGUMENT,
          predictions.withUnsafeMutableBufferPointer({ _qarepSessionTopK(session, 0, Int32(classes + 1), $0.baseAddress, &count) }) == QAREP_OK,
          Int(count) == classes else {
        fatalError("get_logits or top_k mishandled a wrong count or index")
    }
}

// MARK: - Structured inputs

/// Reads the fuzz input as a stream of choices; past its end every choice is 0.
private struct Choices {
    let bytes: UnsafeBufferPointer<UInt8>
    var position = 0

    mutating func byte() -> UInt8 {
        guard position < bytes.count else { return 0 }
        defer { position += 1 }
        return bytes[position]
    }

    mutating func pick<T>(_ options: [T]) -> T { options[Int(byte()) % options.count] }

    mutating func int(_ range: ClosedRange<Int>) -> Int { range.lowerBound + Int(byte()) % (range.count) }

    mutating func int32() -> Int32 {
        // Mostly modest biases, sometimes the extremes the int32 bound check is about.
        switch byte() % 8 {
        case 7: return pick([Int32.max, Int32.min, 1 << 30, -(1 << 30), 0])
        default: return Int32(Int16(bitPattern: UInt16(byte()) << 8 | UInt16(byte())))
        }
    }

    /// Usually a plausible scale; now and then one the loader must refuse (0, negative, subnormal, huge, NaN, inf).
    mutating func scale() -> Float {
        let usual: [Float] = [1.0 / 255, 0.002, 0.01, 0.05, 0.2, 1, 3.5e-5]
        let unusual: [Float] = [0, -0.01, 1e-40, 1e-30, 1e30, 3e38, .nan, .infinity, .leastNonzeroMagnitude]
        return byte() % 16 == 15 ? pick(unusual) : pick(usual)
    }
}

/// A model file (unvalidated writer output) whose every choice comes from the input.
private func structuredModelFile(_ input: UnsafeBufferPointer<UInt8>) -> [UInt8] {
    var c = Choices(bytes: input)
    let height = c.int(1...40), width = c.int(1...40)
    let layerCount = c.int(1...4)
    var channels = 3
    var layers: [String] = []
    var tensors: [(String, SafetensorsDType, [Int], [UInt8])] = []
    func floats(_ values: [Float]) -> [UInt8] {
        values.flatMap { v in (0..<4).map { UInt8(truncatingIfNeeded: v.bitPattern >> (8 * UInt32($0))) } }
    }
    func int32s(_ values: [Int32]) -> [UInt8] {
        values.flatMap { v in (0..<4).map { UInt8(truncatingIfNeeded: UInt32(bitPattern: v) >> (8 * UInt32($0))) } }
    }
    for i in 0..<layerCount {
        let divisors = (1...channels).filter { channels % $0 == 0 }
        let groups = c.pick(divisors)
        let outPerGroup = c.int(1...max(1, 40 / groups))
        let out = groups * outPerGroup
        let stride = c.int(1...2)
        layers.append("{\"in\":\(channels),\"out\":\(out),\"stride\":\(stride),\"groups\":\(groups)}")
        let weightCount = out * (channels / groups) * 9
        // Weight bytes as they come (-128 only when asked for: the loader refuses it), or a constant extreme for
        // the accumulation bounds.
        let fill = c.byte()
        let weights = (0..<weightCount).map { _ -> UInt8 in
            if fill % 4 == 3 { return fill % 8 == 3 ? 0x81 : 0x7F }
            let w = c.byte()
            return w == 0x80 && fill != 0x80 ? 0x81 : w
        }
        tensors.append(("conv.\(i).weight", .i8, [out, channels / groups, 3, 3], weights))
        tensors.append(("conv.\(i).weight_scale", .f32, [out], floats((0..<out).map { _ in c.scale() })))
        tensors.append(("conv.\(i).bias", .i32, [out], int32s((0..<out).map { _ in c.int32() })))
        tensors.append(("conv.\(i).output_scale", .f32, [1], floats([c.scale()])))
        channels = out
    }
    let classes = c.int(1...12)
    tensors.append(("input.scale", .f32, [1], floats([c.scale()])))
    tensors.append(("input.zero_point", .u8, [3], [c.byte(), c.byte(), c.byte()]))
    tensors.append(("pool.output_scale", .f32, [1], floats([c.scale()])))
    tensors.append(("fc.weight", .i8, [classes, channels], (0..<(classes * channels)).map { _ in c.byte() }))
    tensors.append(("fc.weight_scale", .f32, [classes], floats((0..<classes).map { _ in c.scale() })))
    tensors.append(("fc.bias", .i32, [classes], int32s((0..<classes).map { _ in c.int32() })))
    var metadata: [String: String] = [
        "format": "qarep.int8", "format_version": "1", "input_height": String(height), "input_width": String(width),
        "num_classes": String(classes), "layers": "[" + layers.joined(separator: ",") + "]",
        "mean": c.pick(["[0.485,0.456,0.406]", "[0,0,0]", "[1e38,-1e38,0]"]),
        "std": c.pick(["[0.229,0.224,0.225]", "[1,1,1]", "[1e-38,1e38,0.5]", "[0,1,1]"]),
        "channel_order": "RGB", "resize": "bilinear",
        "crop_ratio": c.pick(["0.875", "1", "1.0", "0.0000001", "0.5", "1.0000001", "0"]),
    ]
    if c.byte() % 2 == 0 { metadata["labels"] = "[" + (0..<classes).map { "\"l\($0)\"" }.joined(separator: ",") + "]" }
    var writer = SafetensorsWriter(metadata: metadata)
    for (name, dtype, shape, data) in tensors {
        do { try writer.add(name: name, dtype: dtype, shape: shape, data: data) } catch { fatalError("\(error)") }
    }
    return writer.serialized()
}

// MARK: - Seeds

/// With QAREP_FUZZ_WRITE_SEEDS=<dir>, writes small valid models (the project's own writer) into dir and exits.
@_cdecl("LLVMFuzzerInitialize")
public func fuzzLoaderInitialize(_ argc: UnsafeMutablePointer<Int32>?, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?) -> Int32 {
    guard let directory = getenv("QAREP_FUZZ_WRITE_SEEDS").map({ String(cString: $0) }) else { return 0 }
    let specs: [(String, Int, Int, [(out: Int, stride: Int, groups: Int)], Int, Bool)] = [
        ("one-layer", 4, 4, [(4, 1, 1)], 2, true),
        ("grouped", 9, 11, [(8, 2, 1), (16, 1, 2), (12, 2, 1)], 5, true),
        ("depthwise", 8, 8, [(6, 1, 3), (6, 2, 6)], 3, false),
        ("wide", 16, 16, [(32, 2, 1), (64, 2, 1), (64, 1, 4)], 10, true),
        ("tall", 33, 7, [(5, 2, 1), (7, 2, 1), (9, 2, 1), (11, 2, 1)], 4, false),
    ]
    var state: UInt64 = 0x1234_5678
    func next() -> UInt64 {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return state >> 11
    }
    for (name, height, width, layers, classes, withProducer) in specs {
        var convs: [QuantizedConvLayer] = []
        var channels = 3
        for layer in layers {
            let count = layer.out * (channels / layer.groups) * 9
            convs.append(QuantizedConvLayer(
                inChannels: channels, outChannels: layer.out, stride: layer.stride, groups: layer.groups,
                weight: (0..<count).map { _ in Int8(Int(next() % 255) - 127) },
                weightScale: (0..<layer.out).map { _ in Float(0.002 + Double(next() % 1000) * 1e-5) },
                bias: (0..<layer.out).map { _ in Int32(Int(next() % 20000) - 5000) }, outputScale: 0.05))
            channels = layer.out
        }
        let description = QuantizedModelDescription(
            inputHeight: height, inputWidth: width, preprocessing: Preprocessing(), inputScale: 1.0 / 255,
            inputZeroPoint: [124, 116, 104], convs: convs, poolOutputScale: 0.04, numClasses: classes,
            fcWeight: (0..<(classes * channels)).map { _ in Int8(Int(next() % 255) - 127) },
            fcWeightScale: (0..<classes).map { _ in Float(0.001 + Double(next() % 100) * 1e-4) },
            fcBias: (0..<classes).map { _ in Int32(Int(next() % 2000) - 1000) },
            labels: (0..<classes).map { "c\($0)" }, extraMetadata: withProducer ? ["producer": "fuzz-seed"] : [:])
        guard let bytes = try? description.serialized() else { fatalError("seed \(name) does not serialize") }
        guard let file = fopen("\(directory)/\(name).qarep", "wb") else { fatalError("cannot write into \(directory)") }
        _ = bytes.withUnsafeBufferPointer { fwrite($0.baseAddress, 1, $0.count, file) }
        fclose(file)
    }
    exit(0)
}

// What classify and evaluate share: the photo flags, the input list, the decode pipeline feeding the session
// batch by batch, per-file error records, progress and the closing summary.
import ArgumentParser
#if canImport(FoundationEssentials)
// FoundationEssentials, not Foundation: linked statically, Foundation's internationalization brings ICU's
// data (tens of MB) into the CLI. Glibc gives the math and stdio that Foundation re-exported.
import FoundationEssentials
import Glibc
#else
import Foundation
#endif
import QARep
import QARepOffline

/// Exit statuses of the commands that run many files (docs in README.md, "Classify a photo collection").
enum RunStatus {
    /// Some files could not be read or decoded; every other file has its result.
    static let someFilesFailed: Int32 = 2
}

struct PhotoFlags: ParsableArguments {
    @Flag(name: .customLong("exact-decode"),
          help: "Decode JPEG/WebP at full size (bit for bit the unscaled pipeline) instead of at the smallest DCT scale (1/8, 1/4, 1/2) that still covers the model's resize.")
    var exactDecode = false

    @Option(name: .customLong("decode-threads"), help: "Decoding threads (0 = automatic: as many as CPUs; the inference thread also decodes while it waits).")
    var decodeThreads: Int = 0

    @Flag(name: .customLong("fail-fast"), help: "Stop at the first file that cannot be read or decoded.")
    var failFast = false

    @Option(name: .customLong("files-from"), help: ArgumentHelp("Read image paths from FILE, one a line ('-' for stdin).", valueName: "FILE"))
    var filesFrom: String?

    func validate(runtime: RuntimeFlags) throws {
        guard decodeThreads >= 0 else { throw CLIError("--decode-threads must be >= 0") }
        guard runtime.batch >= 1 else { throw CLIError("--batch must be at least 1") }
        guard runtime.threads >= 0 else { throw CLIError("--threads must be >= 0") }
    }

    /// Paths from --files-from (as listed; folders expanded), then the arguments (folders expanded to their
    /// images). A path that does not exist stays in the list and becomes that file's error record.
    func inputFiles(arguments: [String]) throws -> [String] {
        var listed: [String] = []
        if let filesFrom {
            let text: String
            if filesFrom == "-" {
                text = String(decoding: readStandardInput(), as: UTF8.self)
            } else {
                guard let data = FileManager.default.contents(atPath: filesFrom) else { throw CLIError("cannot read \(filesFrom)") }
                text = String(decoding: data, as: UTF8.self)
            }
            listed = text.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" }).map {
                String($0.hasSuffix("\r") ? $0.dropLast() : $0)
            }.filter { !$0.isEmpty }
        }
        return try expandImagePaths(listed + arguments)
    }
}

/// All of standard input (--files-from -).
func readStandardInput() -> [UInt8] {
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(STDIN_FILENO, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { return bytes }
        bytes += chunk[0..<n]
    }
}

/// Files named on the command line, with folders expanded recursively to their images; other paths (files,
/// missing ones) are kept as given and fail, if they do, as that file's error.
func expandImagePaths(_ paths: [String]) throws -> [String] {
    var files: [String] = []
    for path in paths {
        if fileKind(atPath: path) == .directory {
            files += try listImageFiles(in: path)
        } else {
            files.append(path)
        }
    }
    return files
}

struct PhotoRunSummary {
    var images = 0
    var errors = 0
    var wallSeconds = 0.0
    var decodeSeconds = 0.0
    var inferenceSeconds = 0.0
    var waitSeconds = 0.0
    var sessionThreads = 0
    var decodeWorkers = 0
    var stoppedEarly = false

    var imagesPerSecond: Double { wallSeconds > 0 ? Double(images) / wallSeconds : 0 }

    var line: String {
        "\(images) images, \(errors) errors in " + cFormat("%.2f s: %.1f images/s; decode %.2f s", wallSeconds, imagesPerSecond, decodeSeconds)
            + " over \(decodeWorkers) threads " + cFormat("(%.1f ms/image), inference %.2f s", decodeSeconds / Double(max(images + errors, 1)) * 1000, inferenceSeconds)
            + " on \(sessionThreads) threads " + cFormat("(%.1f ms/image), %.2f s waiting for or helping with decoding",
                                                       inferenceSeconds / Double(max(images, 1)) * 1000, waitSeconds)
    }

    var json: [String: Any] {
        ["images": images, "errors": errors, "seconds": wallSeconds, "images_per_s": imagesPerSecond,
         "decode_seconds": decodeSeconds, "inference_seconds": inferenceSeconds, "wait_seconds": waitSeconds,
         "session_threads": sessionThreads, "decode_threads": decodeWorkers, "stopped_early": stoppedEarly]
    }
}

/// One file's result, in input order.
enum PhotoResult {
    /// `row`: the image's index in the session's last run (for topK), `pixels` its model input.
    case image(row: Int, pixels: ArraySlice<UInt8>, logits: ArraySlice<Float>)
    case failure(String)
}

/// Decodes `files` on worker threads and runs them through a session in batches of runtime.batch. `emit`
/// gets every file in input order, after its batch ran (a failed file: one error line on stderr first).
/// With failFast, stops at the first failure (after the files before it).
func runPhotoPipeline(files: [String], model: Model, runtime: RuntimeFlags, photo: PhotoFlags, progressLabel: String,
                      emit: (_ index: Int, _ result: PhotoResult, _ session: Session) throws -> Void) throws -> (PhotoRunSummary, Session) {
    let started = ContinuousClock.now
    let split = ThreadSplit.automatic(sessionThreads: runtime.threads, decodeWorkers: photo.decodeThreads, files: files.count)
    guard let kernel = Kernel(name: runtime.kernel) else {
        let known = ([Kernel.auto] + Kernel.all).map(\.name).joined(separator: ", ")
        throw CLIError("--kernel must be one of \(known), got '\(runtime.kernel)'")
    }
    let session = try Session(model: model, threads: split.sessionThreads, maxBatch: runtime.batch, kernel: kernel)
    let decoder = ModelInputDecoder(model: model, exact: photo.exactDecode)
    let pipeline = DecodePipeline(files: files, decoder: decoder, workers: split.decodeWorkers,
                                  window: 2 * runtime.batch + split.decodeWorkers)
    defer { pipeline.stop() }
    var summary = PhotoRunSummary(sessionThreads: session.threads, decodeWorkers: split.decodeWorkers)
    let progress = ProgressReporter(label: progressLabel, minimumTotalForLines: 50)
    let imageBytes = model.inputHeight * model.inputWidth * 3
    let classes = model.numClasses

    var pending: [(index: Int, outcome: DecodeOutcome)] = []
    var pixels: [UInt8] = []
    pixels.reserveCapacity(runtime.batch * imageBytes)
    var done = 0
    func flush() throws {
        let count = pixels.count / imageBytes
        var logits: [Float] = []
        if count > 0 {
            let clock = ContinuousClock.now
            logits = try session.run(images: pixels, batch: count)
            summary.inferenceSeconds += seconds(ContinuousClock.now - clock)
        }
        var row = 0
        for (index, outcome) in pending {
            switch outcome {
            case .image:
                try emit(index, .image(row: row, pixels: pixels[(row * imageBytes)..<((row + 1) * imageBytes)],
                                       logits: logits[(row * classes)..<((row + 1) * classes)]), session)
                row += 1
                summary.images += 1
            case .failure(let reason):
                try emit(index, .failure(reason), session)
                summary.errors += 1
            }
        }
        done += pending.count
        pending.removeAll(keepingCapacity: true)
        pixels.removeAll(keepingCapacity: true)
        progress.update(done: done, total: files.count)
    }

    while true {
        let waitStart = ContinuousClock.now
        guard let (index, outcome) = pipeline.next() else { break }
        summary.waitSeconds += seconds(ContinuousClock.now - waitStart)
        pending.append((index, outcome))
        switch outcome {
        case .image(let decoded):
            pixels += decoded.pixels
            if pixels.count / imageBytes == runtime.batch { try flush() }
        case .failure(let reason):
            printToStandardError("qarep: error: \(files[index]): \(reason)\n")
            if photo.failFast {
                try flush()
                summary.stoppedEarly = index + 1 < files.count
                pipeline.stop()
            }
        }
        if summary.stoppedEarly { break }
    }
    try flush()
    summary.decodeSeconds = pipeline.decodeSeconds
    summary.wallSeconds = seconds(ContinuousClock.now - started)
    return (summary, session)
}

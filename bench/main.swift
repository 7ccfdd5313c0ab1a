// bench: latency and throughput of a QARep model, run through the public C API exactly as a C program would.
import CQARepAPI
import CQARepKernels
import Foundation
import QARep
import RepVGGArchitectures

func printError(_ message: String) {
    FileHandle.standardError.write(Data("bench: \(message)\n".utf8))
}

struct BenchFailure: Error, CustomStringConvertible {
    var description: String
}

/// Throws the library's own message when a C API call fails.
func check(_ status: qarep_status, _ call: String) throws {
    guard status != QAREP_OK else { return }
    let summary = String(cString: qarep_status_string(status))
    let message = String(cString: qarep_last_error_message())
    throw BenchFailure(description: "\(call) failed: \(summary): \(message)")
}

func monotonicSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) * 1e-9
}

func peakResidentMegabytes() -> Double {
    var usage = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    return Double(usage.ru_maxrss) / 1024  // Linux reports kilobytes
}

/// How long the peak measurement runs in all: enough short bursts for their median rate (the clock the core
/// holds most of the time, see Sources/CQARepKernels/peak/peak.c) to be stable.
let peakMeasurementSeconds = 0.5

/// GMAC/s of one core with the path's instruction mix.
func peakGMACs(of kernel: Kernel, seconds: Double) -> Double {
    var path = QK_PATH_SCALAR
    guard qk_path_from_name(kernel.name, &path) == QK_OK else { return 0 }
    return qk_measure_peak_gmacs(path, seconds)
}

/// The peak measured in slices between the timed runs, so that peak and runs see the same contention. On a
/// VM whose host core is shared, the peak read once moved by 1.5x between seconds (docs/performance.md, "Peak").
struct InterleavedPeak {
    let kernel: Kernel
    let sliceSeconds: Double
    private(set) var sliceRates: [Double] = []

    init(kernel: Kernel, slices: Int) {
        self.kernel = kernel
        sliceSeconds = min(max(peakMeasurementSeconds / Double(max(slices, 1)), 0.01), peakMeasurementSeconds)
    }

    mutating func sample() { sliceRates.append(peakGMACs(of: kernel, seconds: sliceSeconds)) }

    /// The median slice, or one measurement of the full length when no run was sampled.
    var perCore: Double { sliceRates.isEmpty ? peakGMACs(of: kernel, seconds: peakMeasurementSeconds) : median(sliceRates) }
}

func format(_ value: Double, _ decimals: Int = 1) -> String { String(format: "%.\(decimals)f", value) }

func runBenchmark(_ options: BenchOptions) throws {
    if options.peak {
        let kernel = try Kernel(rawValue: options.kernel ?? Kernel.auto.name).resolved()
        let perCore = peakGMACs(of: kernel, seconds: 1.0)
        let mix = kernel.peakInstructionMix ?? "?"
        if options.json {
            print("{\"peak_gmacs_per_core\": \(format(perCore, 2)), \"threads\": \(options.threads), \"peak_gmacs\": \(format(perCore * Double(options.threads), 2)), \"kernel\": \(jsonString(kernel.name)), \"peak_mix\": \(jsonString(mix))}")
        } else {
            print("int8 peak: \(format(perCore)) GMAC/s per core (\(kernel.name): \(mix)), x \(options.threads) threads = \(format(perCore * Double(options.threads))) GMAC/s")
        }
        return
    }

    // The model: a file, or a synthetic one serialized and loaded from memory (so loading is measured too).
    var description: QuantizedModelDescription?
    var modelLabel: String
    var model: OpaquePointer?
    var loadSeconds: Double
    if let path = options.modelPath {
        modelLabel = path
        let start = monotonicSeconds()
        try check(qarep_model_load_file_with_flags(path, options.loadFlags, &model), "qarep_model_load_file(\(path))")
        loadSeconds = monotonicSeconds() - start
    } else {
        guard let architecture = options.architecture else { throw BenchFailure(description: "no architecture") }
        let synthetic = SyntheticModel.make(architecture: architecture, inputHeight: options.size,
                                            inputWidth: options.size, seed: options.seed)
        description = synthetic
        modelLabel = "RepVGG-\(architecture.name) synthetic (seed \(options.seed))"
        let bytes = try synthetic.serialized()
        if let savePath = options.savePath {
            guard FileManager.default.createFile(atPath: savePath, contents: Data(bytes)) else {
                throw BenchFailure(description: "cannot write \(savePath)")
            }
        }
        let start = monotonicSeconds()
        try bytes.withUnsafeBytes { try check(qarep_model_load_memory_with_flags($0.baseAddress, $0.count, options.loadFlags, &model), "qarep_model_load_memory")  }
        loadSeconds = monotonicSeconds() - start
    }
    defer { qarep_model_release(model) }

    var info = qarep_model_info()
    try check(qarep_model_get_info(model, &info), "qarep_model_get_info")
    var packedBytes = 0
    try check(qarep_model_packed_bytes(model, &packedBytes), "qarep_model_packed_bytes")

    var sessionOptions = qarep_session_options_default()
    sessionOptions.num_threads = Int32(options.threads)
    sessionOptions.max_batch = Int32(options.batch)
    if let kernel = options.kernel { try check(qarep_kernel_from_name(kernel, &sessionOptions.kernel), "qarep_kernel_from_name") }
    var session: OpaquePointer?
    try check(qarep_session_create(model, &sessionOptions, &session), "qarep_session_create")
    defer { qarep_session_destroy(session) }
    let kernelName = String(cString: qarep_kernel_name(qarep_session_kernel(session)))

    var random = SeededGenerator(seed: options.seed &+ 0x1234)
    let imageBytes = Int(info.input_height) * Int(info.input_width) * Int(info.input_channels)
    let images = random.bytes(count: imageBytes * options.batch)

    func runOnce() throws {
        try images.withUnsafeBufferPointer {
            try check(qarep_session_run_u8(session, $0.baseAddress, $0.count, Int32(options.batch)), "qarep_session_run_u8")
        }
    }
    let busy = try options.busyCore.map { try BusyCore(cpu: $0) }
    qk_testing_force_rescue(options.rescue ? 1 : 0)
    let warmupStart = monotonicSeconds()
    var warmupRuns = 0
    while warmupRuns < options.warmup || monotonicSeconds() - warmupStart < Double(options.warmupMilliseconds) / 1e3 {
        try runOnce()
        warmupRuns += 1
    }
    var peak = InterleavedPeak(kernel: Kernel(rawValue: kernelName), slices: options.iterations * (options.layers ? 2 : 1))
    var samples: [Double] = []
    samples.reserveCapacity(options.iterations)
    for _ in 0..<options.iterations {
        let start = monotonicSeconds()
        try runOnce()
        samples.append(monotonicSeconds() - start)
        // With a core kept busy, only the layer runs (after it stops) sample the peak: one condition for all slices.
        if busy == nil { peak.sample() }
    }
    busy?.stop()

    let medianSeconds = median(samples)
    let p90Seconds = percentile(samples, 0.9)
    let imagesPerSecond = Double(options.batch) / medianSeconds
    let gmacs = info.macs_per_image * imagesPerSecond / 1e9

    var layerTimings: [LayerTiming] = []
    if options.layers {
        // The same bytes the C API loaded, through the Swift API, whose sessions can time each layer.
        let swiftModel = try description.map { try Model(description: $0, packing: options.packing) }
            ?? Model(contentsOfFile: options.modelPath ?? "", packing: options.packing)
        layerTimings = try profileLayers(model: swiftModel, kernel: Kernel(name: kernelName) ?? .auto,
                                         threads: options.threads, batch: options.batch, images: images,
                                         warmup: options.warmup, iterations: options.iterations) { peak.sample() }
    }
    // The yardstick is the peak of the session's own path: its instruction mix, not the CPU's best.
    let peakPerCore = peak.perCore
    let peakFraction = gmacs / (peakPerCore * Double(options.threads))
    let rss = peakResidentMegabytes()

    if options.json {
        var fields: [(String, String)] = [
            ("model", jsonString(modelLabel)),
            ("arch", options.modelPath == nil ? jsonString(options.architecture?.name ?? "") : "null"),
            ("input", "[\(info.input_height), \(info.input_width)]"),
            ("batch", "\(options.batch)"), ("threads", "\(options.threads)"), ("kernel", jsonString(kernelName)),
            ("busy_core", options.busyCore.map(String.init) ?? "null"),
            ("rescue", options.rescue ? "true" : "false"),
            ("iterations", "\(options.iterations)"),
            ("macs_per_image", format(info.macs_per_image, 0)),
            ("median_ms", format(medianSeconds * 1e3, 3)), ("p90_ms", format(p90Seconds * 1e3, 3)),
            ("images_per_s", format(imagesPerSecond, 2)), ("gmacs", format(gmacs, 2)),
            ("peak_gmacs_per_core", format(peakPerCore, 2)), ("peak_fraction", format(peakFraction, 4)),
            ("load_ms", format(loadSeconds * 1e3, 3)), ("peak_rss_mb", format(rss, 1)),
            ("packed_weight_bytes", "\(packedBytes)"),
            // Every timed run, so a caller interleaving runtimes (bench/compare-peers) can pool samples.
            ("samples_ms", "[" + samples.map { format($0 * 1e3, 4) }.joined(separator: ", ") + "]"),
        ]
        if options.layers {
            let rows = layerTimings.map { layer -> String in
                let layerGmacs = layer.macsPerImage * Double(options.batch) / layer.medianSeconds / 1e9
                return "{\"name\": \(jsonString(layer.name)), \"algorithm\": \(jsonString(layer.algorithm)), "
                    + "\"winograd_bytes\": \(layer.winogradBytes), \"median_ms\": \(format(layer.medianSeconds * 1e3, 4)), "
                    + "\"gmacs\": \(format(layerGmacs, 2)), "
                    + "\"peak_fraction\": \(format(layerGmacs / (peakPerCore * Double(options.threads)), 4))}"
            }
            fields.append(("layers", "[" + rows.joined(separator: ", ") + "]"))
        }
        print("{" + fields.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ") + "}")
        return
    }

    print("model       \(modelLabel), \(info.input_width)x\(info.input_height), \(info.num_conv_layers) conv layers, \(format(info.macs_per_image / 1e9, 3)) GMAC/image")
    print("weights     \(format(Double(packedBytes) / 1048576, 1)) MiB packed\(options.loadFlags == 0 ? "" : options.loadFlags == QAREP_LOAD_NO_WINOGRAD ? " (--winograd off)" : " (--winograd no-4x4)")")
    print("run         kernel \(kernelName), \(options.threads) thread(s), batch \(options.batch), \(options.iterations) runs after \(options.warmup) warm-up\(options.busyCore.map { ", CPU \($0) kept busy" } ?? "")\(options.rescue ? ", rescue mode" : "")")
    print("load        \(format(loadSeconds * 1e3, 2)) ms")
    print("latency     median \(format(medianSeconds * 1e3, 3)) ms, p90 \(format(p90Seconds * 1e3, 3)) ms per batch")
    print("throughput  \(format(imagesPerSecond)) images/s, \(format(gmacs)) GMAC/s")
    print("peak        \(format(100 * peakFraction))% of int8 peak (\(format(peakPerCore)) GMAC/s per core x \(options.threads))")
    print("peak RSS    \(format(rss)) MB\(description != nil ? " (includes building the synthetic model; use --model for the runtime alone)" : "")")
    if options.layers { printLayerTable(layerTimings, batch: options.batch, peak: peakPerCore * Double(options.threads)) }
}

func printLayerTable(_ layers: [LayerTiming], batch: Int, peak: Double) {
    print("")
    let header = ["layer", "algorithm", "ms", "GMAC/s", "% peak", "% time"]
    let total = layers.reduce(0) { $0 + $1.medianSeconds }
    var rows: [[String]] = []
    for layer in layers {
        let layerGmacs = layer.macsPerImage * Double(batch) / layer.medianSeconds / 1e9
        rows.append([
            layer.name, layer.algorithm, format(layer.medianSeconds * 1e3, 3), format(layerGmacs), format(100 * layerGmacs / peak),
            format(100 * layer.medianSeconds / total),
        ])
    }
    let totalMacs = layers.reduce(0) { $0 + $1.macsPerImage } * Double(batch)
    rows.append(["sum of layers", "", format(total * 1e3, 3), format(totalMacs / total / 1e9), format(100 * totalMacs / total / 1e9 / peak), "100"])
    let widths = header.indices.map { column in ([header] + rows).map { $0[column].count }.max() ?? 0 }
    for row in [header] + rows {
        let cells = row.enumerated().map { column, cell in
            column == 0 ? cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
                : String(repeating: " ", count: widths[column] - cell.count) + cell
        }
        print(cells.joined(separator: "  "))
    }
    let winograd = layers.filter { $0.algorithm.hasPrefix("winograd") }
    print("winograd: \(winograd.count) layers, \(format(Double(winograd.reduce(0) { $0 + $1.winogradBytes }) / 1_048_576, 2)) MiB of transformed weights")
}

func jsonString(_ text: String) -> String {
    var escaped = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": escaped += "\\\""
        case "\\": escaped += "\\\\"
        case "\n": escaped += "\\n"
        case _ where scalar.value < 0x20: escaped += String(format: "\\u%04x", scalar.value)
        default: escaped.unicodeScalars.append(scalar)
        }
    }
    return escaped + "\""
}

do {
    guard let options = try BenchOptions.parse(Array(CommandLine.arguments.dropFirst())) else {
        print(BenchOptions.usage)
        exit(0)
    }
    try runBenchmark(options)
} catch {
    printError("\(error)")
    exit(1)
}

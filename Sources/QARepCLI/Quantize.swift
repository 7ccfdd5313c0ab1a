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

struct Quantize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Calibrate a checkpoint on a folder of images (or a .npy array) and write the INT8 model.")

    @Argument(help: "Training or fused checkpoint (.safetensors, .pth, .pt).")
    var checkpoint: String

    @Option(help: "Calibration images: a folder of JPEG/PNG/WebP (recursive) or a float32 NCHW .npy file.")
    var calib: String

    @Option(help: "Activation calibration: minmax, percentile, mse, entropy.")
    var method: String = "mse"

    @Option(help: "Percentile for --method percentile.")
    var percentile: Double = 99.99

    @Option(name: .customLong("weight-method"), help: "Weight scales per output channel: maxabs or mse.")
    var weightMethod: String = "maxabs"

    @Flag(name: .customLong("bias-correction"), inversion: .prefixedNo,
          help: "Empirical bias correction: fold the INT8-vs-FP32 mean output shift of every layer into its bias.")
    var biasCorrection = CalibrationOptions().biasCorrection

    @Flag(name: .customLong("equalization"), inversion: .prefixedNo,
          help: "Cross-layer equalization: rescale each conv's output channels against the next layer's inputs (exact in FP32).")
    var equalization = CalibrationOptions().equalization

    @Flag(name: .customLong("clipping-search"), inversion: .prefixedNo,
          help: "Per layer, the output threshold minimizing that layer's output error in the INT8 network, given the quantized layers before it.")
    var clippingSearch = CalibrationOptions().clippingSearch

    @Option(name: .customLong("weight-rounding"), help: "Weight rounding: nearest, or gptq (each layer's rounding errors compensated on its INT8 input statistics).")
    var weightRounding: String = CalibrationOptions().weightRounding.rawValue

    @Option(help: "Use at most this many calibration images (evenly spaced over the folder).")
    var count: Int?

    @Option(help: "Fraction of the calibration images held aside to measure INT8-vs-FP32 agreement.")
    var holdout: Double = 0.2

    @Option(help: "Threads for the FP32 forward, bias correction and the INT8 check (0 = all CPUs).")
    var threads: Int = 0

    @Flag(name: .customLong("skip-bad"), help: "Skip and count undecodable images instead of failing.")
    var skipBad = false

    @Flag(name: .customLong("exact-decode"),
          help: "Decode calibration JPEG/WebP at full size; by default they are decoded as classify decodes them (scaled where the model needs fewer pixels).")
    var exactDecode = false

    @Option(help: "Write the calibration report (JSON) here; default MODEL.report.json.")
    var report: String?

    @Option(name: .shortAndLong, help: "Output INT8 model file.")
    var output: String

    @OptionGroup var importFlags: ImportFlags

    func run() throws {
        try reportingErrors {
            let importOptions = try importFlags.importOptions()
            guard let activation = ActivationCalibrationMethod(rawValue: method) else {
                throw CLIError("--method must be minmax, percentile, mse or entropy, got '\(method)'")
            }
            guard let weights = WeightCalibrationMethod(rawValue: weightMethod) else {
                throw CLIError("--weight-method must be maxabs or mse, got '\(weightMethod)'")
            }
            guard let rounding = WeightRounding(rawValue: weightRounding) else {
                throw CLIError("--weight-rounding must be nearest or gptq, got '\(weightRounding)'")
            }
            let network = try importCheckpoint(path: checkpoint, options: importOptions)
            let data = try CalibrationData.load(path: calib, inputHeight: network.inputHeight, inputWidth: network.inputWidth,
                                                preprocessing: network.preprocessing, limit: count, skipBad: skipBad,
                                                exactDecode: exactDecode)
            for skipped in data.skipped { printToStandardError("qarep: skipped \(skipped)\n") }
            var options = CalibrationOptions()
            options.method = activation
            options.percentile = percentile
            options.weightMethod = weights
            options.biasCorrection = biasCorrection
            options.equalization = equalization
            options.clippingSearch = clippingSearch
            options.weightRounding = rounding
            options.holdoutFraction = holdout
            options.threads = threads
            options.skipBadImages = skipBad
            options.producer = "qarep quantize (qarep \(QARepCommand.configuration.version))"
            let progress = ProgressReporter(label: "calibrating")
            let (model, calibrationReport) = try calibrateAndQuantize(network: network, calibration: data, options: options,
                                                                      progress: { progress.update(done: $0, total: $1) })
            try writeFile(try model.serialized(), to: output)
            let reportPath = report ?? output + ".report.json"
            try writeFile(Array(try calibrationReport.jsonString().utf8), to: reportPath)
            var summary = "wrote \(output) (\(model.convs.count) conv layers, \(model.numClasses) classes, method \(method))"
            if let holdout = calibrationReport.holdout {
                summary += cFormat("; hold-out %ld images: INT8-vs-FP32 top-1 agreement %.2f%%, mean logit cosine %.5f",
                                   holdout.images, holdout.top1Agreement * 100, holdout.meanLogitCosine)
            }
            print(summary)
            print("report: \(reportPath)")
        }
    }
}

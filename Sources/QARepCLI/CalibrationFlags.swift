// The calibration settings quantize and analyze share.
import ArgumentParser
import QARepOffline

struct CalibrationFlags: ParsableArguments {
    @Option(help: "Activation calibration: minmax, percentile, mse, entropy.")
    var method: String = CalibrationOptions().method.rawValue

    @Option(help: "Percentile for --method percentile.")
    var percentile: Double = 99.99

    @Option(name: .customLong("weight-method"), help: "Weight scales per output channel: maxabs or mse.")
    var weightMethod: String = CalibrationOptions().weightMethod.rawValue

    @Flag(name: .customLong("bias-correction"), inversion: .prefixedNo,
          help: "Empirical bias correction: fold the INT8-vs-FP32 mean output shift of every layer into its bias.")
    var biasCorrection = CalibrationOptions().biasCorrection

    @Flag(name: .customLong("equalization"), inversion: .prefixedNo,
          help: "Cross-layer equalization: rescale each conv's output channels against the next layer's inputs (exact in FP32).")
    var equalization = CalibrationOptions().equalization

    @Option(name: .customLong("weight-rounding"),
            help: "Weight rounding: gptq (each layer's rounding errors compensated on its INT8 input statistics) or nearest.")
    var weightRounding: String = CalibrationOptions().weightRounding.rawValue

    @Flag(name: .customLong("clipping-search"), inversion: .prefixedNo,
          help: "Per layer, the output threshold minimizing that layer's output error in the INT8 network, given the quantized layers before it.")
    var clippingSearch = CalibrationOptions().clippingSearch

    @Option(help: "Use at most this many calibration images (evenly spaced over the folder).")
    var count: Int?

    @Option(help: "Fraction of the calibration images held aside to measure INT8-vs-FP32 agreement.")
    var holdout: Double = CalibrationOptions().holdoutFraction

    @Option(help: "Threads for the FP32 forward, GPTQ, bias correction and the INT8 check (0 = all CPUs); the model written is the same for any count.")
    var threads: Int = 0

    @Flag(name: .customLong("skip-bad"), help: "Skip and count undecodable images instead of failing.")
    var skipBad = false

    func options() throws -> CalibrationOptions {
        var options = CalibrationOptions()
        guard let activation = ActivationCalibrationMethod(rawValue: method) else {
            throw CLIError("--method must be minmax, percentile, mse or entropy, got '\(method)'")
        }
        guard let weights = WeightCalibrationMethod(rawValue: weightMethod) else {
            throw CLIError("--weight-method must be maxabs or mse, got '\(weightMethod)'")
        }
        guard let rounding = WeightRounding(rawValue: weightRounding) else {
            throw CLIError("--weight-rounding must be nearest or gptq, got '\(weightRounding)'")
        }
        guard holdout >= 0, holdout < 1 else { throw CLIError("--holdout must be in [0, 1)") }
        guard threads >= 0 else { throw CLIError("--threads must be >= 0") }
        guard percentile > 0, percentile <= 100 else { throw CLIError("--percentile must be in (0, 100]") }
        if let count, count < 1 { throw CLIError("--count must be at least 1") }
        options.method = activation
        options.percentile = percentile
        options.weightMethod = weights
        options.biasCorrection = biasCorrection
        options.equalization = equalization
        options.weightRounding = rounding
        options.clippingSearch = clippingSearch
        options.holdoutFraction = holdout
        options.threads = threads
        options.skipBadImages = skipBad
        return options
    }
}

/// Warns when a folder's largest image is at most half the model input's shorter side: every image is upscaled,
/// which is what a checkpoint trained on small images gets when imported at the default --input-size 224.
func warnIfUpscaled(_ data: CalibrationData, folder: String) {
    guard data.largestSourceSide > 0, data.largestSourceSide * 2 <= min(data.inputHeight, data.inputWidth) else { return }
    printToStandardError("qarep: warning: the largest image in \(folder) is \(data.largestSourceSide) px and the model input \(data.inputWidth)x\(data.inputHeight), so every image is upscaled; a model trained at that size needs --input-size (and its --mean, --std, --crop-ratio)\n")
}

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

    @OptionGroup var calibration: CalibrationFlags

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
            letIdleOpenMPThreadsSleep()
            let importOptions = try importFlags.importOptions()
            var options = try calibration.options()
            let network = try importCheckpoint(path: checkpoint, options: importOptions)
            let data = try CalibrationData.load(path: calib, inputHeight: network.inputHeight, inputWidth: network.inputWidth,
                                                preprocessing: network.preprocessing, limit: calibration.count,
                                                skipBad: calibration.skipBad,
                                                exactDecode: exactDecode)
            for skipped in data.skipped { printToStandardError("qarep: skipped \(skipped)\n") }
            warnIfUpscaled(data, folder: calib)
            options.producer = "qarep quantize (qarep \(QARepCommand.configuration.version))"
            let progress = ProgressReporter(label: "calibrating")
            let (model, calibrationReport) = try calibrateAndQuantize(network: network, calibration: data, options: options,
                                                                      progress: { progress.update(done: $0, total: $1) })
            try writeFile(try model.serialized(), to: output)
            let reportPath = report ?? output + ".report.json"
            try writeFile(Array(try calibrationReport.jsonString().utf8), to: reportPath)
            var summary = "wrote \(output) (\(model.convs.count) conv layers, \(model.numClasses) classes, method \(calibration.method))"
            if let holdout = calibrationReport.holdout {
                summary += cFormat("; hold-out %ld images: INT8-vs-FP32 top-1 agreement %.2f%%, mean logit cosine %.5f",
                                   holdout.images, holdout.top1Agreement * 100, holdout.meanLogitCosine)
            }
            print(summary)
            print("report: \(reportPath)")
        }
    }
}

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

struct Analyze: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Why a checkpoint quantizes the way it does: an HTML report with per-layer charts (and JSON).",
        discussion: "Calibrates as quantize does, once per method, and reports per layer: the fused weights' distribution and the branch BatchNorm gains (C1), activation histograms with every method's threshold (C2), the accuracy impact of quantizing that layer alone, and the error the fully INT8 network accumulates layer by layer, with conclusions in words. With --images (an ImageFolder tree), FP32 and INT8 top-1 and agreement for every method.")

    @Argument(help: "Training or fused checkpoint (.safetensors, .pth, .pt).")
    var checkpoint: String

    @Option(help: "Calibration images: a folder of JPEG/PNG/WebP (recursive) or a float32 NCHW .npy file.")
    var calib: String

    @Option(help: "Labelled images (ImageFolder: one sub-folder per class, sorted names = label indices) for top-1 and agreement.")
    var images: String?

    @Option(help: "Use at most this many of the labelled images (evenly spaced).")
    var limit: Int?

    @Option(help: "Methods compared side by side, comma-separated (default all four); --method is the one analyzed per layer.")
    var compare: String = ActivationCalibrationMethod.allCases.map(\.rawValue).joined(separator: ",")

    @OptionGroup var calibration: CalibrationFlags

    @Option(name: .shortAndLong, help: "The HTML report; default CHECKPOINT.report.html.")
    var output: String?

    @Option(help: "Also write the report's numbers as JSON here.")
    var json: String?

    @OptionGroup var importFlags: ImportFlags

    func run() throws {
        try reportingErrors {
            letIdleOpenMPThreadsSleep()
            let importOptions = try importFlags.importOptions()
            var options = AnalysisOptions()
            options.calibration = try calibration.options()
            let compared = compare.split(separator: ",").map { String($0.trimmedWhitespace) }
            let methods = compared.compactMap(ActivationCalibrationMethod.init(rawValue:))
            guard !methods.isEmpty, methods.count == compared.count else {
                throw CLIError("--compare must list methods among minmax, percentile, mse, entropy, got '\(compare)'")
            }
            guard calibration.holdout > 0 else { throw CLIError("--holdout must be above 0: the per-layer figures use the held-aside images") }
            if let limit, limit < 1 { throw CLIError("--limit must be at least 1") }
            let htmlPath = output ?? checkpoint + ".report.html"
            // The labelled folder is listed before the checkpoint is imported and the calibration images are
            // decoded, so that a wrong path fails at once rather than after them.
            let labelled = try images.map { folder in
                let (files, labels) = try imageFolder(folder)
                guard !files.isEmpty else { throw CLIError("\(folder): no images in class sub-folders") }
                return (files: files, labels: labels)
            }
            let (network, importReport) = try importCheckpointWithReport(path: checkpoint, options: importOptions)
            let data = try CalibrationData.load(path: calib, inputHeight: network.inputHeight, inputWidth: network.inputWidth,
                                                preprocessing: network.preprocessing, limit: calibration.count,
                                                skipBad: calibration.skipBad)
            for skipped in data.skipped { printToStandardError("qarep: skipped \(skipped)\n") }
            warnIfUpscaled(data, folder: calib)
            var evaluation: LabelledImages? = nil
            if let images, let labelled {
                var labelOf: [String: Int] = [:]
                for (file, label) in zip(labelled.files, labelled.labels) { labelOf[file] = label }
                let loaded = try CalibrationData.load(path: images, inputHeight: network.inputHeight, inputWidth: network.inputWidth,
                                                      preprocessing: network.preprocessing, limit: limit, skipBad: calibration.skipBad)
                for skipped in loaded.skipped { printToStandardError("qarep: skipped \(skipped)\n") }
                // Files outside the class sub-folders have no label: left out, as evaluate leaves them out.
                let kept = loaded.names.indices.filter { labelOf[loaded.names[$0]] != nil }
                guard !kept.isEmpty else { throw CLIError("\(images): no images in class sub-folders") }
                let subset = kept.count == loaded.count ? loaded : try loaded.subset(kept)
                evaluation = LabelledImages(data: subset, labels: subset.names.map { labelOf[$0] ?? 0 })
            }
            options.methods = methods
            var reporter: (label: String, progress: ProgressReporter)? = nil
            let report = try analyzeQuantization(
                network: network, importReport: importReport, calibration: data, evaluation: evaluation, options: options,
                checkpoint: URL(fileURLWithPath: checkpoint).lastPathComponent) { label, done, total in
                if reporter?.label != label { reporter = (label, ProgressReporter(label: label)) }
                reporter?.progress.update(done: done, total: total)
            }
            try writeFile(Array(report.html().utf8), to: htmlPath)
            if let json { try writeFile(Array(try report.jsonString().utf8), to: json) }
            for line in report.conclusions { print("- " + line) }
            print("report: \(htmlPath)" + (json.map { ", \($0)" } ?? "") + cFormat(" (%.1f s)", report.seconds))
        }
    }
}

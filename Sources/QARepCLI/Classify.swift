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

struct Classify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Classify images with an INT8 model.",
        discussion: """
            Files are decoded on worker threads ahead of inference (JPEG and WebP at the smallest scale that still \
            covers the model's resize, unless --exact-decode; QAREP_DECODE_MARGIN=2 keeps twice the resize, closer \
            to full-size decoding for more decode time) and printed in input order. A file that cannot be read \
            or decoded gives one error line on stderr and an error record in the output, and the run goes on. \
            Exit status: 0 if every file was classified, 2 if some files failed (the others have their results), \
            1 if nothing could run (bad model, bad arguments, no input).
            """)

    @Argument(help: "INT8 model file.")
    var model: String

    @Argument(help: "Image files or folders (JPEG/PNG/WebP).")
    var images: [String] = []

    @Option(help: "How many classes to print per image.")
    var top: Int = 5

    @Flag(help: "Print one JSON object at the end.")
    var json = false

    @Flag(help: "Print one JSON object per image (a line each) as it finishes.")
    var jsonl = false

    @OptionGroup var runtime: RuntimeFlags

    @OptionGroup var photo: PhotoFlags

    func run() throws {
        var summary = PhotoRunSummary()
        try reportingErrors {
            guard top >= 1 else { throw CLIError("--top must be at least 1") }
            guard !(json && jsonl) else { throw CLIError("--json and --jsonl exclude each other") }
            try photo.validate(runtime: runtime)
            letIdleOpenMPThreadsSleep()
            let loaded = try runtime.loadModel(model)
            let files = try photo.inputFiles(arguments: images)
            guard !files.isEmpty else { throw CLIError("no images given (arguments, folders or --files-from)") }
            var results: [[String: Any]] = []
            let (ran, session) = try runPhotoPipeline(files: files, model: loaded, runtime: runtime, photo: photo,
                                                      progressLabel: "classifying") { index, result, session in
                let file = files[index]
                var record: [String: Any] = ["image": file]
                var text = file + "\n"
                switch result {
                case .image(let row, _, _):
                    let predictions = try session.topK(imageIndex: row, k: top)
                    record["top"] = predictions.map {
                        ["class": $0.classIndex, "label": $0.label, "probability": Double($0.probability)] as [String: Any]
                    }
                    for p in predictions { text += cFormat("  %6.2f%%  %4ld  ", Double(p.probability * 100), p.classIndex) + p.label + "\n" }
                case .failure(let reason):
                    record["error"] = reason
                    text += "  error: \(reason)\n"
                }
                if json {
                    results.append(record)
                } else if jsonl {
                    writeToStandardOutput(try jsonLine(record) + "\n")
                } else {
                    writeToStandardOutput(text)
                }
            }
            summary = ran
            printToStandardError("qarep: \(summary.line)\n")
            if json {
                try printJSON(["model": model, "kernel": session.kernel.name, "results": results, "summary": summary.json])
            }
        }
        if summary.errors > 0 { throw ExitCode(RunStatus.someFilesFailed) }
    }
}

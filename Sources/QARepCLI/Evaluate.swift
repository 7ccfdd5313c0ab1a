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

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Top-1/top-5 accuracy of an INT8 model on an ImageFolder tree (one sub-folder per class, sorted names = label indices).",
        discussion: "With --fp32 CHECKPOINT, also the FP32 accuracy and the INT8-vs-FP32 top-1 agreement. The FP32 network sees the same pixels: its input size and preprocessing are taken from the INT8 model.")

    @Argument(help: "INT8 model file.")
    var model: String

    @Option(help: "ImageFolder root.")
    var images: String

    @Option(help: "FP32 checkpoint (training or fused) to compare with.")
    var fp32: String?

    @Option(help: "Evaluate at most this many images (evenly spaced).")
    var limit: Int?

    @Flag(help: "Print one JSON object.")
    var json = false

    @OptionGroup var runtime: RuntimeFlags

    @OptionGroup var importFlags: ImportFlags

    func run() throws {
        try reportingErrors {
            let loaded = try Model(contentsOfFile: model)
            let session = try runtime.session(for: loaded)
            let (files, labels) = try imageFolder(images)
            guard !files.isEmpty else { throw CLIError("\(images): no images in class sub-folders") }
            var selected = Array(files.indices)
            if let limit {
                guard limit >= 1 else { throw CLIError("--limit must be at least 1") }
                if limit < files.count { selected = (0..<limit).map { $0 * files.count / limit } }
            }
            let forward: FP32Forward? = try fp32.map { path in
                var options = try importFlags.importOptions()
                options.inputHeight = loaded.inputHeight
                options.inputWidth = loaded.inputWidth
                options.preprocessing = loaded.preprocessing
                options.labels = nil
                let network = try importCheckpoint(path: path, options: options)
                guard network.numClasses == loaded.numClasses else {
                    throw CLIError("the FP32 checkpoint has \(network.numClasses) classes, the INT8 model \(loaded.numClasses)")
                }
                return try FP32Forward(network: network)
            }

            var top1 = 0, top5 = 0, fp32Top1 = 0, fp32Top5 = 0, agree = 0
            var int8Seconds = 0.0
            let progress = ProgressReporter(label: "evaluating")
            let classes = loaded.numClasses
            for start in stride(from: 0, to: selected.count, by: runtime.batch) {
                let chunk = Array(selected[start..<min(start + runtime.batch, selected.count)])
                let pixels = try chunk.flatMap { try loadModelInput(files[$0], model: loaded) }
                let clock = ContinuousClock.now
                let logits = try session.run(images: pixels, batch: chunk.count)
                int8Seconds += seconds(ContinuousClock.now - clock)
                let reference = try forward.map { f in try pixels.withUnsafeBufferPointer { try f.logits(pixels: $0, count: chunk.count) } }
                for (row, index) in chunk.enumerated() {
                    let truth = labels[index]
                    let ranked = rank(logits[(row * classes)..<((row + 1) * classes)])
                    if ranked.first == truth { top1 += 1 }
                    if ranked.prefix(5).contains(truth) { top5 += 1 }
                    if let reference {
                        let fpRanked = rank(reference[(row * classes)..<((row + 1) * classes)])
                        if fpRanked.first == truth { fp32Top1 += 1 }
                        if fpRanked.prefix(5).contains(truth) { fp32Top5 += 1 }
                        if fpRanked.first == ranked.first { agree += 1 }
                    }
                }
                progress.update(done: start + chunk.count, total: selected.count)
            }
            let n = Double(selected.count)
            var result: [String: Any] = [
                "images": selected.count, "top1": Double(top1) / n, "top5": Double(top5) / n,
                "images_per_s": int8Seconds > 0 ? n / int8Seconds : 0, "kernel": session.kernel.name,
                "threads": session.threads, "batch": runtime.batch,
            ]
            if forward != nil {
                result["fp32_top1"] = Double(fp32Top1) / n
                result["fp32_top5"] = Double(fp32Top5) / n
                result["agreement"] = Double(agree) / n
            }
            if json {
                try printJSON(result)
            } else {
                print(cFormat("%ld images: INT8 top-1 %.2f%%, top-5 %.2f%%, %.0f images/s ", selected.count,
                              Double(top1) / n * 100, Double(top5) / n * 100, result["images_per_s"] as? Double ?? 0)
                      + "(\(session.kernel.name), \(session.threads) threads, batch \(runtime.batch))")
                if forward != nil {
                    print(cFormat("FP32 top-1 %.2f%%, top-5 %.2f%%; INT8-vs-FP32 top-1 agreement %.2f%%",
                                  Double(fp32Top1) / n * 100, Double(fp32Top5) / n * 100, Double(agree) / n * 100))
                }
            }
        }
    }
}

/// ImageFolder layout: sub-folders sorted by name give the label indices.
func imageFolder(_ root: String) throws -> (files: [String], labels: [Int]) {
    let entries = try FileManager.default.contentsOfDirectory(atPath: root).sorted()
    var files: [String] = [], labels: [Int] = []
    var classIndex = 0
    for entry in entries {
        let path = joinedPath(root, entry)
        guard fileKind(atPath: path) == .directory else { continue }
        let classFiles = try listImageFiles(in: path)
        files += classFiles
        labels += Array(repeating: classIndex, count: classFiles.count)
        classIndex += 1
    }
    return (files, labels)
}

/// Class indices by descending score; ties keep the lower index first, like the runtime's top-k.
func rank(_ scores: ArraySlice<Float>) -> [Int] {
    let base = scores.startIndex
    return scores.indices.sorted { scores[$0] > scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }.map { $0 - base }
}

func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) * 1e-18
}

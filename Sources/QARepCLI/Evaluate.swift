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
        discussion: "With --fp32 CHECKPOINT, also the FP32 accuracy and the INT8-vs-FP32 top-1 agreement. The FP32 network sees the same pixels: its input size and preprocessing are taken from the INT8 model. Images are decoded as classify decodes them; files that fail are reported, left out of the accuracy, and make the exit status 2.")

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

    @OptionGroup var photo: PhotoFlags

    func run() throws {
        var errors = 0
        try reportingErrors {
            try photo.validate(runtime: runtime)
            letIdleOpenMPThreadsSleep()
            guard photo.filesFrom == nil else { throw CLIError("--files-from is for classify; evaluate reads the ImageFolder's classes") }
            let loaded = try runtime.loadModel(model)
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
            let classes = loaded.numClasses
            let selectedFiles = selected.map { files[$0] }
            // The FP32 reference runs on batches of images (one GEMM per layer for the batch; one image at a time
            // made the GEMMs narrow): pixels, true class and INT8 class wait here until a batch is full.
            let fp32Batch = 64
            var pendingPixels: [UInt8] = [], pending: [(truth: Int, int8: Int?)] = []
            let workspace = FP32ForwardWorkspace()
            func runFP32() throws {
                guard let forward, !pending.isEmpty else { return }
                let reference = try pendingPixels.withUnsafeBufferPointer {
                    try forward.logits(pixels: $0, count: pending.count, workspace: workspace)
                }
                for (image, item) in pending.enumerated() {
                    let fpRanked = rank(reference[(image * classes)..<((image + 1) * classes)])
                    if fpRanked.first == item.truth { fp32Top1 += 1 }
                    if fpRanked.prefix(5).contains(item.truth) { fp32Top5 += 1 }
                    if fpRanked.first == item.int8 { agree += 1 }
                }
                pendingPixels.removeAll(keepingCapacity: true)
                pending.removeAll(keepingCapacity: true)
            }
            // The same decoding and pipeline as classify; a file that fails is reported and left out of the
            // accuracy (counted in "errors").
            let (ran, session) = try runPhotoPipeline(files: selectedFiles, model: loaded, runtime: runtime, photo: photo,
                                                      progressLabel: "evaluating") { position, result, _ in
                guard case .image(_, let pixels, let logits) = result else { return }
                let truth = labels[selected[position]]
                let ranked = rank(logits)
                if ranked.first == truth { top1 += 1 }
                if ranked.prefix(5).contains(truth) { top5 += 1 }
                if forward != nil {
                    pendingPixels.append(contentsOf: pixels)
                    pending.append((truth, ranked.first))
                    if pending.count == fp32Batch { try runFP32() }
                }
            }
            try runFP32()
            errors = ran.errors
            let int8Seconds = ran.inferenceSeconds
            let n = Double(max(ran.images, 1))
            var result: [String: Any] = [
                "images": ran.images, "errors": ran.errors, "top1": Double(top1) / n, "top5": Double(top5) / n,
                "images_per_s": int8Seconds > 0 ? Double(ran.images) / int8Seconds : 0, "kernel": session.kernel.name,
                "threads": session.threads, "batch": runtime.batch, "pipeline": ran.json,
            ]
            if forward != nil {
                result["fp32_top1"] = Double(fp32Top1) / n
                result["fp32_top5"] = Double(fp32Top5) / n
                result["agreement"] = Double(agree) / n
            }
            if json {
                try printJSON(result)
            } else {
                printToStandardError("qarep: \(ran.line)\n")
                print(cFormat("%ld images: INT8 top-1 %.2f%%, top-5 %.2f%%, %.0f images/s ", ran.images,
                              Double(top1) / n * 100, Double(top5) / n * 100, result["images_per_s"] as? Double ?? 0)
                      + "(\(session.kernel.name), \(session.threads) threads, batch \(runtime.batch))")
                if forward != nil {
                    print(cFormat("FP32 top-1 %.2f%%, top-5 %.2f%%; INT8-vs-FP32 top-1 agreement %.2f%%",
                                  Double(fp32Top1) / n * 100, Double(fp32Top5) / n * 100, Double(agree) / n * 100))
                }
            }
        }
        if errors > 0 { throw ExitCode(RunStatus.someFilesFailed) }
    }
}

/// ImageFolder layout: sub-folders sorted by name give the label indices.
func imageFolder(_ root: String) throws -> (files: [String], labels: [Int]) {
    // Foundation's own error for a missing folder is a multi-line dump; say it in a line.
    guard fileKind(atPath: root) == .directory else {
        throw CLIError("\(root): \(fileKind(atPath: root) == .missing ? "no such folder" : "not a folder")")
    }
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

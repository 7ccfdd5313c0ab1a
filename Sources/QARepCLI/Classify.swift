import ArgumentParser
import Foundation
import QARep
import QARepOffline

/// Options shared by the commands that run the INT8 runtime.
struct RuntimeFlags: ParsableArguments {
    @Option(help: "Images per run.")
    var batch: Int = 16

    @Option(help: "Threads (0 = all CPUs).")
    var threads: Int = 0

    @Option(help: ArgumentHelp("Kernel path: auto or one of this library's paths (\(Kernel.all.map(\.name).joined(separator: ", ")))."))
    var kernel: String = "auto"

    func session(for model: Model) throws -> Session {
        guard batch >= 1 else { throw CLIError("--batch must be at least 1") }
        guard threads >= 0 else { throw CLIError("--threads must be >= 0") }
        guard let path = Kernel(name: kernel) else {
            let known = ([Kernel.auto] + Kernel.all).map(\.name).joined(separator: ", ")
            throw CLIError("--kernel must be one of \(known), got '\(kernel)'")
        }
        return try Session(model: model, threads: threads, maxBatch: batch, kernel: path)
    }
}

/// Decodes an image file and resizes/crops it to the model's input exactly as the runtime's C API does.
func loadModelInput(_ path: String, model: Model) throws -> [UInt8] {
    let image = try decodeImage(path: path)
    return try image.pixels.withUnsafeBufferPointer {
        try model.preprocess(rgb: $0, width: image.width, height: image.height, rowStride: image.width * 3)
    }
}

/// Files named on the command line, with folders expanded recursively to their images.
func expandImagePaths(_ paths: [String]) throws -> [String] {
    var files: [String] = []
    for path in paths {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw CLIError("\(path): no such file or directory")
        }
        files += isDirectory.boolValue ? try listImageFiles(in: path) : [path]
    }
    return files
}

struct Classify: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Classify images with an INT8 model.")

    @Argument(help: "INT8 model file.")
    var model: String

    @Argument(help: "Image files or folders (JPEG/PNG).")
    var images: [String]

    @Option(help: "How many classes to print per image.")
    var top: Int = 5

    @Flag(help: "Print JSON.")
    var json = false

    @OptionGroup var runtime: RuntimeFlags

    func run() throws {
        try reportingErrors {
            guard top >= 1 else { throw CLIError("--top must be at least 1") }
            let loaded = try Model(contentsOfFile: model)
            let session = try runtime.session(for: loaded)
            let files = try expandImagePaths(images)
            guard !files.isEmpty else { throw CLIError("no images found in \(images.joined(separator: " "))") }
            var results: [[String: Any]] = []
            for start in stride(from: 0, to: files.count, by: runtime.batch) {
                let chunk = Array(files[start..<min(start + runtime.batch, files.count)])
                let pixels = try chunk.flatMap { try loadModelInput($0, model: loaded) }
                let predictions = try session.classify(images: pixels, batch: chunk.count, topK: top)
                for (file, top) in zip(chunk, predictions) {
                    if json {
                        results.append(["image": file, "top": top.map {
                            ["class": $0.classIndex, "label": $0.label, "probability": Double($0.probability)] as [String: Any]
                        }])
                    } else {
                        print(file)
                        for p in top { print(String(format: "  %6.2f%%  %4d  %@", p.probability * 100, p.classIndex, p.label)) }
                    }
                }
            }
            if json { try printJSON(["model": model, "kernel": session.kernel.name, "results": results]) }
        }
    }
}

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show an INT8 model's architecture, scales and sizes.")

    @Argument(help: "INT8 model file.")
    var model: String

    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        try reportingErrors {
            let fileSize = (try? FileManager.default.attributesOfItem(atPath: model)[.size] as? Int) ?? nil
            let loaded = try Model(contentsOfFile: model)
            let d = try loaded.description
            var layers: [[String: Any]] = []
            var inputScale = d.inputScale
            for (i, (conv, info)) in zip(d.convs, loaded.layers).enumerated() {
                layers.append([
                    "index": i, "in": conv.inChannels, "out": conv.outChannels, "stride": conv.stride, "groups": conv.groups,
                    "input": "\(info.inputHeight)x\(info.inputWidth)", "output": "\(info.outputHeight)x\(info.outputWidth)",
                    "macs": info.macs, "input_scale": Double(inputScale), "output_scale": Double(conv.outputScale),
                    "weight_scale_min": Double(conv.weightScale.min() ?? 0), "weight_scale_max": Double(conv.weightScale.max() ?? 0),
                ])
                inputScale = conv.outputScale
            }
            let parameters = d.convs.reduce(0) { $0 + $1.weight.count + $1.bias.count } + d.fcWeight.count + d.fcBias.count
            if json {
                try printJSON([
                    "format_version": Int(loaded.formatVersion), "input_height": d.inputHeight, "input_width": d.inputWidth,
                    "num_classes": d.numClasses, "conv_layers": layers, "parameters": parameters,
                    "macs_per_image": loaded.macsPerImage, "file_bytes": fileSize ?? -1,
                    "mean": d.preprocessing.mean.map(Double.init), "std": d.preprocessing.std.map(Double.init),
                    "crop_ratio": Double(d.preprocessing.cropRatio), "input_scale": Double(d.inputScale),
                    "input_zero_point": d.inputZeroPoint.map(Int.init), "pool_output_scale": Double(d.poolOutputScale),
                    "metadata": d.extraMetadata, "labels": d.labels,
                ])
                return
            }
            print("\(model): QARep INT8 model, format version \(loaded.formatVersion)")
            print("input \(d.inputHeight)x\(d.inputWidth) RGB, mean \(d.preprocessing.mean), std \(d.preprocessing.std), crop ratio \(d.preprocessing.cropRatio)")
            print("input scale \(d.inputScale), zero point \(d.inputZeroPoint)")
            print(String(format: "%d conv layers, %d classes, %d parameters, %.3f GMAC per image%@", d.convs.count, d.numClasses,
                         parameters, loaded.macsPerImage / 1e9, fileSize.map { String(format: ", file %.2f MB", Double($0) / 1e6) } ?? ""))
            print("layer     in   out  s  g     input   output    MMAC  in_scale    out_scale   w_scale min..max")
            for layer in layers {
                print(String(format: "%5d  %5d %5d  %d %2d  %8@ %8@ %7.1f  %.3e  %.3e  %.2e..%.2e",
                             layer["index"] as? Int ?? 0, layer["in"] as? Int ?? 0, layer["out"] as? Int ?? 0,
                             layer["stride"] as? Int ?? 0, layer["groups"] as? Int ?? 0,
                             layer["input"] as? String ?? "", layer["output"] as? String ?? "",
                             Double(layer["macs"] as? Int ?? 0) / 1e6, layer["input_scale"] as? Double ?? 0,
                             layer["output_scale"] as? Double ?? 0, layer["weight_scale_min"] as? Double ?? 0,
                             layer["weight_scale_max"] as? Double ?? 0))
            }
            print("pool output scale \(d.poolOutputScale); fc \(d.numClasses) x \(d.convs.last?.outChannels ?? 0)")
            for (key, value) in d.extraMetadata.sorted(by: { $0.key < $1.key }) { print("\(key): \(value)") }
        }
    }
}

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

/// Files named on the command line, with folders expanded recursively to their images.
func expandImagePaths(_ paths: [String]) throws -> [String] {
    var files: [String] = []
    for path in paths {
        let kind = fileKind(atPath: path)
        guard kind != .missing else { throw CLIError("\(path): no such file or directory") }
        files += kind == .directory ? try listImageFiles(in: path) : [path]
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
                        for p in top { print(cFormat("  %6.2f%%  %4ld  ", Double(p.probability * 100), p.classIndex) + p.label) }
                    }
                }
            }
            if json { try printJSON(["model": model, "kernel": session.kernel.name, "results": results]) }
        }
    }
}

// Flags that tell the importer what a checkpoint cannot: BN epsilon, input size, normalization, crop, labels.
import ArgumentParser
import Foundation
import QARep
import QARepOffline

struct ImportFlags: ParsableArguments {
    @Option(name: .customLong("bn-eps"), help: "BatchNorm epsilon (1e-5 for most sources, 1e-3 for YOLOv6).")
    var bnEps: Double = 1e-5

    @Option(name: .customLong("input-size"), help: "Input size: H or HxW.")
    var inputSize: String = "224"

    @Option(help: "Per-channel mean r,g,b on the 0..1 pixel scale (default ImageNet's).")
    var mean: String = "0.485,0.456,0.406"

    @Option(help: "Per-channel std r,g,b on the 0..1 pixel scale (default ImageNet's).")
    var std: String = "0.229,0.224,0.225"

    @Option(name: .customLong("crop-ratio"), help: "Resize the shorter side to size/F, then center-crop; 1.0 resizes straight to the input size.")
    var cropRatio: Float = 0.875

    @Option(help: "A file with one class label per line.")
    var labels: String?

    func importOptions() throws -> ImportOptions {
        var options = ImportOptions()
        guard bnEps.isFinite, bnEps > 0 else { throw CLIError("--bn-eps must be a positive number") }
        options.bnEpsilon = bnEps
        (options.inputHeight, options.inputWidth) = try parseSize(inputSize)
        let meanValues = try parseTriple(mean, flag: "--mean")
        let stdValues = try parseTriple(std, flag: "--std")
        guard stdValues.allSatisfy({ $0 > 0 }) else { throw CLIError("--std values must be > 0") }
        guard cropRatio.isFinite, cropRatio > 0, cropRatio <= 1 else { throw CLIError("--crop-ratio must be in (0, 1]") }
        options.preprocessing = Preprocessing(mean: meanValues, std: stdValues, cropRatio: cropRatio)
        if let labels {
            guard let text = try? String(contentsOfFile: labels, encoding: .utf8) else {
                throw CLIError("cannot read labels file \(labels)")
            }
            options.labels = text.split(whereSeparator: \.isNewline).map(String.init).filter { !$0.isEmpty }
        }
        return options
    }
}

func parseSize(_ text: String) throws -> (Int, Int) {
    let parts = text.lowercased().split(separator: "x", omittingEmptySubsequences: false)
    let values = parts.compactMap { Int($0) }
    guard (parts.count == 1 || parts.count == 2), values.count == parts.count, values.allSatisfy({ (1...4096).contains($0) }) else {
        throw CLIError("--input-size must be H or HxW with each side in 1...4096, got '\(text)'")
    }
    return (values[0], values.count == 2 ? values[1] : values[0])
}

func parseTriple(_ text: String, flag: String) throws -> [Float] {
    let values = text.split(separator: ",").compactMap { Float($0.trimmingCharacters(in: .whitespaces)) }
    guard values.count == 3, values.allSatisfy(\.isFinite) else {
        throw CLIError("\(flag) must be three comma-separated numbers, got '\(text)'")
    }
    return values
}

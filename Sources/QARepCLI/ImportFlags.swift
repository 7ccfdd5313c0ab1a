// Flags that tell the importer what a checkpoint cannot: BN epsilon, input size, normalization, crop, labels.
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

    @Option(name: .customLong("stem-stride"), help: "Stride of the first block (default: 1 for inputs of at most 64 px, else 2).")
    var stemStride: Int?

    @Option(help: "Every block's stride, comma-separated, overriding the inferred ones.")
    var strides: String?

    @Flag(name: .customLong("avgpool-branch"), help: "Blocks have YOLOv6 QARepVGGBlockV2's parameter-free 3x3 average-pool branch.")
    var averagePoolBranch = false

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
        if let stemStride {
            guard stemStride == 1 || stemStride == 2 else { throw CLIError("--stem-stride must be 1 or 2") }
            options.stemStride = stemStride
        }
        if let strides {
            let values = strides.split(separator: ",").compactMap { Int($0.trimmedWhitespace) }
            guard !values.isEmpty, values.count == strides.split(separator: ",").count, values.allSatisfy({ $0 == 1 || $0 == 2 }) else {
                throw CLIError("--strides must be a comma-separated list of 1s and 2s, got '\(strides)'")
            }
            options.blockStrides = values
        }
        options.averagePoolBranch = averagePoolBranch
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
    let values = text.split(separator: ",").compactMap { Float($0.trimmedWhitespace) }
    guard values.count == 3, values.allSatisfy(\.isFinite) else {
        throw CLIError("\(flag) must be three comma-separated numbers, got '\(text)'")
    }
    return values
}

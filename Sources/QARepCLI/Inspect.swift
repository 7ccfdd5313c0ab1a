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

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show an INT8 model's architecture, scales and sizes.")

    @Argument(help: "INT8 model file.")
    var model: String

    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        try reportingErrors {
            // FoundationEssentials gives the size as UInt, Foundation as Int.
            let sizeAttribute = try? FileManager.default.attributesOfItem(atPath: model)[.size]
            let fileSize = (sizeAttribute as? Int) ?? (sizeAttribute as? UInt).flatMap { Int(exactly: $0) }
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
            print("\(d.convs.count) conv layers, \(d.numClasses) classes, \(parameters) parameters, "
                  + cFormat("%.3f GMAC per image", loaded.macsPerImage / 1e9)
                  + (fileSize.map { cFormat(", file %.2f MB", Double($0) / 1e6) } ?? ""))
            print("layer     in   out  s  g     input   output    MMAC  in_scale    out_scale   w_scale min..max")
            for layer in layers {
                print(cFormat("%5ld  %5ld %5ld  %ld %2ld  ", layer["index"] as? Int ?? 0, layer["in"] as? Int ?? 0,
                              layer["out"] as? Int ?? 0, layer["stride"] as? Int ?? 0, layer["groups"] as? Int ?? 0)
                      + rightAligned(layer["input"] as? String ?? "", 8) + " " + rightAligned(layer["output"] as? String ?? "", 8)
                      + cFormat(" %7.1f  %.3e  %.3e  %.2e..%.2e", Double(layer["macs"] as? Int ?? 0) / 1e6,
                                layer["input_scale"] as? Double ?? 0, layer["output_scale"] as? Double ?? 0,
                                layer["weight_scale_min"] as? Double ?? 0, layer["weight_scale_max"] as? Double ?? 0))
            }
            print("pool output scale \(d.poolOutputScale); fc \(d.numClasses) x \(d.convs.last?.outChannels ?? 0)")
            for (key, value) in d.extraMetadata.sorted(by: { $0.key < $1.key }) { print("\(key): \(value)") }
        }
    }
}

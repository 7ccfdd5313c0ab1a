import ArgumentParser
import QARepOffline

struct Fuse: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fuse a training checkpoint into FP32 deploy weights (safetensors, RepVGG deploy key names).")

    @Argument(help: "Training or fused checkpoint (.safetensors, .pth, .pt).")
    var checkpoint: String

    @Option(name: .shortAndLong, help: "Output .safetensors file.")
    var output: String

    @OptionGroup var importFlags: ImportFlags

    func run() throws {
        try reportingErrors {
            let (network, report) = try importCheckpointWithReport(path: checkpoint, options: try importFlags.importOptions())
            try writeFusedCheckpoint(network, path: output)
            print(report.layerListing)
            print("wrote \(output)")
        }
    }
}

import ArgumentParser
import QARepOffline

struct Synthesize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a random (He-initialized) fused FP32 RepVGG network, for benchmarks and peer comparisons.")

    @Option(help: "Architecture: \(RepVGGArchitecture.publishedNames.joined(separator: ", ")).")
    var arch: String

    @Option(help: "Input size (square). A checkpoint does not record it: pass the same --input-size to `qarep quantize`.")
    var size: Int = 224

    @Option(help: "Number of classes.")
    var classes: Int = 1000

    @Option(help: "Random seed.")
    var seed: UInt64 = 1

    @Option(name: .shortAndLong, help: "Output .safetensors file (RepVGG deploy key names).")
    var output: String

    func run() throws {
        try reportingErrors {
            guard let architecture = RepVGGArchitecture(named: arch) else {
                throw CLIError("unknown --arch '\(arch)': one of \(RepVGGArchitecture.publishedNames.joined(separator: ", "))")
            }
            guard (8...4096).contains(size), (1...100_000).contains(classes) else {
                throw CLIError("--size must be in 8...4096 and --classes in 1...100000")
            }
            let network = syntheticNetwork(architecture: architecture, inputHeight: size, inputWidth: size,
                                           numClasses: classes, seed: seed)
            try writeFusedCheckpoint(network, path: output)
            print("wrote \(output) (\(architecture.name), \(network.convs.count) conv layers)")
        }
    }
}

import ArgumentParser
import QARep
import QARepOffline

struct ExportONNX: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export-onnx",
        abstract: "Write an INT8 model as an ONNX QDQ graph (opset 13) with exactly its integers and scales.")

    @Argument(help: "INT8 model file.")
    var model: String

    @Option(name: .shortAndLong, help: "Output .onnx file.")
    var output: String

    func run() throws {
        try reportingErrors {
            let loaded = try Model(contentsOfFile: model)
            try writeFile(try exportONNX(loaded.description), to: output)
            print("wrote \(output)")
        }
    }
}

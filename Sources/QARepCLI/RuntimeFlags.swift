// What the commands that run the INT8 runtime share: session flags and image loading.
import ArgumentParser
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

    @Option(help: ArgumentHelp("Winograd weights: auto (where faster, within a quarter of memory), no-4x4 (no F(4x4,3x3)), or off (the least memory; the same results).",
                               valueName: "auto|no-4x4|off"))
    var winograd: String = "auto"

    /// Loads the model with the packing --winograd asks for.
    func loadModel(_ path: String) throws -> Model {
        let options: [String: Model.PackingOptions] = ["auto": [], "no-4x4": .noWinograd4x4, "off": .noWinograd]
        guard let packing = options[winograd] else { throw CLIError("--winograd must be auto, no-4x4 or off, got '\(winograd)'") }
        return try Model(contentsOfFile: path, packing: packing)
    }

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

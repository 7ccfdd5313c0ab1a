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

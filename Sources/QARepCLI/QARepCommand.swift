// `qarep`: turn a trained checkpoint into a calibrated INT8 model, inspect it, classify and evaluate with it.
// Every command exits 0 on success and otherwise prints one line, "qarep: error: ...", to stderr and exits 1;
// classify and evaluate exit 2 when some files failed and the others ran.
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

@main
struct QARepCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qarep",
        abstract: "QARep offline tool: import, fuse, calibrate and export INT8 RepVGG-family models; classify and evaluate.",
        version: "0.1.0",
        subcommands: [Quantize.self, Analyze.self, Fuse.self, Classify.self, Evaluate.self, Inspect.self, ExportONNX.self, Synthesize.self]
    )

    /// ArgumentParser's own main, except that a usage error exits 1 (not 64): 1 means "nothing could run",
    /// 2 "some files failed" (classify, evaluate).
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            if exitCode(for: error) == .validationFailure {
                printToStandardError(fullMessage(for: error) + "\n")
                exitProcess(1)
            }
            exit(withError: error)
        }
    }
}

/// The C library's exit (inside a command type, `exit` names ParsableCommand's).
func exitProcess(_ status: Int32) -> Never { exit(status) }

/// Runs a command body and turns any error into the one-line message and a non-zero exit code.
func reportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let exit as ExitCode {
        throw exit
    } catch {
        printToStandardError("qarep: error: \(oneLine(error))\n")
        throw ExitCode(1)
    }
}

func oneLine(_ error: Error) -> String {
    String(describing: error).split(whereSeparator: \.isNewline).joined(separator: " ")
}

struct CLIError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

func writeFile(_ bytes: [UInt8], to path: String) throws {
    guard FileManager.default.createFile(atPath: path, contents: Data(bytes)) else {
        throw CLIError("cannot write \(path)")
    }
}

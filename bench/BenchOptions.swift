// Command-line options, parsed by hand: the bench does not depend on swift-argument-parser.
import RepVGGArchitectures
import CQARepAPI
import QARep

struct BenchOptions {
    var architecture = RepVGGArchitecture(named: "A0")
    var size = 224
    var modelPath: String?
    var savePath: String?
    var batch = 1
    var threads = 1
    var iterations = 50
    var warmup = 5
    /// A fresh process's first ~60 ms of two-thread runs were up to 2x slower (A0 b1: ~5 ms, then 2.1). One
    /// cause was OpenBLAS, then linked through the offline module, whose worker thread spins for about 2^28
    /// cycles after loading; bench no longer links it, and the slow start remained (an idle second core
    /// coming up to speed, it seems), so timed runs start after a warm-up of some duration, not a count.
    var warmupMilliseconds = 200
    /// nil: the library's automatic choice.
    var kernel: String?
    var layers = false
    var json = false
    var peak = false
    var seed: UInt64 = 1
    /// A CPU to keep busy with a pinned spinning thread while the model runs (warm-up and timed runs).
    var busyCore: Int?
    /// Rescue mode for every run of fewer images than threads, load or not (its cost on a quiet machine).
    var rescue = false
    /// What the packed weights give up for memory (--winograd): QAREP_LOAD_* flags, and the same as options.
    var loadFlags: UInt32 = 0
    var packing: Model.PackingOptions { Model.PackingOptions(rawValue: loadFlags) }

    static let usage = """
        usage: bench [--arch NAME | --model FILE] [options]

        Runs a QARep model through the C API on random images and reports latency and throughput.

          --arch NAME        synthetic RepVGG model: \(RepVGGArchitecture.publishedNames.joined(separator: "|")) (default A0)
          --size N           input size of the synthetic model, N x N (default 224)
          --seed N           random seed of the synthetic weights (default 1)
          --model FILE       load this .qarep model instead of a synthetic one
          --save FILE        write the synthetic model to FILE
          --batch N          images per run (default 1)
          --threads N        threads (default 1)
          --iterations N     timed runs (default 50)
          --warmup N         untimed runs first (default 5)
          --warmup-ms T      keep up the untimed runs for at least T milliseconds (default 200), so the
                             timed runs start in a settled process
          --winograd W       auto (default), no-4x4 or off: what the packed weights give up for memory
          --kernel K         a kernel path: \(Kernel.all.map(\.name).joined(separator: "|")) (default: the fastest this CPU has)
          --layers           also time each layer (Swift API profiling hook) and print a table
          --json             print one JSON object instead of text
          --busy-core CPU    keep CPU busy with a spinning thread pinned to it for the whole run (warm-up
                             included): latency when another process holds one core
          --rescue           run fewer images than threads in rescue mode (no member waits for another; late
                             items redone) even on a quiet machine; otherwise only load turns it on
          --peak             print the measured int8 peak of one core (of --kernel's path) and of all threads, then exit
          -h, --help         this text
        """

    struct ParseError: Error, CustomStringConvertible {
        var description: String
    }

    static func parse(_ arguments: [String]) throws -> BenchOptions? {
        var options = BenchOptions()
        var remaining = arguments[...]

        func value(for flag: String) throws -> String {
            guard let next = remaining.popFirst() else { throw ParseError(description: "\(flag) needs a value") }
            return next
        }
        func positiveInt(for flag: String, allowZero: Bool = false) throws -> Int {
            let text = try value(for: flag)
            guard let number = Int(text), number > 0 || (allowZero && number == 0) else {
                throw ParseError(description: "\(flag) needs a \(allowZero ? "non-negative" : "positive") integer, not '\(text)'")
            }
            return number
        }

        while let argument = remaining.popFirst() {
            switch argument {
            case "--arch":
                let name = try value(for: argument)
                guard let architecture = RepVGGArchitecture(named: name) else {
                    throw ParseError(description: "unknown architecture '\(name)'; known: \(RepVGGArchitecture.publishedNames.joined(separator: ", "))")
                }
                options.architecture = architecture
            case "--size": options.size = try positiveInt(for: argument)
            case "--seed":
                let text = try value(for: argument)
                guard let seed = UInt64(text) else { throw ParseError(description: "--seed needs an unsigned integer") }
                options.seed = seed
            case "--model": options.modelPath = try value(for: argument)
            case "--save": options.savePath = try value(for: argument)
            case "--batch": options.batch = try positiveInt(for: argument)
            case "--threads": options.threads = try positiveInt(for: argument)
            case "--iterations": options.iterations = try positiveInt(for: argument)
            case "--warmup": options.warmup = try positiveInt(for: argument, allowZero: true)
            case "--warmup-ms": options.warmupMilliseconds = try positiveInt(for: argument, allowZero: true)
            case "--kernel":
                let name = try value(for: argument)
                guard Kernel(name: name) != nil else {
                    let known = ([Kernel.auto] + Kernel.all).map(\.name).joined(separator: ", ")
                    throw ParseError(description: "unknown kernel '\(name)'; known: \(known)")
                }
                options.kernel = name == "auto" ? nil : name
            case "--winograd":
                let flags: [String: UInt32] = ["auto": 0, "no-4x4": QAREP_LOAD_NO_WINOGRAD_4X4, "off": QAREP_LOAD_NO_WINOGRAD]
                let name = try value(for: argument)
                guard let value = flags[name] else { throw ParseError(description: "--winograd takes auto, no-4x4 or off, not '\(name)'") }
                options.loadFlags = value
            case "--layers": options.layers = true
            case "--json": options.json = true
            case "--peak": options.peak = true
            case "--busy-core": options.busyCore = try positiveInt(for: argument, allowZero: true)
            case "--rescue": options.rescue = true
            case "-h", "--help": return nil
            default: throw ParseError(description: "unknown argument '\(argument)'")
            }
        }
        if options.size > 4096 { throw ParseError(description: "--size must be at most 4096") }
        if options.modelPath != nil && options.savePath != nil {
            throw ParseError(description: "--save writes a synthetic model; it cannot be combined with --model")
        }
        return options
    }
}

// Progress for long runs: a redrawn bar with ETA on a terminal, a plain line per 10% otherwise (logs, CI).
#if canImport(FoundationEssentials)
// FoundationEssentials, not Foundation: linked statically, Foundation's internationalization brings ICU's
// data (tens of MB) into the CLI. Glibc gives the math and stdio that Foundation re-exported.
import FoundationEssentials
import Glibc
#else
import Foundation
#endif

final class ProgressReporter {
    private let label: String
    private let start = Date()
    private let isTerminal = isatty(STDERR_FILENO) != 0
    private var lastDecile = -1
    private var lastDraw = Date.distantPast

    init(label: String) { self.label = label }

    func update(done: Int, total: Int) {
        guard total > 0 else { return }
        let elapsed = Date().timeIntervalSince(start)
        let fraction = Double(done) / Double(total)
        let eta = done > 0 ? elapsed / fraction - elapsed : 0
        if isTerminal {
            guard done == total || Date().timeIntervalSince(lastDraw) > 0.1 else { return }
            lastDraw = Date()
            let width = 30
            let filled = Int(fraction * Double(width))
            let bar = String(repeating: "=", count: filled) + String(repeating: " ", count: width - filled)
            printToStandardError("\r\(label) [\(bar)] \(done)/\(total)  " + cFormat("%.0fs elapsed, ETA %.0fs ", elapsed, eta))
            if done == total { printToStandardError("\n") }
        } else {
            let decile = Int(fraction * 10)
            guard decile > lastDecile else { return }
            lastDecile = decile
            printToStandardError("\(label): \(done)/\(total) " + cFormat("(%.0f%%), %.1fs elapsed, ETA %.0fs\n", fraction * 100, elapsed, eta))
        }
    }
}

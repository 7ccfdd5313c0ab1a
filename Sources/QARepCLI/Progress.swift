// Progress for long runs: a redrawn bar with rate and ETA on a terminal, a plain line per 10% otherwise (logs,
// CI), and there only for runs of at least minimumTotalForLines items.
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

    private let minimumTotalForLines: Int

    init(label: String, minimumTotalForLines: Int = 0) {
        self.label = label
        self.minimumTotalForLines = minimumTotalForLines
    }

    func update(done: Int, total: Int) {
        guard total > 0 else { return }
        let elapsed = Date().timeIntervalSince(start)
        let fraction = Double(done) / Double(total)
        let eta = done > 0 ? elapsed / fraction - elapsed : 0
        let rate = elapsed > 0 ? Double(done) / elapsed : 0
        if isTerminal {
            guard done == total || Date().timeIntervalSince(lastDraw) > 0.1 else { return }
            lastDraw = Date()
            let width = 30
            let filled = Int(fraction * Double(width))
            let bar = String(repeating: "=", count: filled) + String(repeating: " ", count: width - filled)
            printToStandardError("\r\(label) [\(bar)] \(done)/\(total)  " + cFormat("%.1f/s, %.0fs elapsed, ETA %.0fs ", rate, elapsed, eta))
            if done == total { printToStandardError("\n") }
        } else {
            let decile = Int(fraction * 10)
            guard total >= minimumTotalForLines, decile > lastDecile else { return }
            lastDecile = decile
            printToStandardError("\(label): \(done)/\(total) " + cFormat("(%.0f%%), %.1f/s, %.1fs elapsed, ETA %.0fs\n", fraction * 100, rate, elapsed, eta))
        }
    }
}

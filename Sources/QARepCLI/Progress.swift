// Progress for long runs: a redrawn bar with ETA on a terminal, a plain line per 10% otherwise (logs, CI).
import Foundation

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
            let line = String(format: "\r%@ [%@] %d/%d  %.0fs elapsed, ETA %.0fs ", label, bar, done, total, elapsed, eta)
            FileHandle.standardError.write(Data(line.utf8))
            if done == total { FileHandle.standardError.write(Data("\n".utf8)) }
        } else {
            let decile = Int(fraction * 10)
            guard decile > lastDecile else { return }
            lastDecile = decile
            let line = String(format: "%@: %d/%d (%.0f%%), %.1fs elapsed, ETA %.0fs\n", label, done, total, fraction * 100, elapsed, eta)
            FileHandle.standardError.write(Data(line.utf8))
        }
    }
}

// Progress for long runs: a redrawn bar with rate and ETA on a terminal, a plain line per 10% otherwise (logs,
// CI), and there only for runs of at least minimumTotalForLines items.
import Foundation

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
            let line = String(format: "\r%@ [%@] %d/%d  %.1f/s, %.0fs elapsed, ETA %.0fs ", label, bar, done, total, rate, elapsed, eta)
            FileHandle.standardError.write(Data(line.utf8))
            if done == total { FileHandle.standardError.write(Data("\n".utf8)) }
        } else {
            let decile = Int(fraction * 10)
            guard total >= minimumTotalForLines, decile > lastDecile else { return }
            lastDecile = decile
            let line = String(format: "%@: %d/%d (%.0f%%), %.1f/s, %.1fs elapsed, ETA %.0fs\n", label, done, total, fraction * 100, rate, elapsed, eta)
            FileHandle.standardError.write(Data(line.utf8))
        }
    }
}

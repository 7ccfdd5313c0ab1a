// Decoding ahead of inference: worker threads decode and preprocess files into a bounded window of results
// that the inference thread takes in input order. A slow or bad file never reorders the output; at most
// `window` decoded images (model-input size) are held.
import Dispatch
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

/// What became of one input file.
enum DecodeOutcome {
    case image(DecodedModelInput)
    case failure(String)
}

final class DecodePipeline: @unchecked Sendable {
    let files: [String]
    private let decoder: ModelInputDecoder
    private let window: Int
    private let condition = Condition()
    private var slots: [Int: DecodeOutcome] = [:]
    private var nextToClaim = 0
    private var nextToDeliver = 0
    private var stopped = false
    private var running = 0
    private var decodeNanoseconds: UInt64 = 0

    /// Decode time summed over the workers.
    var decodeSeconds: Double {
        condition.lock()
        defer { condition.unlock() }
        return Double(decodeNanoseconds) * 1e-9
    }

    /// `workers` threads, at most `window` images decoded ahead of the one the caller takes next.
    init(files: [String], decoder: ModelInputDecoder, workers: Int, window: Int) {
        self.files = files
        self.decoder = decoder
        self.window = max(window, workers)
        let count = max(1, min(workers, files.count))
        running = count
        for _ in 0..<count {
            // A serial queue each: its block holds one of Dispatch's threads for the whole run.
            DispatchQueue(label: "qarep.decode").async { [self] in work() }
        }
    }

    private func work() {
        while true {
            condition.lock()
            while !stopped && nextToClaim < files.count && nextToClaim >= nextToDeliver + window { condition.wait() }
            if stopped || nextToClaim >= files.count {
                running -= 1
                condition.broadcast()
                condition.unlock()
                return
            }
            let index = nextToClaim
            nextToClaim += 1
            condition.unlock()
            decodeAndStore(index)
        }
    }

    private func decodeAndStore(_ index: Int) {
        let start = DispatchTime.now().uptimeNanoseconds
        let outcome: DecodeOutcome
        do {
            outcome = .image(try decoder.decode(path: files[index]))
        } catch let error as InputFileError {
            outcome = .failure(error.reason)
        } catch {
            outcome = .failure(oneLine(error))
        }
        let elapsed = DispatchTime.now().uptimeNanoseconds - start

        condition.lock()
        slots[index] = outcome
        decodeNanoseconds += elapsed
        condition.broadcast()
        condition.unlock()
    }

    /// The next file's outcome in input order; nil after the last one or after `stop`. While it is not ready,
    /// the caller decodes unclaimed files itself rather than wait idle (at its own, normal priority).
    func next() -> (index: Int, outcome: DecodeOutcome)? {
        condition.lock()
        while !stopped && nextToDeliver < files.count && slots[nextToDeliver] == nil {
            if nextToClaim < files.count && nextToClaim < nextToDeliver + window {
                let index = nextToClaim
                nextToClaim += 1
                condition.unlock()
                decodeAndStore(index)
                condition.lock()
            } else {
                condition.wait()
            }
        }
        defer { condition.unlock() }
        guard !stopped, nextToDeliver < files.count, let outcome = slots.removeValue(forKey: nextToDeliver) else { return nil }
        let index = nextToDeliver
        nextToDeliver += 1
        condition.broadcast()
        return (index, outcome)
    }

    /// Stops the workers after the files they are decoding, and waits for them.
    func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        while running > 0 { condition.wait() }
        slots.removeAll()
        condition.unlock()
    }

    deinit { stop() }
}

/// How the CPUs are shared between decoding and the session when the user did not say.
struct ThreadSplit {
    var sessionThreads: Int
    var decodeWorkers: Int

    /// All CPUs for the session and as many decode workers, all at the same priority, and the inference thread
    /// decodes too while it waits (DecodePipeline.next): the scheduler shares the cores by demand, so they stay
    /// busy whichever dominates, inference with small photos or decoding with 12 MP ones. OpenMP's threads
    /// must sleep between batches for this (`letIdleOpenMPThreadsSleep`). Decode workers at nice 10
    /// were as fast on a quiet machine and much slower whenever anything else ran (docs/performance.md,
    /// "Photo pipeline").
    static func automatic(sessionThreads: Int, decodeWorkers: Int, files: Int) -> ThreadSplit {
        let cpus = max(1, ProcessInfo.processInfo.activeProcessorCount)
        let session = sessionThreads > 0 ? sessionThreads : cpus
        let workers = decodeWorkers > 0 ? decodeWorkers : cpus
        return ThreadSplit(sessionThreads: session, decodeWorkers: max(1, min(workers, files)))
    }
}

/// libomp's threads spin for KMP_BLOCKTIME (200 ms) after a parallel region before they sleep; in a photo run
/// that spinning takes the cores from the decode workers between batches, and in calibration (which alternates
/// the runtime's kernels with the FP32 forward's own workers, layer by layer) from those workers. Called before
/// the first OpenMP region (libomp reads the variable once, at its start-up); a value the user set is kept.
func letIdleOpenMPThreadsSleep() {
    setenv("KMP_BLOCKTIME", "0", 0)
}

/// A mutex and its condition variable (NSCondition is Foundation's, not FoundationEssentials').
final class Condition: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let variable = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(variable, nil)
    }

    deinit {
        pthread_cond_destroy(variable)
        pthread_mutex_destroy(mutex)
        variable.deallocate()
        mutex.deallocate()
    }

    func lock() { pthread_mutex_lock(mutex) }
    func unlock() { pthread_mutex_unlock(mutex) }
    /// Releases the lock while waiting; holds it again on return.
    func wait() { pthread_cond_wait(variable, mutex) }
    func broadcast() { pthread_cond_broadcast(variable) }
}

// Many threads on one model through the C API, as a server would use it: every result bitwise equal to a
// serial run, the model released while sessions still run, and sessions created and destroyed in a loop
// without memory growth. scripts/check-sanitizers.sh also runs it under ASan (leaks) and TSan + Archer.
import CQARepAPI
import CQARepKernels
import Foundation
import RepVGGArchitectures
import XCTest
@testable import QARep

/// A model handle shared by threads: qarep.h documents a model as usable by any number of threads at once.
private struct SharedModel: @unchecked Sendable { let pointer: OpaquePointer }

final class ConcurrencyStressTests: XCTestCase {
    static let workers = 8
    static let batches = [1, 2, 3, 5]
    /// Seconds of mixed runs; QAREP_STRESS_SECONDS shortens or lengthens it (the sanitizer builds are slower).
    static var seconds: Double { getenv("QAREP_STRESS_SECONDS").flatMap { Double(String(cString: $0)) } ?? 3 }

    /// Stride-2 and grouped layers, so every path's band and channel splits are in play, at a size that
    /// runs in about a millisecond.
    let description = makeRandomModel(seed: 31, height: 24, width: 20,
                                      layers: [LayerSpec(out: 16, stride: 2), LayerSpec(out: 32, stride: 1, groups: 2),
                                               LayerSpec(out: 48, stride: 2), LayerSpec(out: 64, stride: 1)],
                                      numClasses: 11)

    private func load(_ bytes: [UInt8]) throws -> OpaquePointer {
        var model: OpaquePointer? = nil
        XCTAssertEqual(bytes.withUnsafeBytes { qarep_model_load_memory($0.baseAddress, $0.count, &model) }, QAREP_OK)
        return try XCTUnwrap(model)
    }

    private static func session(_ model: OpaquePointer, threads: Int32, maxBatch: Int32, kernel: qarep_kernel) -> OpaquePointer? {
        var options = qarep_session_options(num_threads: threads, max_batch: maxBatch, kernel: kernel)
        var session: OpaquePointer? = nil
        return qarep_session_create(model, &options, &session) == QAREP_OK ? session : nil
    }

    /// Runs `batch` images from `images` and returns the logits' bit patterns (nil on any failure).
    private static func run(_ session: OpaquePointer, _ images: [UInt8], imageBytes: Int, batch: Int, classes: Int) -> [UInt32]? {
        let status = images.withUnsafeBufferPointer { qarep_session_run_u8(session, $0.baseAddress, batch * imageBytes, Int32(batch)) }
        guard status == QAREP_OK else { return nil }
        var logits = [Float](repeating: 0, count: batch * classes)
        guard logits.withUnsafeMutableBufferPointer({ qarep_session_get_logits(session, $0.baseAddress, $0.count) }) == QAREP_OK else {
            return nil
        }
        return logits.map(\.bitPattern)
    }

    /// At least 8 threads, each with its own session (kernel path and OpenMP team size by turns) on one shared
    /// model, run mixed batch sizes for a few seconds; every image's logits must equal a one-thread scalar run
    /// of that image alone. The caller's model reference is dropped while they run. For the second half of
    /// the time, teams with fewer images than threads run in rescue mode (the mode load turns on).
    func testSessionsOnOneModelMatchASerialRun() throws {
        let bytes = try description.serialized()
        let imageBytes = description.inputHeight * description.inputWidth * 3
        let classes = description.numClasses
        let maxBatch = Self.batches.max()!
        var rng = SeededGenerator(seed: 77)
        let images = rng.bytes(maxBatch * imageBytes)

        // The serial reference, image by image.
        let referenceModel = try load(bytes)
        let serial = try XCTUnwrap(Self.session(referenceModel, threads: 1, maxBatch: 1, kernel: QAREP_KERNEL_SCALAR))
        var expected: [UInt32] = []
        for n in 0..<maxBatch {
            let one = Array(images[(n * imageBytes)..<((n + 1) * imageBytes)])
            expected += try XCTUnwrap(Self.run(serial, one, imageBytes: imageBytes, batch: 1, classes: classes))
        }
        qarep_session_destroy(serial)
        qarep_model_release(referenceModel)

        let kernels = (1...qarep_kernel_count()).map { qarep_kernel(rawValue: UInt32($0)) }.filter { qarep_kernel_supported($0) != 0 }
        let model = try load(bytes)
        let shared = SharedModel(pointer: model), reference = expected
        struct Tally { var runs = 0, mismatches = 0, failures = 0, configurations = Set<String>() }
        let tallies = LockedList<Tally>()
        let started = DispatchSemaphore(value: 0)
        let group = DispatchGroup()
        let deadline = Date().addingTimeInterval(Self.seconds)
        // Threads of their own (Thread, not a Dispatch pool, which would run only as many at once as there are cores).
        for w in 0..<Self.workers {
            group.enter()
            let kernel = kernels[w % kernels.count]
            let threads = Int32(1 + w % 3)
            let thread = Thread {
                defer { group.leave() }
                guard let session = Self.session(shared.pointer, threads: threads, maxBatch: Int32(maxBatch), kernel: kernel) else {
                    tallies.append(Tally(failures: 1))
                    started.signal()
                    return
                }
                defer { qarep_session_destroy(session) }
                started.signal()
                var local = Tally()
                var turn = w
                while Date() < deadline {
                    let batch = Self.batches[turn % Self.batches.count]
                    turn += 1
                    guard let logits = Self.run(session, images, imageBytes: imageBytes, batch: batch, classes: classes) else {
                        local.failures += 1
                        continue
                    }
                    local.runs += 1
                    if logits != Array(reference[0..<(batch * classes)]) { local.mismatches += 1 }
                    local.configurations.insert("\(String(cString: qarep_kernel_name(kernel))) x\(threads) b\(batch)")
                }
                tallies.append(local)
            }
            thread.stackSize = 1 << 20
            thread.start()
        }
        // Every session exists (each holds the model); the caller lets go while they run.
        for _ in 0..<Self.workers { started.wait() }
        qarep_model_release(model)
        Thread.sleep(forTimeInterval: Self.seconds / 2)
        _ = qk_testing_rescue_runs()
        qk_testing_force_rescue(1)
        defer { qk_testing_force_rescue(0) }
        group.wait()
        let rescueRuns = qk_testing_rescue_runs()

        let result = tallies.all.reduce(into: Tally()) {
            $0.runs += $1.runs
            $0.mismatches += $1.mismatches
            $0.failures += $1.failures
            $0.configurations.formUnion($1.configurations)
        }
        XCTAssertEqual(result.failures, 0, "session creation or runs failed")
        XCTAssertEqual(result.mismatches, 0, "runs differ from the serial reference")
        XCTAssertGreaterThanOrEqual(result.runs, Self.workers, "fewer runs than threads")
        XCTAssertGreaterThan(rescueRuns, 0, "no run went through rescue mode")
        print("stress: \(Self.workers) threads, \(result.runs) runs in \(Self.seconds) s, all bitwise equal to the serial run;",
              "paths \(kernels.map { String(cString: qarep_kernel_name($0)) }.joined(separator: ", ")),",
              "\(result.configurations.count) path x team x batch combinations, \(rescueRuns) runs in rescue mode")
    }

    /// Models and sessions made and dropped in a loop, on several threads: after a warm-up the peak resident
    /// size (getrusage) must not grow. Under ASan (whose quarantine holds freed memory) and TSan (whose shadow
    /// grows with every new heap address) the figures are only printed; ASan's leak checker judges there.
    func testCreateDestroyLoopDoesNotGrow() throws {
        let bytes = try description.serialized()
        let imageBytes = description.inputHeight * description.inputWidth * 3
        var rng = SeededGenerator(seed: 78)
        let images = rng.bytes(3 * imageBytes)
        let kernels = (1...qarep_kernel_count()).map { qarep_kernel(rawValue: UInt32($0)) }.filter { qarep_kernel_supported($0) != 0 }
        let failures = LockedList<Int>()
        let classes = description.numClasses
        func cycle(_ round: Int) {
            DispatchQueue.concurrentPerform(iterations: 4) { t in
                var model: OpaquePointer? = nil
                guard bytes.withUnsafeBytes({ qarep_model_load_memory($0.baseAddress, $0.count, &model) }) == QAREP_OK, let model,
                      let session = Self.session(model, threads: Int32(1 + (round + t) % 3), maxBatch: 3,
                                                 kernel: kernels[(round + t) % kernels.count]) else {
                    failures.append(1)
                    return
                }
                qarep_model_release(model)
                if Self.run(session, images, imageBytes: imageBytes, batch: 1 + t % 3, classes: classes) == nil {
                    failures.append(1)
                }
                qarep_session_destroy(session)
            }
        }
        for round in 0..<20 { cycle(round) }
        let warm = (peak: peakResidentKilobytes(), now: residentKilobytes())
        let rounds = 100
        for round in 0..<rounds { cycle(round) }
        let grown = (peak: peakResidentKilobytes() - warm.peak, now: residentKilobytes() - warm.now)
        XCTAssertEqual(failures.all.count, 0)
        print("create/destroy: \(rounds * 4) models and sessions after warm-up; peak RSS (getrusage) grew \(grown.peak) KB,",
              "resident size \(grown.now) KB")
        if Self.underSanitizer { return }
        // One leaked session holds about 50 KB here (workspace and packed model): 400 of them would be 20 MB. The
        // peak alone misses a leak that stays below what the process once held (400 leaked sessions grew the
        // resident size by 57 MB and the peak by 0 KB here), hence both.
        XCTAssertLessThanOrEqual(grown.peak, 2048, "peak RSS grew \(grown.peak) KB over \(rounds * 4) create/destroy cycles")
        XCTAssertLessThanOrEqual(grown.now, 2048, "RSS grew \(grown.now) KB over \(rounds * 4) create/destroy cycles")
    }

    private func peakResidentKilobytes() -> Int {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return usage.ru_maxrss
    }

    /// The resident size now (Linux: /proc/self/statm's second field, in pages); 0 elsewhere.
    private func residentKilobytes() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8),
              let pages = text.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE))) / 1024
    }

    private static let underSanitizer = dlsym(nil, "__asan_init") != nil || dlsym(nil, "__tsan_init") != nil
}

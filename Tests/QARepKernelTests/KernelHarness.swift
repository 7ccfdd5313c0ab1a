// Calls the C kernels the way the runtime does, with buffers that prove the contract: inputs carry
// QK_EXTRA_BYTES of random garbage after their end, outputs are fenced by guard bytes that must survive.
import CQARepKernels

let extraBytes = Int(QK_EXTRA_BYTES)
/// Every path of the kernels' table (qk_paths.h), whether or not this CPU runs it.
let tablePaths: [qk_path] = (0..<QK_PATH_COUNT.rawValue).map { qk_path(rawValue: $0) }
/// The test-only paths (qk_paths.h: the AVX-VNNI microkernels as their EVEX twin), numbered after the gap at
/// QK_PATH_COUNT; the kernel tests run them like any other path.
let testOnlyPaths: [qk_path] = ((QK_PATH_COUNT.rawValue + 1)..<QK_PATH_TEST_END.rawValue).map { qk_path(rawValue: $0) }
/// Every path the kernel tests run where the CPU has it.
let allPaths: [qk_path] = tablePaths + testOnlyPaths
let threadCounts: [Int32] = [1, 2, 3]

func pathName(_ path: qk_path) -> String { qk_path_name(path).map { String(cString: $0) } ?? "unknown" }

/// The CPU features /proc/cpuinfo lists (empty where it has no features line).
let cpuFlags: Set<String> = {
    guard let cpuinfo = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
          // x86 lists its features on "flags" lines, ARM on "Features" lines.
          let line = cpuinfo.split(separator: "\n").first(where: { $0.hasPrefix("flags") || $0.hasPrefix("Features") })
    else { return [] }
    return Set(line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == ":" }).map(String.init))
}()

/// Each path this CPU cannot run, by name, with the features it lacks: "avxvnni (CPU lacks avx_vnni)".
func pathsNotRun() -> String {
    let missing = allPaths.filter { qk_path_supported($0) == 0 }.map { path in
        let needed = (qk_path_linux_cpu_flags(path).map { String(cString: $0) } ?? "").split(separator: " ").map(String.init)
        let lacking = cpuFlags.isEmpty ? needed : needed.filter { !cpuFlags.contains($0) }
        return "\(pathName(path)) (CPU lacks \(lacking.joined(separator: " ")))"
    }
    return missing.isEmpty ? "none" : missing.joined(separator: ", ")
}

/// The readable slack after an input, filled with garbage that must never reach a result.
func withGarbageSlack(_ data: [UInt8], _ rng: inout SeededGenerator) -> [UInt8] { data + rng.bytes(extraBytes) }

/// Runs `body` on a buffer of `count` elements fenced by guard zones of a fixed pattern, and reports
/// the payload plus whether the guards survived.
func withGuardedOutput<T: FixedWidthInteger>(_: T.Type, count: Int,
                                             _ body: (UnsafeMutablePointer<T>) -> Void) -> (payload: [T], guardsIntact: Bool) {
    let guardCount = 64
    let pattern = T(truncatingIfNeeded: 0xA5A5_A5A5)
    var storage = [T](repeating: pattern, count: count + 2 * guardCount)
    storage.withUnsafeMutableBufferPointer { buffer in
        if let base = buffer.baseAddress { body(base + guardCount) }
    }
    let guardsIntact = storage[..<guardCount].allSatisfy { $0 == pattern } &&
        storage[(guardCount + count)...].allSatisfy { $0 == pattern }
    return (Array(storage[guardCount..<(guardCount + count)]), guardsIntact)
}

/// A 64-byte aligned allocation, as the kernels require of packed weights.
final class AlignedBytes {
    let pointer: UnsafeMutableRawPointer
    init(byteCount: Int) {
        pointer = UnsafeMutableRawPointer.allocate(byteCount: max(byteCount, 1), alignment: 64)
    }
    deinit { pointer.deallocate() }
}

struct ConvData {
    var weights: [Int8], bias: [Int32], multiplier: [Float], pad: [UInt8], input: [UInt8]

    /// Multipliers and biases spread outputs over the whole uint8 range: most channels land mid-range,
    /// some are pushed to 255 or to 0 by huge biases, and the `tiny weights` variant (weights in -1...1,
    /// multipliers 1/2 and 1/4) produces exact .5 ties for round-half-to-even.
    static func random(_ c: ConvCase, _ rng: inout SeededGenerator, tinyWeights: Bool = false) -> ConvData {
        let weights = rng.weights(c.weightCount, magnitude: tinyWeights ? 1 : 127)
        let accScale = (Double(9 * c.inPerGroup)).squareRoot() * 147 * (tinyWeights ? 0.8 : 73)
        // The loader guarantees |bias| + 9 * in_per_group * 255 * 127 < 2^31; stay inside it.
        let hugeBias = min(100_000_000, Int(Int32.max) - 9 * c.inPerGroup * 255 * 127 - 1)
        var bias = [Int32](), multiplier = [Float]()
        for _ in 0..<c.outC {
            switch Int.random(in: 0..<10, using: &rng) {
            case 0: bias.append(Int32(hugeBias))
            case 1: bias.append(Int32(-hugeBias))
            default: bias.append(Int32(Double.random(in: -2...2, using: &rng) * accScale))
            }
            if tinyWeights {
                multiplier.append(Bool.random(using: &rng) ? 0.5 : 0.25)
            } else {
                multiplier.append(Float(128 / (accScale * Double.random(in: 0.3...3, using: &rng))))
            }
        }
        let pad = withGarbageSlack((0..<c.inC).map { _ in UInt8.random(in: 1...255, using: &rng) }, &rng)
        let input = withGarbageSlack(rng.bytes(c.inputCount), &rng)
        return ConvData(weights: weights, bias: bias, multiplier: multiplier, pad: pad, input: input)
    }
}

/// One conv layer on `path`; nil when the path cannot pack this shape (unsupported path).
func runConv(_ path: qk_path, _ c: ConvCase, _ data: ConvData, threads: Int32) -> (payload: [UInt8], guardsIntact: Bool)? {
    var shape = c.shape
    let size = qk_conv3x3_packed_size(path, &shape)
    if size == 0 { return nil }
    let packed = AlignedBytes(byteCount: size)
    qk_conv3x3_pack(path, &shape, data.weights, packed.pointer)
    return withGuardedOutput(UInt8.self, count: c.outputCount) { output in
        qk_conv3x3_u8(path, &shape, Int32(c.batch), packed.pointer, data.bias, data.multiplier, data.pad,
                      data.input, output, threads)
    }
}

func firstMismatch<T: Equatable>(_ a: [T], _ b: [T]) -> String {
    guard a.count == b.count else { return "lengths \(a.count) vs \(b.count)" }
    guard let i = a.indices.first(where: { a[$0] != b[$0] }) else { return "none" }
    return "index \(i): \(a[i]) vs \(b[i])"
}

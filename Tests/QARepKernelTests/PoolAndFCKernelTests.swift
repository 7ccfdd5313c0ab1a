import CQARepKernels
import XCTest

final class PoolAndFCKernelTests: XCTestCase {
    static let baseSeed: UInt64 = 0xA11_600D_F00D

    func testAveragePoolMatchesNaiveSpecOnEveryPathAndThreadCount() {
        // (batch, pixels, channels, multiplier scale): 1-pixel pools with a multiplier of 1/2 give exact
        // ties; scale 2 saturates at 255; a tiny scale drives everything to 0.
        let cases: [(Int, Int, Int, Float)] = [
            (1, 49, 1280, 1), (2, 49, 1283, 2), (3, 1, 17, 0.5), (5, 4, 64, 1), (1, 3, 1, 1),
            (4, 50, 100, 2), (2, 1, 200, 0.5), (1, 9, 31, 1e-6), (3, 7, 33, 1), (1, 2, 65, 0.5),
        ]
        var coverage = RequantizeCoverage()
        var compared = Set<String>()
        for (index, (batch, pixels, channels, scale)) in cases.enumerated() {
            let seed = Self.baseSeed &+ UInt64(index)
            var rng = SeededGenerator(seed: seed)
            let input = withGarbageSlack(rng.bytes(batch * pixels * channels), &rng)
            let multiplier = pixels == 1 ? scale : scale / Float(pixels)
            let context = "seed \(seed) batch \(batch) pixels \(pixels) channels \(channels) multiplier \(multiplier)"
            let expected = NaiveReference.avgpool(batch: batch, pixels: pixels, channels: channels, input: input,
                                                  multiplier: multiplier, coverage: &coverage)
            for path in allPaths where qk_path_supported(path) != 0 {
                for threads in threadCounts {
                    let result = withGuardedOutput(UInt8.self, count: batch * channels) { output in
                        qk_global_avgpool_u8(path, Int32(batch), Int32(pixels), Int32(channels), input, multiplier,
                                             output, threads)
                    }
                    XCTAssertTrue(result.guardsIntact, "\(pathName(path)) x\(threads) wrote outside: \(context)")
                    XCTAssertTrue(result.payload == expected,
                                  "\(pathName(path)) x\(threads) at \(firstMismatch(result.payload, expected)): \(context)")
                }
                compared.insert(pathName(path))
            }
        }
        XCTAssertEqual(compared, Set(allPaths.filter { qk_path_supported($0) != 0 }.map(pathName)))
        print("avgpool paths compared on this CPU: \(compared.sorted())")
        XCTAssertGreaterThan(coverage.zeros, 0, "coverage \(coverage)")
        XCTAssertGreaterThan(coverage.saturated, 0, "coverage \(coverage)")
        XCTAssertGreaterThan(coverage.between, 0, "coverage \(coverage)")
        XCTAssertGreaterThan(coverage.ties, 0, "coverage \(coverage)")
    }

    func testFullyConnectedMatchesNaiveSpecBitForBit() {
        let cases: [(batch: Int, inC: Int, outC: Int)] = [
            (1, 1280, 1000), (3, 17, 33), (5, 3, 1), (2, 64, 16), (1, 100, 10), (4, 1283, 37), (2, 1, 8), (1, 5, 17),
        ]
        var compared = Set<String>()
        for (index, c) in cases.enumerated() {
            let seed = Self.baseSeed &+ 100 &+ UInt64(index)
            var rng = SeededGenerator(seed: seed)
            let weight = rng.weights(c.inC * c.outC)
            let bias = (0..<c.outC).map { _ in Int32.random(in: -50_000_000...50_000_000, using: &rng) }
            let multiplier = (0..<c.outC).map { _ in Float.random(in: 1e-6...1e-3, using: &rng) }
            let input = withGarbageSlack(rng.bytes(c.batch * c.inC), &rng)
            let context = "seed \(seed) batch \(c.batch) \(c.inC) -> \(c.outC)"
            let expected = NaiveReference.fc(batch: c.batch, inC: c.inC, outC: c.outC, weight: weight, bias: bias,
                                             multiplier: multiplier, input: input).map(\.bitPattern)
            for path in allPaths where qk_path_supported(path) != 0 {
                let size = qk_fc_packed_size(path, Int32(c.inC), Int32(c.outC))
                XCTAssertGreaterThan(size, 0, "\(pathName(path)) refused \(context)")
                let packed = AlignedBytes(byteCount: size)
                qk_fc_pack(path, Int32(c.inC), Int32(c.outC), weight, packed.pointer)
                for threads in threadCounts {
                    let result = withGuardedOutput(UInt32.self, count: c.batch * c.outC) { output in
                        output.withMemoryRebound(to: Float.self, capacity: c.batch * c.outC) { logits in
                            XCTAssertEqual(qk_fc_u8(path, Int32(c.batch), Int32(c.inC), Int32(c.outC), packed.pointer, bias,
                                                    multiplier, input, logits, threads), QK_OK)
                        }
                    }
                    XCTAssertTrue(result.guardsIntact, "\(pathName(path)) x\(threads) wrote outside: \(context)")
                    XCTAssertTrue(result.payload == expected,
                                  "\(pathName(path)) x\(threads) at \(firstMismatch(result.payload, expected)): \(context)")
                }
                compared.insert(pathName(path))
            }
        }
        XCTAssertEqual(compared, Set(allPaths.filter { qk_path_supported($0) != 0 }.map(pathName)))
        print("fc paths compared on this CPU: \(compared.sorted())")
    }
}

import CQARepKernels
import XCTest

final class ConvKernelTests: XCTestCase {
    static let baseSeed: UInt64 = 0x5EED_C0DE_2024

    /// Checks one case: scalar oracle against the naive Swift statement of the spec (when `naive`), then
    /// every supported path at every thread count against the scalar oracle, byte for byte.
    /// Returns the paths actually compared.
    @discardableResult
    func check(_ c: ConvCase, seed: UInt64, naive: Bool, tinyWeights: Bool = false,
               coverage: inout RequantizeCoverage) -> Set<String> {
        var rng = SeededGenerator(seed: seed)
        let data = ConvData.random(c, &rng, tinyWeights: tinyWeights)
        let context = "seed \(seed) case \(c)"
        guard let oracle = runConv(QK_PATH_SCALAR, c, data, threads: 1) else {
            XCTFail("scalar path refused a valid shape: \(context)")
            return []
        }
        XCTAssertTrue(oracle.guardsIntact, "scalar wrote outside its output: \(context)")
        if naive {
            let expected = NaiveReference.conv(c, weightsOIHW: data.weights, bias: data.bias,
                                               multiplier: data.multiplier, pad: data.pad, input: data.input,
                                               coverage: &coverage)
            XCTAssertTrue(oracle.payload == expected,
                          "scalar differs from the naive spec reference at \(firstMismatch(oracle.payload, expected)): \(context)")
        }
        var compared = Set<String>()
        for path in allPaths where qk_path_supported(path) != 0 {
            for threads in threadCounts {
                guard let result = runConv(path, c, data, threads: threads) else {
                    XCTFail("\(pathName(path)) is supported but refused the shape: \(context)")
                    continue
                }
                XCTAssertTrue(result.guardsIntact, "\(pathName(path)) x\(threads) wrote outside its output: \(context)")
                XCTAssertTrue(result.payload == oracle.payload,
                              "\(pathName(path)) x\(threads) differs from scalar at \(firstMismatch(result.payload, oracle.payload)): \(context)")
            }
            compared.insert(pathName(path))
        }
        return compared
    }

    func assertComparedEverySupportedPath(_ compared: Set<String>) {
        let supported = Set(allPaths.filter { qk_path_supported($0) != 0 }.map(pathName))
        XCTAssertEqual(compared, supported, "paths compared vs supported")
        print("conv paths compared on this CPU: \(compared.sorted()); not run: \(pathsNotRun())")
    }

    /// Every tile shape of every path: rows of 1 to 9 output pixels (each row width is one tile, or splits
    /// into tiles of every smaller size) times output channels filling 1 to 4 blocks of 16 (1 to 8 of 8),
    /// dense (3 channels) and tap by tap (24 channels).
    func testEveryTileShape() {
        var coverage = RequantizeCoverage()
        var compared = Set<String>()
        for width in 1...9 {
            for outC in [8, 16, 24, 40, 48, 56, 64] {
                for inC in [3, 24] {
                    let c = ConvCase(inH: 2, inW: width, inC: inC, outC: outC, stride: 1, groups: 1, batch: 1)
                    compared.formUnion(check(c, seed: Self.baseSeed &+ UInt64(1000 + width * 100 + outC + inC), naive: false,
                                             coverage: &coverage))
                }
            }
        }
        assertComparedEverySupportedPath(compared)
    }

    func testRandomShapesMatchNaiveSpecAndScalar() {
        var rng = SeededGenerator(seed: Self.baseSeed)
        var coverage = RequantizeCoverage()
        var compared = Set<String>()
        for index in 0..<60 {
            let groups = [1, 1, 2, 4].randomElement(using: &rng) ?? 1
            let c = ConvCase(inH: Int.random(in: 1...9, using: &rng), inW: Int.random(in: 1...9, using: &rng),
                             inC: groups * Int.random(in: 1...11, using: &rng),
                             outC: groups * Int.random(in: 1...26, using: &rng),
                             stride: Int.random(in: 1...2, using: &rng), groups: groups,
                             batch: Int.random(in: 1...3, using: &rng))
            compared.formUnion(check(c, seed: Self.baseSeed &+ UInt64(index), naive: true,
                                     tinyWeights: index % 5 == 4, coverage: &coverage))
        }
        assertComparedEverySupportedPath(compared)
        // The data must actually reach both clamps, the interior and exact halves, or the test proves little.
        XCTAssertGreaterThan(coverage.zeros, 100, "coverage \(coverage)")
        XCTAssertGreaterThan(coverage.saturated, 100, "coverage \(coverage)")
        XCTAssertGreaterThan(coverage.between, 1000, "coverage \(coverage)")
        XCTAssertGreaterThan(coverage.ties, 50, "coverage \(coverage)")
    }

    /// Shapes chosen for their edges: the 3-channel stem, 1x1 and 2x2 images, odd sizes with stride 2,
    /// groups whose channel counts are not multiples of 4, 8 or 16, several channel tiles, batches up to 5.
    func testEdgeShapesMatchNaiveSpecAndScalar() {
        let cases = [
            ConvCase(inH: 17, inW: 15, inC: 3, outC: 48, stride: 2, groups: 1, batch: 2),
            ConvCase(inH: 1, inW: 1, inC: 20, outC: 33, stride: 1, groups: 1, batch: 5),
            ConvCase(inH: 1, inW: 1, inC: 5, outC: 17, stride: 2, groups: 1, batch: 4),
            ConvCase(inH: 2, inW: 2, inC: 7, outC: 19, stride: 2, groups: 1, batch: 3),
            ConvCase(inH: 2, inW: 2, inC: 16, outC: 16, stride: 1, groups: 1, batch: 1),
            ConvCase(inH: 9, inW: 7, inC: 24, outC: 40, stride: 1, groups: 4, batch: 2),
            ConvCase(inH: 6, inW: 6, inC: 10, outC: 6, stride: 2, groups: 2, batch: 5),
            ConvCase(inH: 5, inW: 11, inC: 12, outC: 100, stride: 1, groups: 4, batch: 1),
            ConvCase(inH: 5, inW: 5, inC: 13, outC: 100, stride: 1, groups: 1, batch: 1),
            ConvCase(inH: 7, inW: 9, inC: 8, outC: 64, stride: 2, groups: 2, batch: 2),
            // Few input channels (window rows shared by all channel tiles of a group): 64 outputs are two
            // tiles, 2 x 56 two per group.
            ConvCase(inH: 9, inW: 11, inC: 3, outC: 64, stride: 2, groups: 1, batch: 2),
            ConvCase(inH: 6, inW: 5, inC: 8, outC: 112, stride: 1, groups: 2, batch: 3),
            // Four blocks of 16 per tile (AVX-512 picks them for 49-64 channels per group), with a partial
            // last block, pixel tiles of 5 + 4 + 4, and dense mode with two groups.
            ConvCase(inH: 5, inW: 13, inC: 9, outC: 50, stride: 1, groups: 1, batch: 2),
            ConvCase(inH: 7, inW: 17, inC: 4, outC: 120, stride: 2, groups: 2, batch: 1),
        ]
        var coverage = RequantizeCoverage()
        var compared = Set<String>()
        for (index, c) in cases.enumerated() {
            compared.formUnion(check(c, seed: Self.baseSeed &+ 1000 &+ UInt64(index), naive: true, coverage: &coverage))
        }
        assertComparedEverySupportedPath(compared)
    }

    /// Stems of 1 to 7 input channels (window rows built by copies: 16 bytes per kernel row up to 4 channels,
    /// 32 beyond), on images wide enough that a row has interior runs between both borders, and odd sizes
    /// so that a run can end one pixel before the right border at stride 2.
    func testFewChannelStemsMatchNaiveSpecAndScalar() {
        var cases: [ConvCase] = []
        for (index, inC) in [1, 2, 3, 4, 5, 7].enumerated() {
            for stride in 1...2 {
                cases.append(ConvCase(inH: 7 + index % 2, inW: stride == 1 ? 19 + index : 33 + index, inC: inC,
                                      outC: index % 2 == 0 ? 48 : 64, stride: stride, groups: 1, batch: 1 + index % 2))
            }
        }
        var coverage = RequantizeCoverage()
        var compared = Set<String>()
        for (index, c) in cases.enumerated() {
            compared.formUnion(check(c, seed: Self.baseSeed &+ 2000 &+ UInt64(index), naive: true, coverage: &coverage))
        }
        assertComparedEverySupportedPath(compared)
        XCTAssertGreaterThan(coverage.zeros, 100, "coverage \(coverage)")
        XCTAssertGreaterThan(coverage.between, 1000, "coverage \(coverage)")
    }

    /// Multipliers of 1 and more: t can exceed 2^31, where cvtps2dq overflows, so the SIMD paths must keep
    /// the float clamp at 255 (with every multiplier below 1 they narrow by saturation alone).
    func testMultipliersOfOneAndMoreSaturate() {
        let cases = [
            ConvCase(inH: 6, inW: 9, inC: 3, outC: 48, stride: 2, groups: 1, batch: 2),
            ConvCase(inH: 5, inW: 7, inC: 32, outC: 40, stride: 1, groups: 1, batch: 1),
        ]
        var compared = Set<String>()
        for (index, c) in cases.enumerated() {
            let seed = Self.baseSeed &+ 3000 &+ UInt64(index)
            var rng = SeededGenerator(seed: seed)
            var data = ConvData.random(c, &rng)
            // One channel at exactly 1 (below 1 elsewhere would not do: the largest decides), the rest up to
            // 4096 with biases of both signs large enough that |t| passes 2^31.
            data.multiplier = (0..<c.outC).map { o in o == 0 ? 1 : Float.random(in: 1...4096, using: &rng) }
            data.bias = (0..<c.outC).map { o in o % 3 == 0 ? 2_000_000 : (o % 3 == 1 ? -2_000_000 : Int32.random(in: -300...300, using: &rng)) }
            guard let oracle = runConv(QK_PATH_SCALAR, c, data, threads: 1) else { return XCTFail("scalar refused \(c)") }
            XCTAssertTrue(oracle.payload.contains(255) && oracle.payload.contains(0), "outputs must reach both clamps")
            for path in allPaths where qk_path_supported(path) != 0 {
                for threads in threadCounts {
                    let result = runConv(path, c, data, threads: threads)
                    XCTAssertTrue(result?.payload == oracle.payload,
                                  "\(pathName(path)) x\(threads) at \(firstMismatch(result?.payload ?? [], oracle.payload)): seed \(seed) \(c)")
                }
                compared.insert(pathName(path))
            }
        }
        assertComparedEverySupportedPath(compared)
    }

    /// RepVGG-A0-like layers and deep layers whose weights the SIMD paths process in tap slices, too big for the naive Swift reference in a debug build: SIMD vs scalar only.
    func testNetworkSizedLayersMatchScalar() {
        let cases = [
            ConvCase(inH: 32, inW: 32, inC: 3, outC: 48, stride: 2, groups: 1, batch: 1),
            ConvCase(inH: 14, inW: 14, inC: 48, outC: 48, stride: 1, groups: 1, batch: 2),
            ConvCase(inH: 14, inW: 14, inC: 96, outC: 96, stride: 1, groups: 1, batch: 1),
            ConvCase(inH: 13, inW: 13, inC: 96, outC: 192, stride: 2, groups: 1, batch: 1),
            ConvCase(inH: 7, inW: 7, inC: 64, outC: 1280, stride: 1, groups: 1, batch: 1),
            ConvCase(inH: 10, inW: 10, inC: 64, outC: 64, stride: 1, groups: 4, batch: 2),
            // Output blocks split evenly over channel tiles (which tiles depends on the path's tile shapes):
            // e.g. 2 + 2 or 4 (64), 3, 3, 2, 3, 2, 3 or 4 x 4 (256), 2 + 3 (80).
            ConvCase(inH: 9, inW: 14, inC: 64, outC: 64, stride: 1, groups: 1, batch: 2),
            ConvCase(inH: 5, inW: 7, inC: 32, outC: 256, stride: 2, groups: 1, batch: 1),
            ConvCase(inH: 6, inW: 6, inC: 20, outC: 80, stride: 1, groups: 1, batch: 3),
            // Deep and wide: weights split into tap slices, rows into several segments of pixel tiles.
            ConvCase(inH: 3, inW: 70, inC: 160, outC: 20, stride: 1, groups: 1, batch: 2),
            ConvCase(inH: 4, inW: 141, inC: 161, outC: 50, stride: 2, groups: 1, batch: 1),
            ConvCase(inH: 5, inW: 9, inC: 512, outC: 36, stride: 1, groups: 2, batch: 1),
            ConvCase(inH: 3, inW: 20, inC: 1200, outC: 40, stride: 1, groups: 1, batch: 1),
            // Tap slices carrying the sums of four-block tiles (64 lanes), the last block partial.
            ConvCase(inH: 3, inW: 13, inC: 1200, outC: 61, stride: 1, groups: 1, batch: 1),
            // Weights over 512 KB in int16 on a direct (stride-2) layer: the widening paths' longer segments
            // (16 pixel tiles, bands of twice the height) carrying sums between tap slices, several images.
            ConvCase(inH: 28, inW: 28, inC: 128, outC: 512, stride: 2, groups: 1, batch: 2),
        ]
        var coverage = RequantizeCoverage()
        var compared = Set<String>()
        for (index, c) in cases.enumerated() {
            compared.formUnion(check(c, seed: Self.baseSeed &+ 2000 &+ UInt64(index), naive: false, coverage: &coverage))
        }
        assertComparedEverySupportedPath(compared)
    }
}

import CQARepKernels
import XCTest

/// The exact Winograd F(2x2,3x3) kernels (driver/winograd.h), and their stride-2 form over the input's phases,
/// forced on through the testing entry so that every shape runs them whatever the cost model picks, against
/// the scalar oracle byte for byte; the transformed weights' round trip; the channel bounds; and which layers
/// the cost model gives them.
final class WinogradKernelTests: XCTestCase {
    /// Runs the case on every supported path that has Winograd kernels, at 1-3 threads. Returns those paths.
    @discardableResult
    func check(_ c: ConvCase, _ data: ConvData, context: String) -> Set<String> {
        guard let oracle = runConv(QK_PATH_SCALAR, c, data, threads: 1) else {
            XCTFail("scalar refused \(context)")
            return []
        }
        var ran = Set<String>()
        // Stride 1 runs with F(2x2,3x3) and, where the path has it, with F(4x4,3x3).
        let forms: [Int32] = c.shape.stride == 1 && c.inC / c.groups <= 800 ? [-1, 1] : [0]
        defer { qk_testing_winograd_force_4x4(0) }
        for form in forms {
        for path in allPaths where qk_path_supported(path) != 0 {
            if form == 1 && qk_testing_path_has_winograd_4x4(path) == 0 { continue }
            qk_testing_winograd_force_4x4(form)
            let context = form == 1 ? context + ", F(4x4,3x3)" : context
            for threads in threadCounts {
                var shape = c.shape
                var unpacked = [Int8](repeating: 0, count: c.weightCount)
                var status = QK_OK
                let result = withGuardedOutput(UInt8.self, count: c.outputCount) { output in
                    status = qk_testing_conv3x3_winograd(path, &shape, Int32(c.batch), data.weights, data.bias, data.multiplier,
                                                         data.pad, data.input, output, threads, &unpacked)
                }
                if status == QK_ERROR_UNSUPPORTED_PATH { break }
                ran.insert(pathName(path))
                XCTAssertEqual(status, QK_OK, "\(pathName(path)) x\(threads): \(context)")
                XCTAssertTrue(result.guardsIntact, "\(pathName(path)) x\(threads) wrote outside its output: \(context)")
                XCTAssertTrue(result.payload == oracle.payload,
                              "\(pathName(path)) x\(threads) differs from scalar at \(firstMismatch(result.payload, oracle.payload)): \(context)")
                XCTAssertEqual(unpacked, data.weights, "\(pathName(path)) transformed weights do not unpack: \(context)")
                if form == 1 { ran.insert(pathName(path) + "-4x4") }
            }
        }
        }
        return ran
    }

    func testRandomShapesMatchScalar() {
        var rng = SeededGenerator(seed: 0x3A11_AD0)
        var ran = Set<String>()
        for i in 0..<60 {
            let groups = [1, 1, 1, 2, 4][Int.random(in: 0..<5, using: &rng)]
            let side = i % 4 == 0 ? 56 : 20
            let c = ConvCase(inH: Int.random(in: 1...side, using: &rng), inW: Int.random(in: 1...side, using: &rng),
                             inC: groups * Int.random(in: 1...40, using: &rng), outC: groups * Int.random(in: 1...40, using: &rng),
                             stride: i % 3 == 1 ? 2 : 1, groups: groups, batch: Int.random(in: 1...3, using: &rng))
            let data = ConvData.random(c, &rng, tinyWeights: i % 6 == 5)
            ran.formUnion(check(c, data, context: "case \(i): \(c)"))
        }
        let withKernels = ["avx2", "avx512bw", "neon", "avx2-4x4", "avxvnni", "avxvnni-4x4", "avxvnni-evex", "avxvnni-evex-4x4"]
        let expected = Set(allPaths.filter { qk_path_supported($0) != 0 }.map(pathName).flatMap { [$0, $0 + "-4x4"] }
            .filter(withKernels.contains))
        XCTAssertEqual(ran, expected)
        print("winograd compared with scalar on this CPU (-4x4: F(4x4,3x3)): \(ran.sorted()); not run here: "
            + "\(Set(withKernels).subtracting(ran).sorted())")
    }

    /// Packing is plain C, so every path with Winograd kernels is checked here, whether or not this CPU runs it:
    /// the whole units the library writes against each value written at its own offset.
    func testPackingMatchesValueByValueOnEveryPath() {
        var rng = SeededGenerator(seed: 0x9AC4)
        var checked = Set<String>()
        defer { qk_testing_winograd_force_4x4(0) }
        for i in 0..<24 {
            let groups = [1, 1, 2, 4][Int.random(in: 0..<4, using: &rng)]
            let c = ConvCase(inH: Int.random(in: 1...12, using: &rng), inW: Int.random(in: 1...12, using: &rng),
                             inC: groups * Int.random(in: 1...70, using: &rng), outC: groups * Int.random(in: 1...70, using: &rng),
                             stride: i % 3 == 1 ? 2 : 1, groups: groups, batch: 1)
            let data = ConvData.random(c, &rng)
            for form: Int32 in c.shape.stride == 1 ? [-1, 1] : [0] {
                for path in allPaths {
                    if form == 1 && qk_testing_path_has_winograd_4x4(path) == 0 { continue }
                    qk_testing_winograd_force_4x4(form)
                    var shape = c.shape
                    let matches = qk_testing_winograd_packing_matches(path, &shape, data.weights)
                    if matches < 0 { continue }
                    checked.insert(pathName(path) + (form == 1 ? "-4x4" : ""))
                    XCTAssertEqual(matches, 1, "\(pathName(path)) packs other bytes than value by value: case \(i): \(c)\(form == 1 ? ", F(4x4,3x3)" : "")")
                }
            }
        }
        // Every path this build has Winograd kernels for (neon only in ARM builds).
        #if arch(arm64)
        let expected: Set = ["neon", "neon-4x4"]
        #else
        let expected: Set = ["avx2", "avx2-4x4", "avx512bw", "avxvnni", "avxvnni-4x4", "avxvnni-evex", "avxvnni-evex-4x4"]
        #endif
        XCTAssertEqual(checked, expected)
    }

    func testEdgeShapesMatchScalar() {
        var rng = SeededGenerator(seed: 95)
        let edges = [
            ConvCase(inH: 1, inW: 1, inC: 8, outC: 8, stride: 1, groups: 1, batch: 2),
            ConvCase(inH: 2, inW: 3, inC: 16, outC: 24, stride: 1, groups: 1, batch: 1),
            ConvCase(inH: 9, inW: 1, inC: 12, outC: 40, stride: 1, groups: 1, batch: 1),
            // The stem's 3 channels with per-channel pad values (a CIFAR-style stride-1 stem).
            ConvCase(inH: 32, inW: 32, inC: 3, outC: 16, stride: 1, groups: 1, batch: 1),
            ConvCase(inH: 8, inW: 8, inC: 32, outC: 100, stride: 1, groups: 4, batch: 2),
            ConvCase(inH: 5, inW: 5, inC: 200, outC: 200, stride: 1, groups: 1, batch: 1),
            // Stride 2: images whose one tile's 5x5 patch reaches past every side, odd outputs, the stem's
            // channels, groups, several tiles per call.
            ConvCase(inH: 1, inW: 1, inC: 8, outC: 8, stride: 2, groups: 1, batch: 2),
            ConvCase(inH: 5, inW: 3, inC: 16, outC: 24, stride: 2, groups: 1, batch: 1),
            ConvCase(inH: 9, inW: 1, inC: 12, outC: 40, stride: 2, groups: 1, batch: 1),
            ConvCase(inH: 7, inW: 7, inC: 3, outC: 16, stride: 2, groups: 1, batch: 1),
            ConvCase(inH: 11, inW: 13, inC: 32, outC: 100, stride: 2, groups: 4, batch: 2),
            ConvCase(inH: 28, inW: 28, inC: 48, outC: 96, stride: 2, groups: 1, batch: 1),
        ]
        for c in edges { check(c, ConvData.random(c, &rng), context: "\(c)") }
    }

    /// All inputs and pad values 255 and every weight +127 or -127 at the channel bounds: the largest sums
    /// either sign can reach. The bias brings each channel back to 7 * o with multiplier 1, so the bytes show
    /// whether the sums stayed exact: at stride 1, 1841 channels, where 4 * acc must fit int32 (at 1842 this
    /// fails: shown once); at stride 2, 1152, the stack buffer's bound (its sums are the direct ones); and
    /// F(4x4,3x3)'s 800, summed in channel groups whose |acc| stays below 2^25.
    func testAdversarialMaximaAtTheChannelBound() {
        var rng = SeededGenerator(seed: 97)
        for (channels, stride) in [(1841, 1), (1152, 2), (800, 1)] {
            for sign in [-1, 1] {
                let c = ConvCase(inH: 5, inW: 6, inC: channels, outC: 20, stride: stride, groups: 1, batch: 1)
                var data = ConvData.random(c, &rng)
                data.weights = [Int8](repeating: Int8(127 * sign), count: c.weightCount)
                data.input = [UInt8](repeating: 255, count: c.inputCount) + [UInt8](repeating: 0, count: extraBytes)
                data.pad = [UInt8](repeating: 255, count: c.inC + extraBytes)
                let sum = Int32(255 * 127 * 9 * channels * sign)
                data.bias = (0..<c.outC).map { -sum + Int32(7 * $0) }
                data.multiplier = [Float](repeating: 1, count: c.outC)
                let oracle = runConv(QK_PATH_SCALAR, c, data, threads: 1)
                XCTAssertEqual(oracle?.payload, (0..<c.outputCount).map { UInt8(7 * ($0 % 20)) })
                check(c, data, context: "maxima, \(channels) channels, stride \(stride), weights \(127 * sign)")
            }
        }
        // One channel more: never Winograd, neither chosen nor forced.
        for (channels, stride) in [(1842, 1), (1153, 2)] {
            var over = ConvCase(inH: 4, inW: 4, inC: channels, outC: 16, stride: stride, groups: 1, batch: 1).shape
            var weights = [Int8](repeating: 0, count: 16 * channels * 9), unpacked = weights
            let bias = [Int32](repeating: 0, count: 16), multiplier = [Float](repeating: 1, count: 16)
            let input = [UInt8](repeating: 0, count: 16 * channels + extraBytes)
            let pad = [UInt8](repeating: 0, count: channels + extraBytes)
            var output = [UInt8](repeating: 0, count: 16 * 16)
            for path in allPaths where qk_path_supported(path) != 0 {
                let context = "\(pathName(path)), \(channels) channels, stride \(stride)"
                XCTAssertFalse(qk_conv3x3_algorithm(path, &over).map { String(cString: $0) }?.hasPrefix("winograd") ?? true, context)
                XCTAssertEqual(qk_conv3x3_winograd_bytes(path, &over), 0, context)
                XCTAssertEqual(qk_testing_conv3x3_winograd(path, &over, 1, &weights, bias, multiplier, pad, input, &output, 1,
                                                           &unpacked), QK_ERROR_UNSUPPORTED_PATH, context)
            }
        }
    }

    /// The cost model gives Winograd RepVGG's stride-1 layers of 48 channels and more on the int16 paths, and
    /// their stride-2 layers except the last (weights past 2 MB); on avxvnni (the avx2 kernels against its
    /// vpdpbusd) the 56x56 and 28x28 stride-1 layers only; never the 3-channel stem, a 1x1 image, or a path
    /// without the kernels.
    func testCostModelChoice() {
        for path in allPaths where qk_path_supported(path) != 0 {
            let name = pathName(path)
            let hasWinograd = ["avx2", "avx512bw", "neon"].contains(name)
            let byteDirect = ["avxvnni", "avxvnni-evex"].contains(name)
            for (side, channels) in [(56, 48), (28, 96), (14, 192), (56, 64), (28, 128), (14, 256)] {
                var shape = ConvCase(inH: side, inW: side, inC: channels, outC: channels, stride: 1, groups: 1, batch: 1).shape
                let algorithm = qk_conv3x3_algorithm(path, &shape).map { String(cString: $0) }
                // avx2 has F(4x4,3x3) too, which the cost model prefers on these sides.
                let expected = byteDirect ? (side >= 28 ? "winograd-4x4" : "direct")
                    : !hasWinograd ? "direct" : name == "avx2" ? "winograd-4x4" : "winograd"
                XCTAssertEqual(algorithm, expected, "\(name) \(side)x\(side)x\(channels)")
                // 16 (F(4x4,3x3): 36) positions of int16 per weight: 32 / 9 times the direct int16 units' bytes, before padding.
                if hasWinograd { XCTAssertGreaterThanOrEqual(qk_conv3x3_winograd_bytes(path, &shape), 32 * channels * channels) }
            }
            // A0's and B0's stride-2 layers: input side, input and output channels.
            let hasStride2 = hasWinograd
            for (side, inC, outC, streamed) in [(112, 48, 48, false), (56, 48, 96, false), (28, 96, 192, false), (14, 192, 1280, true),
                                                (112, 64, 64, false), (56, 64, 128, false), (28, 128, 256, false),
                                                (14, 256, 1280, true)] {
                var strided = ConvCase(inH: side, inW: side, inC: inC, outC: outC, stride: 2, groups: 1, batch: 1).shape
                let algorithm = qk_conv3x3_algorithm(path, &strided).map { String(cString: $0) }
                XCTAssertEqual(algorithm, hasStride2 && !streamed ? "winograd" : "direct", "\(name) \(side)x\(side)x\(inC)->\(outC) s2")
                // 25 positions of int16 per weight.
                if hasStride2 && !streamed { XCTAssertGreaterThanOrEqual(qk_conv3x3_winograd_bytes(path, &strided), 50 * inC * outC) }
            }
            // A 1x1 image: one tile pays 16 products for one output, 9 direct ones are cheaper.
            var single = ConvCase(inH: 1, inW: 1, inC: 64, outC: 64, stride: 1, groups: 1, batch: 1).shape
            XCTAssertEqual(qk_conv3x3_algorithm(path, &single).map { String(cString: $0) }, "direct")
            var stem = ConvCase(inH: 32, inW: 32, inC: 3, outC: 48, stride: 1, groups: 1, batch: 1).shape
            XCTAssertEqual(qk_conv3x3_algorithm(path, &stem).map { String(cString: $0) }, name == "scalar" ? "direct" : "direct-dense")
        }
    }
}

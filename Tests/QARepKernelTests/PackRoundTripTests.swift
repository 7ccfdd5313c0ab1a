// qk_conv3x3_unpack and qk_fc_unpack must be the exact inverse of the pack functions on every path: the
// runtime keeps only packed weights and rebuilds the OIHW ones (for another path, or for
// Model.description) by unpacking.
import CQARepKernels
import XCTest

final class PackRoundTripTests: XCTestCase {
    /// Grouped, odd channel counts (partial chunks and partial blocks), the dense-mode stem (3 and 7 input
    /// channels per group), one tile and several tiles per group, plus randomized shapes.
    func convShapes(_ rng: inout SeededGenerator) -> [ConvCase] {
        var cases = [
            ConvCase(inH: 8, inW: 8, inC: 3, outC: 48, stride: 2, groups: 1, batch: 1),
            ConvCase(inH: 5, inW: 5, inC: 3, outC: 5, stride: 1, groups: 1, batch: 1),
            ConvCase(inH: 4, inW: 4, inC: 14, outC: 22, stride: 1, groups: 2, batch: 1),
            ConvCase(inH: 4, inW: 4, inC: 13, outC: 17, stride: 1, groups: 1, batch: 1),
            ConvCase(inH: 4, inW: 4, inC: 64, outC: 64, stride: 1, groups: 4, batch: 1),
            ConvCase(inH: 4, inW: 4, inC: 48, outC: 200, stride: 2, groups: 1, batch: 1),
            ConvCase(inH: 3, inW: 3, inC: 9, outC: 9, stride: 1, groups: 9, batch: 1),
        ]
        for _ in 0..<12 {
            let groups = [1, 1, 2, 3, 4].randomElement(using: &rng) ?? 1
            let inPerGroup = Int.random(in: 1...40, using: &rng), outPerGroup = Int.random(in: 1...70, using: &rng)
            cases.append(ConvCase(inH: 3, inW: 3, inC: inPerGroup * groups, outC: outPerGroup * groups,
                                  stride: 1, groups: groups, batch: 1))
        }
        return cases
    }

    /// The blocked layout for geometries no path in the table uses yet: 4 to 32 lanes, chunks of 4 and 8
    /// (an smmla path's depth), with and without a per-block trailer of weight sums (an sdot path's
    /// correction), on the same shapes, the dense-mode stems included.
    func testBlockedLayoutHoldsForOtherGeometries() {
        var rng = SeededGenerator(seed: 0x5EED_0003)
        for c in convShapes(&rng) {
            let weights = rng.weights(c.weightCount)
            var shape = c.shape
            for lanes: Int32 in [4, 8, 16, 32] {
                for depth: Int32 in [4, 8] {
                    for trailer: Int32 in [0, 1] {
                        XCTAssertEqual(qk_testing_blocked_packing_round_trip(lanes, depth, trailer, &shape, weights), 1,
                                       "lanes \(lanes) depth \(depth) trailer \(trailer) \(c)")
                    }
                }
            }
        }
        var shape = qk_conv_shape(in_h: 4, in_w: 4, in_c: 4, out_c: 4, stride: 1, groups: 1)
        XCTAssertEqual(qk_testing_blocked_packing_round_trip(64, 4, 0, &shape, [Int8](repeating: 1, count: 144)), 0,
                       "more lanes than a unit can hold accepted")
    }

    func testConvUnpackInvertsPackOnEveryPath() throws {
        var rng = SeededGenerator(seed: 0x5EED_0001)
        var checkedPaths = Set<UInt32>()
        for c in convShapes(&rng) {
            let weights = rng.weights(c.weightCount)
            for path in allPaths where qk_path_supported(path) != 0 {
                var shape = c.shape
                let size = qk_conv3x3_packed_size(path, &shape)
                XCTAssertGreaterThan(size, 0, "\(pathName(path)) \(c)")
                let packed = AlignedBytes(byteCount: size)
                packed.pointer.initializeMemory(as: UInt8.self, repeating: 0xEE, count: size)
                qk_conv3x3_pack(path, &shape, weights, packed.pointer)
                // A sentinel everywhere: an element unpack forgets would keep it (weights never hold -128).
                var unpacked = [Int8](repeating: -128, count: c.weightCount)
                qk_conv3x3_unpack(path, &shape, packed.pointer, &unpacked)
                XCTAssertEqual(unpacked, weights, "\(pathName(path)) \(c)")
                // Packing what came back reproduces the packed bytes, padding included.
                let repacked = AlignedBytes(byteCount: size)
                qk_conv3x3_pack(path, &shape, unpacked, repacked.pointer)
                XCTAssertEqual(memcmp(packed.pointer, repacked.pointer, size), 0, "\(pathName(path)) \(c)")
                checkedPaths.insert(path.rawValue)
            }
        }
        XCTAssertTrue(checkedPaths.contains(QK_PATH_SCALAR.rawValue))
    }

    func testFCUnpackInvertsPackOnEveryPath() {
        var rng = SeededGenerator(seed: 0x5EED_0002)
        var shapes = [(1, 1), (3, 5), (4, 16), (13, 17), (192, 1000), (1280, 10), (64, 33)]
        for _ in 0..<8 { shapes.append((Int.random(in: 1...300, using: &rng), Int.random(in: 1...300, using: &rng))) }
        for (inC, outC) in shapes {
            let weights = rng.weights(inC * outC)
            for path in allPaths where qk_path_supported(path) != 0 {
                let size = qk_fc_packed_size(path, Int32(inC), Int32(outC))
                XCTAssertGreaterThan(size, 0)
                let packed = AlignedBytes(byteCount: size)
                qk_fc_pack(path, Int32(inC), Int32(outC), weights, packed.pointer)
                var unpacked = [Int8](repeating: -128, count: inC * outC)
                qk_fc_unpack(path, Int32(inC), Int32(outC), packed.pointer, &unpacked)
                XCTAssertEqual(unpacked, weights, "\(pathName(path)) fc \(inC) -> \(outC)")
            }
        }
    }

    /// The entry points validate like the pack ones: a bad shape, path or pointer writes nothing.
    func testUnpackRejectsInvalidArgumentsWithoutWriting() {
        let packed = AlignedBytes(byteCount: 4096)
        packed.pointer.initializeMemory(as: UInt8.self, repeating: 1, count: 4096)
        var output = [Int8](repeating: 7, count: 1024)
        var badShape = qk_conv_shape(in_h: 4, in_w: 4, in_c: 6, out_c: 8, stride: 1, groups: 4)
        var goodShape = qk_conv_shape(in_h: 4, in_w: 4, in_c: 4, out_c: 8, stride: 1, groups: 1)
        let unknown = QK_PATH_COUNT  // the gap before the test-only paths: not a path
        for path in allPaths + [unknown] {
            qk_conv3x3_unpack(path, &badShape, packed.pointer, &output)
            qk_conv3x3_unpack(path, nil, packed.pointer, &output)
            qk_conv3x3_unpack(path, &goodShape, nil, &output)
            qk_conv3x3_unpack(path, &goodShape, packed.pointer, nil)
            qk_fc_unpack(path, 0, 4, packed.pointer, &output)
            qk_fc_unpack(path, 4, 100_001, packed.pointer, &output)
            qk_fc_unpack(path, 4, 4, nil, &output)
            qk_fc_unpack(path, 4, 4, packed.pointer, nil)
        }
        qk_conv3x3_unpack(unknown, &goodShape, packed.pointer, &output)
        qk_fc_unpack(unknown, 4, 4, packed.pointer, &output)
        XCTAssertTrue(output.allSatisfy { $0 == 7 })
    }
}

import CQARepKernels
import Foundation
import XCTest

final class DispatchTests: XCTestCase {
    /// Detection must agree with what the CPU advertises, so that a dispatch bug cannot quietly turn the
    /// SIMD comparisons of the other tests into scalar-only runs. (The OS register-state check is not
    /// visible in /proc/cpuinfo; Linux enables it whenever it lists the flags.)
    func testDetectedPathsMatchCPUFlags() throws {
        guard !cpuFlags.isEmpty else { throw XCTSkip("no /proc/cpuinfo flags on this system") }
        let flags = cpuFlags
        for path in allPaths {
            // Paths of another architecture need features this CPU's flags do not list.
            let needed = qk_path_linux_cpu_flags(path).map { String(cString: $0) } ?? ""
            let required = Set(needed.split(separator: " ").map(String.init))
            XCTAssertEqual(qk_path_supported(path), required.isSubset(of: flags) ? 1 : 0, "\(pathName(path)) needs \(needed)")
        }
        let best = qk_best_path()
        XCTAssertEqual(qk_path_supported(best), 1)
        XCTAssertTrue(tablePaths.contains(best), "the default is a path of the table, never a test-only one")
        if allPaths.contains(where: { $0 != QK_PATH_SCALAR && qk_path_supported($0) != 0 }) {
            XCTAssertNotEqual(best, QK_PATH_SCALAR, "a SIMD path is supported but the scalar one is the default")
        }
        print("supported kernel paths: \(allPaths.filter { qk_path_supported($0) != 0 }.map(pathName))")
    }

    /// Names come from the table, are unique, and map back to their path.
    func testPathNamesAndUnknownPaths() {
        XCTAssertEqual(pathName(QK_PATH_SCALAR), "scalar")
        XCTAssertEqual(Set(allPaths.map(pathName)).count, allPaths.count, "path names are not unique")
        for path in tablePaths {
            var found = QK_PATH_COUNT
            XCTAssertEqual(qk_path_from_name(qk_path_name(path), &found), QK_OK)
            XCTAssertEqual(found, path)
            XCTAssertNotNil(qk_path_peak_mix(path), pathName(path))
        }
        // A test-only path has a name for the tests' messages, but no name leads to it.
        XCTAssertFalse(testOnlyPaths.isEmpty)
        for path in testOnlyPaths {
            var found = QK_PATH_COUNT
            XCTAssertEqual(qk_path_from_name(qk_path_name(path), &found), QK_ERROR_INVALID_ARGUMENT, pathName(path))
            XCTAssertNotNil(qk_path_peak_mix(path), pathName(path))
        }
        var found = QK_PATH_SCALAR
        XCTAssertEqual(qk_path_from_name("fastest", &found), QK_ERROR_INVALID_ARGUMENT)
        XCTAssertEqual(qk_path_from_name(nil, &found), QK_ERROR_INVALID_ARGUMENT)
        let unknown = QK_PATH_COUNT
        XCTAssertNil(qk_path_name(unknown))
        XCTAssertEqual(qk_path_supported(unknown), 0)
        var shape = qk_conv_shape(in_h: 4, in_w: 4, in_c: 4, out_c: 4, stride: 1, groups: 1)
        XCTAssertEqual(qk_conv3x3_packed_size(unknown, &shape), 0)
        XCTAssertEqual(qk_fc_packed_size(unknown, 4, 4), 0)
        XCTAssertEqual(qk_measure_peak_gmacs(unknown, 0.01), 0)
    }

    func testOutputDimension() {
        XCTAssertEqual(qk_conv_out_dim(224, 2), 112)
        XCTAssertEqual(qk_conv_out_dim(7, 2), 4)
        XCTAssertEqual(qk_conv_out_dim(1, 2), 1)
        XCTAssertEqual(qk_conv_out_dim(5, 1), 5)
        XCTAssertEqual(qk_conv_out_dim(0, 1), 0)
        XCTAssertEqual(qk_conv_out_dim(5, 3), 0)
    }

    func testInvalidShapesHaveNoPackedSize() {
        let invalid = [
            qk_conv_shape(in_h: 0, in_w: 4, in_c: 4, out_c: 4, stride: 1, groups: 1),
            qk_conv_shape(in_h: 4, in_w: 4, in_c: 0, out_c: 4, stride: 1, groups: 1),
            qk_conv_shape(in_h: 4, in_w: 4, in_c: 4, out_c: 4, stride: 3, groups: 1),
            qk_conv_shape(in_h: 4, in_w: 4, in_c: 6, out_c: 4, stride: 1, groups: 4),
            qk_conv_shape(in_h: 4, in_w: 4, in_c: 4, out_c: 6, stride: 1, groups: 4),
            qk_conv_shape(in_h: 4, in_w: 4, in_c: 4, out_c: 4, stride: 1, groups: 0),
            qk_conv_shape(in_h: 4, in_w: 4, in_c: 100_000, out_c: 4, stride: 1, groups: 1),
            qk_conv_shape(in_h: -3, in_w: 4, in_c: 4, out_c: 4, stride: 1, groups: 1),
        ]
        for path in allPaths {
            for var shape in invalid {
                XCTAssertEqual(qk_conv3x3_packed_size(path, &shape), 0, "\(pathName(path)) \(shape)")
            }
            XCTAssertEqual(qk_conv3x3_packed_size(path, nil), 0)
            XCTAssertEqual(qk_fc_packed_size(path, 0, 10), 0)
            XCTAssertEqual(qk_fc_packed_size(path, 10, -1), 0)
        }
    }

    /// NULL pointers and impossible sizes are refused without touching the output.
    func testBadArgumentsLeaveOutputUntouched() {
        var shape = qk_conv_shape(in_h: 2, in_w: 2, in_c: 4, out_c: 4, stride: 1, groups: 1)
        let input = [UInt8](repeating: 1, count: 16 + extraBytes)
        let pad = [UInt8](repeating: 0, count: 4 + extraBytes)
        let bias = [Int32](repeating: 0, count: 4), multiplier = [Float](repeating: 1, count: 4)
        let packed = AlignedBytes(byteCount: 4096)
        for path in allPaths where qk_path_supported(path) != 0 {
            let conv = withGuardedOutput(UInt8.self, count: 16) { output in
                qk_conv3x3_u8(path, &shape, 1, packed.pointer, nil, multiplier, pad, input, output, 1)
                qk_conv3x3_u8(path, &shape, 0, packed.pointer, bias, multiplier, pad, input, output, 1)
                qk_conv3x3_u8(path, nil, 1, packed.pointer, bias, multiplier, pad, input, output, 1)
                qk_global_avgpool_u8(path, 1, 0, 4, input, 1, output, 1)
                qk_global_avgpool_u8(path, 1, Int32.max, 4, input, 1, output, 1)
                qk_global_avgpool_u8(path, 1, 4, 4, nil, 1, output, 1)
            }
            XCTAssertTrue(conv.guardsIntact && conv.payload.allSatisfy { $0 == 0xA5 }, pathName(path))
            let fc = withGuardedOutput(UInt32.self, count: 4) { output in
                output.withMemoryRebound(to: Float.self, capacity: 4) { logits in
                    qk_fc_u8(path, 1, 4, 4, nil, bias, multiplier, input, logits, 1)
                    qk_fc_u8(path, 1, 0, 4, packed.pointer, bias, multiplier, input, logits, 1)
                }
            }
            XCTAssertTrue(fc.guardsIntact && fc.payload.allSatisfy { $0 == 0xA5A5_A5A5 }, pathName(path))
        }
    }

    func testPeakMeasurementIsPositiveOnEverySupportedPath() {
        for path in allPaths where qk_path_supported(path) != 0 {
            let peak = qk_measure_peak_gmacs(path, 0.02)
            XCTAssertTrue(peak.isFinite && peak > 0, "\(pathName(path)) peak \(peak)")
        }
    }

    /// Every entry point refuses a path this CPU lacks with its own status, so a caller can tell it apart
    /// from a bad argument.
    func testUnsupportedPathsAreRefusedByName() {
        var shape = qk_conv_shape(in_h: 2, in_w: 2, in_c: 4, out_c: 4, stride: 1, groups: 1)
        let weights = [Int8](repeating: 1, count: 4 * 4 * 9)
        let packed = AlignedBytes(byteCount: 4096)
        let missing = allPaths.filter { qk_path_supported($0) == 0 }
        for path in missing {
            XCTAssertEqual(qk_conv3x3_pack(path, &shape, weights, packed.pointer), QK_ERROR_UNSUPPORTED_PATH, pathName(path))
            XCTAssertEqual(qk_fc_pack(path, 4, 4, weights, packed.pointer), QK_ERROR_UNSUPPORTED_PATH, pathName(path))
        }
        print("kernel paths not run on this CPU: \(pathsNotRun())")
    }
}

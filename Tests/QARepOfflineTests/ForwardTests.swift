import COpenBLAS
import Foundation
import QARep
import XCTest
@testable import QARepOffline

final class ForwardTests: XCTestCase {
    /// Grouped layers, stride 2 on odd sizes, a non-square input: the im2col + sgemm forward against the direct
    /// loop nest, every layer's observed activation and the logits.
    func testForwardMatchesDirectConvolution() throws {
        let plan = [CalibLayerPlan(out: 8, stride: 2, groups: 1), CalibLayerPlan(out: 8, stride: 1, groups: 2),
                    CalibLayerPlan(out: 12, stride: 2, groups: 4), CalibLayerPlan(out: 12, stride: 1, groups: 3),
                    CalibLayerPlan(out: 16, stride: 2, groups: 1)]
        try checkAgainstDirectConvolution(plan: plan, height: 11, width: 9, count: 3)
    }

    /// Layers wide enough that the forward cuts their columns into several blocks (columnBlockFloats), with blocks
    /// starting inside an output row and an image, taken by two workers; and a one-pixel-wide input, where some
    /// taps read only the border.
    func testBlockedForwardMatchesDirectConvolution() throws {
        let plan = [CalibLayerPlan(out: 64, stride: 2, groups: 1), CalibLayerPlan(out: 64, stride: 1, groups: 2),
                    CalibLayerPlan(out: 8, stride: 1, groups: 1), CalibLayerPlan(out: 8, stride: 2, groups: 1)]
        // Layer 2 (64 x 9 rows, 8 images of 11 x 9): two blocks, the second starting in row 5, column 7 of image 4.
        XCTAssertGreaterThan(8 * 11 * 9, columnBlockFloats / (64 * 9) / 16 * 16, "layer 2 must span several blocks")
        let threads = openblas_get_num_threads()
        openblas_set_num_threads(2)
        defer { openblas_set_num_threads(threads) }
        try checkAgainstDirectConvolution(plan: plan, height: 21, width: 17, count: 8)
        try checkAgainstDirectConvolution(plan: [CalibLayerPlan(out: 4, stride: 1, groups: 1), CalibLayerPlan(out: 4, stride: 2, groups: 1)],
                                          height: 5, width: 1, count: 2)
    }

    private func checkAgainstDirectConvolution(plan: [CalibLayerPlan], height: Int, width: Int, count: Int,
                                               file: StaticString = #filePath, line: UInt = #line) throws {
        let network = calibTestNetwork(plan: plan, height: height, width: width, classes: 5, seed: 7)
        let pixels = calibTestImages(count: count, height: height, width: width, seed: 8)
        let forward = try FP32Forward(network: network)
        var observed: [ActivationSite: [Float]] = [:]
        let logits = try pixels.withUnsafeBufferPointer { buffer in
            try forward.logits(pixels: buffer, count: count) { site, values in observed[site] = Array(values) }
        }
        XCTAssertEqual(logits.count, count * 5, file: file, line: line)
        for image in 0..<count {
            let reference = calibDirectForward(network, calibNormalizedInput(pixels, index: image, height: height, width: width,
                                                                             preprocessing: network.preprocessing))
            for k in 0..<5 {
                XCTAssertEqual(Double(logits[image * 5 + k]), reference.logits[k], accuracy: 1e-4 * max(1, abs(reference.logits[k])),
                               file: file, line: line)
            }
            for (layer, expected) in reference.layers.enumerated() {
                // Observed layout: [channel][image][y][x].
                let values = try XCTUnwrap(observed[.conv(layer)], file: file, line: line)
                let plane = expected.height * expected.width
                XCTAssertEqual(values.count, expected.channels * count * plane, file: file, line: line)
                var worst = 0.0
                for c in 0..<expected.channels {
                    for p in 0..<plane {
                        worst = max(worst, abs(Double(values[(c * count + image) * plane + p]) - expected.values[c * plane + p]))
                    }
                }
                XCTAssertLessThan(worst, 1e-4 * max(1, reference.layers[layer].values.map(abs).max() ?? 1), "layer \(layer)",
                                  file: file, line: line)
            }
        }
        XCTAssertEqual(observed[.pool]?.count, count * (plan.last?.out ?? 0), file: file, line: line)
    }

    func testNCHWInputEqualsPixelInput() throws {
        let network = calibTestNetwork(plan: [CalibLayerPlan(out: 6, stride: 2, groups: 1)], height: 5, width: 6, classes: 3, seed: 3)
        let pixels = calibTestImages(count: 2, height: 5, width: 6, seed: 4)
        var nchw: [Float] = []
        for image in 0..<2 {
            nchw += calibNormalizedInput(pixels, index: image, height: 5, width: 6, preprocessing: network.preprocessing).values.map(Float.init)
        }
        let forward = try FP32Forward(network: network)
        let fromPixels = try pixels.withUnsafeBufferPointer { try forward.logits(pixels: $0, count: 2) }
        let fromFloats = try forward.logits(nchw: nchw, count: 2)
        for (a, b) in zip(fromPixels, fromFloats) { XCTAssertEqual(a, b, accuracy: 1e-5) }
    }

    func testInconsistentNetworkIsRejected() {
        var network = calibTestNetwork(plan: [CalibLayerPlan(out: 4, stride: 1, groups: 1)], height: 4, width: 4, classes: 2, seed: 1)
        network.convs[0].weight.removeLast()
        XCTAssertThrowsError(try FP32Forward(network: network))
        network = calibTestNetwork(plan: [CalibLayerPlan(out: 4, stride: 3, groups: 1)], height: 4, width: 4, classes: 2, seed: 1)
        XCTAssertThrowsError(try FP32Forward(network: network))
    }

    func testWrongInputSizeIsAnError() throws {
        let network = calibTestNetwork(plan: [CalibLayerPlan(out: 4, stride: 1, groups: 1)], height: 4, width: 4, classes: 2, seed: 1)
        let forward = try FP32Forward(network: network)
        XCTAssertThrowsError(try forward.logits(nchw: [Float](repeating: 0, count: 47), count: 1))
    }
}

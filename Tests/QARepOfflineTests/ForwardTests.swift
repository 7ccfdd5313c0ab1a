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
        let network = calibTestNetwork(plan: plan, height: 11, width: 9, classes: 5, seed: 7)
        let count = 3
        let pixels = calibTestImages(count: count, height: 11, width: 9, seed: 8)
        let forward = try FP32Forward(network: network)
        var observed: [ActivationSite: [Float]] = [:]
        let logits = try pixels.withUnsafeBufferPointer { buffer in
            try forward.logits(pixels: buffer, count: count) { site, values in observed[site] = Array(values) }
        }
        XCTAssertEqual(logits.count, count * 5)
        for image in 0..<count {
            let reference = calibDirectForward(network, calibNormalizedInput(pixels, index: image, height: 11, width: 9,
                                                                             preprocessing: network.preprocessing))
            for k in 0..<5 {
                XCTAssertEqual(Double(logits[image * 5 + k]), reference.logits[k], accuracy: 1e-4 * max(1, abs(reference.logits[k])))
            }
            for (layer, expected) in reference.layers.enumerated() {
                // Observed layout: [channel][image][y][x].
                let values = try XCTUnwrap(observed[.conv(layer)])
                let plane = expected.height * expected.width
                XCTAssertEqual(values.count, expected.channels * count * plane)
                var worst = 0.0
                for c in 0..<expected.channels {
                    for p in 0..<plane {
                        worst = max(worst, abs(Double(values[(c * count + image) * plane + p]) - expected.values[c * plane + p]))
                    }
                }
                XCTAssertLessThan(worst, 1e-4, "layer \(layer)")
            }
        }
        XCTAssertEqual(observed[.pool]?.count, count * 16)
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

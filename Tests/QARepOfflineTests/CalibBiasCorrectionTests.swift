import Foundation
import QARep
import XCTest
@testable import QARepOffline

final class CalibBiasCorrectionTests: XCTestCase {
    private func options(biasCorrection: Bool) -> CalibrationOptions {
        var options = CalibrationOptions()
        options.biasCorrection = biasCorrection
        // Bias correction alone: equalization and GPTQ (on by default) would change the weights too.
        options.equalization = false
        options.weightRounding = .nearest
        options.holdoutFraction = 0
        options.threads = 1
        return options
    }

    /// Per-class mean of the real runtime's INT8 logits minus the FP32 logits, over `data`.
    private func meanLogitShift(_ description: QuantizedModelDescription, _ network: FusedNetwork,
                                _ data: CalibrationData) throws -> [Double] {
        let session = try Session(model: try Model(description: description), threads: 1, maxBatch: data.count)
        let quantized = try session.run(images: data.pixels, batch: data.count)
        let reference = try data.pixels.withUnsafeBufferPointer {
            try FP32Forward(network: network).logits(pixels: $0, count: data.count)
        }
        let classes = network.numClasses
        return (0..<classes).map { k in
            (0..<data.count).reduce(0.0) { $0 + Double(quantized[$1 * classes + k]) - Double(reference[$1 * classes + k]) } / Double(data.count)
        }
    }

    /// A network with a systematic weight-rounding error: every weight of layer 1 sits 0.45 of an int8 step
    /// below a grid point, so each rounds up by the same fraction and the layer's output mean drifts upward
    /// with its (positive, post-ReLU) input. Bias correction must remove most of the drift in the logits, on
    /// images it was not measured on.
    private func driftingNetwork() -> FusedNetwork {
        var network = calibTestNetwork(plan: [CalibLayerPlan(out: 8, stride: 1, groups: 1), CalibLayerPlan(out: 8, stride: 2, groups: 1),
                                              CalibLayerPlan(out: 12, stride: 1, groups: 2)],
                                       height: 10, width: 10, classes: 5, seed: 51)
        let rowLength = 8 * 9
        for output in 0..<8 {
            let step: Float = 0.002
            for position in (output * rowLength)..<((output + 1) * rowLength) {
                // Grid of the maxabs scale: the row's largest magnitude is exactly 127 steps.
                let levels = position == output * rowLength ? 127 : Float(position % 7) - 2
                network.convs[1].weight[position] = position == output * rowLength ? levels * step : (levels + 0.55) * step
            }
        }
        return network
    }

    func testBiasCorrectionRemovesSystematicShift() throws {
        let network = driftingNetwork()
        let calibration = try calibTestData(network, count: 48, seed: 52)
        let unseen = try calibTestData(network, count: 32, seed: 53)
        let (plain, _) = try calibrateAndQuantize(network: network, calibration: calibration, options: options(biasCorrection: false))
        let (corrected, _) = try calibrateAndQuantize(network: network, calibration: calibration, options: options(biasCorrection: true))
        XCTAssertEqual(plain.convs.map(\.weight), corrected.convs.map(\.weight), "only biases may change")
        XCTAssertNotEqual(plain.convs[1].bias, corrected.convs[1].bias)
        let drift = try meanLogitShift(plain, network, unseen).map(abs).reduce(0, +)
        let remaining = try meanLogitShift(corrected, network, unseen).map(abs).reduce(0, +)
        XCTAssertGreaterThan(drift, 0.05, "the fixture must have a measurable drift")
        XCTAssertLessThan(remaining, drift * 0.5, "drift \(drift), after correction \(remaining)")
    }

    /// On the images it was measured on, the FC correction leaves the mean INT8 logit within half a bias unit of
    /// the FP32 one per class. That holds only if the correction's INT8 side computes what a Session computes.
    func testCorrectionMatchesTheRuntimeOnTheCorrectionImages() throws {
        let network = driftingNetwork()
        let calibration = try calibTestData(network, count: 24, seed: 54)
        let (corrected, report) = try calibrateAndQuantize(network: network, calibration: calibration, options: options(biasCorrection: true))
        XCTAssertEqual(report.biasCorrectionImages, 24)
        let shifts = try meanLogitShift(corrected, network, calibration)
        for (k, shift) in shifts.enumerated() {
            let unit = Double(corrected.poolOutputScale) * Double(corrected.fcWeightScale[k])
            XCTAssertLessThanOrEqual(abs(shift), 0.5 * unit + 1e-5, "class \(k)")
        }
    }

    func testOptionIsRecordedInTheReportAndMetadata() throws {
        let network = calibTestNetwork(plan: [CalibLayerPlan(out: 4, stride: 2, groups: 1), CalibLayerPlan(out: 4, stride: 1, groups: 2)],
                                       height: 6, width: 6, classes: 3, seed: 55)
        let calibration = try calibTestData(network, count: 10, seed: 56)
        let (off, offReport) = try calibrateAndQuantize(network: network, calibration: calibration, options: options(biasCorrection: false))
        XCTAssertEqual(offReport.biasCorrectionImages, 0)
        XCTAssertNil(offReport.fcBiasCorrectionShift)
        XCTAssertTrue(offReport.layers.allSatisfy { $0.biasCorrectionShift == nil })
        XCTAssertEqual(off.extraMetadata["calibration"]?.contains("bias_correction"), false)

        let (on, onReport) = try calibrateAndQuantize(network: network, calibration: calibration, options: options(biasCorrection: true))
        XCTAssertEqual(onReport.biasCorrectionImages, 10)
        XCTAssertNotNil(onReport.fcBiasCorrectionShift)
        XCTAssertTrue(onReport.layers.allSatisfy { ($0.biasCorrectionShift ?? -1) >= 0 })
        XCTAssertEqual(on.extraMetadata["calibration"]?.contains("bias_correction_images=10"), true)
        let json = try JSONSerialization.jsonObject(with: Data(try onReport.jsonString().utf8)) as? [String: Any]
        XCTAssertEqual(json?["biasCorrectionImages"] as? Int, 10)
        let reloaded = try Model(bytes: try on.serialized())
        XCTAssertEqual(try reloaded.description.convs, on.convs)
    }

    /// Tap sums against the definition: row sums of the im2col matrix of a zero-padded 3x3 conv input.
    func testTapSumsAreIm2colRowSums() {
        var rng = CalibRandom(seed: 57)
        for (height, width, stride) in [(5, 7, 1), (5, 7, 2), (6, 4, 2), (1, 1, 1)] {
            let channels = 2, count = 3
            let values = (0..<(channels * count * height * width)).map { _ in rng.uniform(-1, 2) }
            var taps = TapSums(channels: channels)
            values.withUnsafeBufferPointer { taps.add($0, channels: channels, count: count, height: height, width: width, stride: stride) }
            let outHeight = (height - 1) / stride + 1, outWidth = (width - 1) / stride + 1
            XCTAssertEqual(taps.positions, Double(count * outHeight * outWidth))
            for c in 0..<channels {
                for tap in 0..<9 {
                    var expected = 0.0
                    for image in 0..<count {
                        for oy in 0..<outHeight {
                            for ox in 0..<outWidth {
                                let y = oy * stride + tap / 3 - 1, x = ox * stride + tap % 3 - 1
                                if y >= 0, y < height, x >= 0, x < width {
                                    expected += Double(values[((c * count + image) * height + y) * width + x])
                                }
                            }
                        }
                    }
                    XCTAssertEqual(taps.sums[c * 9 + tap], expected, accuracy: 1e-9, "\(height)x\(width)/\(stride) c\(c) tap\(tap)")
                }
            }
        }
    }
}

import Foundation
import QARep
import XCTest
@testable import QARepOffline

final class ExportCalibrationTests: XCTestCase {
    /// Layer 0 evaluated with the spec's integer arithmetic (zero-point padding, B_0, float multiplier,
    /// half-to-even) from the exported numbers, against the FP32 conv on normalized input with zero padding.
    /// The difference must stay within the error the format allows: weight rounding, bias rounding, output
    /// rounding and, on border taps only, |zero_point - 255 * mean| / 255.
    func testFirstLayerArithmeticIncludingBorderMatchesFP32() throws {
        let network = calibTestNetwork(plan: [CalibLayerPlan(out: 6, stride: 1, groups: 1)], height: 6, width: 5, classes: 3, seed: 11)
        let calibration = try calibTestData(network, count: 12, seed: 12)
        var options = CalibrationOptions()
        options.method = .minmax
        options.holdoutFraction = 0
        // The bound below is that of the plain export; bias correction deliberately moves biases off it.
        options.biasCorrection = false
        let (model, report) = try calibrateAndQuantize(network: network, calibration: calibration, options: options)
        XCTAssertNil(report.holdout)
        XCTAssertEqual(model.inputScale, 1 / 255)
        XCTAssertEqual(model.inputZeroPoint, [128, 115, 102])  // round(255 * [0.5, 0.45, 0.4]), 127.5 away from zero
        let layer = model.convs[0]
        XCTAssertTrue(layer.weight.allSatisfy { $0 >= -127 })
        let mean = network.preprocessing.mean.map(Double.init), std = network.preprocessing.std.map(Double.init)
        let (h, w) = (6, 5)
        var worstRatio = 0.0
        for image in 0..<calibration.count {
            let reference = calibDirectConv(calibNormalizedInput(calibration.pixels, index: image, height: h, width: w,
                                                                 preprocessing: network.preprocessing), network.convs[0])
            for o in 0..<6 {
                let ws = Double(layer.weightScale[o])
                var zeroPointSum: Int64 = 0
                for c in 0..<3 { for tap in 0..<9 { zeroPointSum += Int64(layer.weight[(o * 3 + c) * 9 + tap]) * Int64(model.inputZeroPoint[c]) } }
                let b0 = Int64(layer.bias[o]) - zeroPointSum
                let multiplier = Float(Double(model.inputScale) * ws / Double(layer.outputScale))
                for y in 0..<h {
                    for x in 0..<w {
                        var acc: Int64 = 0
                        var bound = 0.5 * ws / 255 + 0.5 * Double(layer.outputScale) + 1e-5
                        for c in 0..<3 {
                            let zp = Double(model.inputZeroPoint[c])
                            for ky in 0..<3 {
                                for kx in 0..<3 {
                                    let q = layer.weight[(o * 3 + c) * 9 + ky * 3 + kx]
                                    let exact = Double(network.convs[0].weight[(o * 3 + c) * 9 + ky * 3 + kx]) / std[c]
                                    let iy = y + ky - 1, ix = x + kx - 1
                                    if iy < 0 || iy >= h || ix < 0 || ix >= w {
                                        acc += Int64(q) * Int64(model.inputZeroPoint[c])
                                        bound += abs(exact) * abs(zp - 255 * mean[c]) / 255
                                    } else {
                                        let pixel = Int64(calibration.pixels[((image * h + iy) * w + ix) * 3 + c])
                                        acc += Int64(q) * pixel
                                        bound += abs(Double(q) * ws - exact) * abs(Double(pixel) - zp) / 255
                                    }
                                }
                            }
                        }
                        var t = Float(acc + b0)
                        t = t * multiplier
                        let quantized = min(max(t, 0), 255).rounded(.toNearestOrEven)
                        let difference = abs(Double(quantized) * Double(layer.outputScale) - reference[o, y, x])
                        XCTAssertLessThanOrEqual(difference, bound, "image \(image) o \(o) y \(y) x \(x)")
                        worstRatio = max(worstRatio, difference / bound)
                    }
                }
            }
        }
        XCTAssertGreaterThan(worstRatio, 0)
    }

    /// Synthetic network -> every calibration method -> INT8 model -> real runtime on held-aside images.
    func testEndToEndAgreementOnTheRuntime() throws {
        let plan = [CalibLayerPlan(out: 8, stride: 2, groups: 1), CalibLayerPlan(out: 8, stride: 1, groups: 2),
                    CalibLayerPlan(out: 16, stride: 2, groups: 1), CalibLayerPlan(out: 16, stride: 1, groups: 4),
                    CalibLayerPlan(out: 24, stride: 1, groups: 1)]
        let network = calibTestNetwork(plan: plan, height: 16, width: 14, classes: 6, seed: 21)
        let calibration = try calibTestData(network, count: 120, seed: 22)
        for method in ActivationCalibrationMethod.allCases {
            var options = CalibrationOptions()
            options.method = method
            options.holdoutFraction = 0.25
            options.threads = 1
            var calls: [(done: Int, total: Int)] = []
            let (description, report) = try calibrateAndQuantize(network: network, calibration: calibration, options: options) { done, total in
                calls.append((done, total))
            }
            // One total throughout, reached at the end, never a step back.
            XCTAssertGreaterThan(calls.count, 0)
            XCTAssertEqual(Set(calls.map(\.total)).count, 1)
            XCTAssertEqual(calls.last?.done, calls.last?.total)
            XCTAssertEqual(zip(calls, calls.dropFirst()).filter { $0.done > $1.done }.count, 0, "progress went back")
            let holdout = try XCTUnwrap(report.holdout)
            XCTAssertEqual(holdout.images, 30)
            XCTAssertEqual(report.calibrationImages, 90)
            XCTAssertGreaterThanOrEqual(holdout.top1Agreement, 0.85, "\(method)")
            XCTAssertGreaterThan(holdout.meanLogitCosine, 0.98, "\(method)")
            XCTAssertEqual(report.layers.count, plan.count)
            XCTAssertEqual(report.clampedBiases, [])
            XCTAssertEqual(description.extraMetadata["calibration"]?.contains("method=\(method.rawValue)"), true)
            // The exported description serializes and loads back unchanged.
            let reloaded = try Model(bytes: try description.serialized())
            XCTAssertEqual(try reloaded.description.convs, description.convs)
            let json = try JSONSerialization.jsonObject(with: Data(try report.jsonString().utf8)) as? [String: Any]
            XCTAssertEqual((json?["layers"] as? [Any])?.count, plan.count)
        }
    }

    func testCorrectionProgressWeighsGPTQByItsWork() throws {
        // A wide layer whose GPTQ algebra (a 576-row H) outweighs its convolution on a few 8x8 images.
        let plan = [CalibLayerPlan(out: 64, stride: 2, groups: 1), CalibLayerPlan(out: 64, stride: 1, groups: 1),
                    CalibLayerPlan(out: 64, stride: 2, groups: 4)]
        let forward = try FP32Forward(network: calibTestNetwork(plan: plan, height: 16, width: 16, classes: 4, seed: 3))
        let plain = correctionProgress(forward, images: 8, gptq: false)
        let refined = correctionProgress(forward, images: 8, gptq: true)
        for steps in [plain, refined] {
            XCTAssertEqual(steps.count, plan.count + 2, "one step before the layers, one per conv, one for the FC")
            XCTAssertEqual(steps.first, 0)
            XCTAssertEqual(zip(steps, steps.dropFirst()).filter { $0 > $1 }.count, 0)
        }
        // Without GPTQ the pass is the layers on its images: 8 images' worth.
        XCTAssertEqual(plain.last, 8)
        XCTAssertGreaterThan(refined[2] - refined[1], 4 * (plain[2] - plain[1]), "GPTQ's work on conv 1 not counted")
    }

    func testHugeBiasIsClampedToTheAccumulatorBoundAndReported() throws {
        var network = calibTestNetwork(plan: [CalibLayerPlan(out: 4, stride: 1, groups: 1), CalibLayerPlan(out: 4, stride: 1, groups: 1)],
                                       height: 4, width: 4, classes: 2, seed: 31)
        network.convs[1].bias[2] = -1e12
        network.fcBias[1] = 1e15
        var options = CalibrationOptions()
        options.holdoutFraction = 0
        let (description, report) = try calibrateAndQuantize(network: network, calibration: try calibTestData(network, count: 8, seed: 32), options: options)
        XCTAssertEqual(report.clampedBiases, ["conv.1.bias", "fc.bias"])
        XCTAssertEqual(Int64(description.convs[1].bias[2]), -(Int64(Int32.max) - 9 * 4 * 255 * 127))
        XCTAssertNoThrow(try Model(description: description))
    }

    func testMismatchedInputsAreErrors() throws {
        let network = calibTestNetwork(plan: [CalibLayerPlan(out: 4, stride: 1, groups: 1)], height: 4, width: 4, classes: 2, seed: 41)
        let wrongSize = try CalibrationData(inputHeight: 5, inputWidth: 4, pixels: [UInt8](repeating: 0, count: 60), names: ["a"])
        XCTAssertThrowsError(try calibrateAndQuantize(network: network, calibration: wrongSize, options: CalibrationOptions()))
        var options = CalibrationOptions()
        options.holdoutFraction = 1
        XCTAssertThrowsError(try calibrateAndQuantize(network: network, calibration: try calibTestData(network, count: 4, seed: 1), options: options))
        XCTAssertThrowsError(try CalibrationData(inputHeight: 4, inputWidth: 4, pixels: [1, 2, 3], names: ["a"]))
    }
}

import Foundation
import XCTest
@testable import QARepOffline

final class CalibThresholdTests: XCTestCase {
    private func histogram(_ values: [Float], batches: Int = 4) -> ActivationHistogram {
        var result = ActivationHistogram()
        let size = (values.count + batches - 1) / batches
        for start in stride(from: 0, to: values.count, by: size) {
            Array(values[start..<min(start + size, values.count)]).withUnsafeBufferPointer { result.add($0) }
        }
        return result
    }

    func testMinmaxIsTheExactMaximum() {
        var rng = CalibRandom(seed: 1)
        var values = (0..<10_000).map { _ in rng.uniform(0, 3) }
        values[1234] = 7.25
        let h = histogram(values)
        XCTAssertEqual(activationThreshold(h, method: .minmax), 7.25)
    }

    /// Batches of growing range exercise the bin-doubling: counts and the percentile must survive it.
    func testPercentileOfUniformSampleAcrossGrowingRange() {
        var rng = CalibRandom(seed: 2)
        var h = ActivationHistogram()
        let first = (0..<1000).map { _ in rng.uniform(0, 0.5) }
        first.withUnsafeBufferPointer { h.add($0) }
        let rest = (0..<199_000).map { _ in rng.uniform(0, 10) }
        rest.withUnsafeBufferPointer { h.add($0) }
        XCTAssertEqual(h.positiveCount, 200_000)
        XCTAssertEqual(h.counts.reduce(0, +), 200_000)
        // Mixture CDF at t >= 0.5: (1000 + 199000 * t / 10) / 200000.
        for (percent, expected) in [(50.0, 5.0000 - 0.0251), (90.0, 9.0452 - 0.0453 + 0.0), (99.99, 9.9995)] {
            let t = activationThreshold(h, method: .percentile, percentile: percent)
            let exact = (percent / 100 * 200_000 - 1000) / 19_900
            XCTAssertEqual(t, exact, accuracy: 0.02, "percentile \(percent) (\(expected))")
        }
    }

    func testPercentileCountsZeros() {
        var rng = CalibRandom(seed: 3)
        let values = (0..<100_000).map { i in i % 2 == 0 ? 0 : rng.uniform(0, 8) }
        let t = activationThreshold(histogram(values), method: .percentile, percentile: 75)
        XCTAssertEqual(t, 4, accuracy: 0.05)
    }

    /// The optimum of E(T) = integral_T^inf (x - T)^2 f(x) dx + (T / 255)^2 / 12 * F(T), by direct numeric
    /// integration of the density on a fine grid (independent of the histogram code).
    private func numericOptimum(density: (Double) -> Double, upper: Double) -> Double {
        let steps = 8000
        let dx = upper / Double(steps)
        let xs = (0..<steps).map { (Double($0) + 0.5) * dx }
        let mass = xs.map { density($0) * dx }
        var best = 0.0, bestError = Double.infinity
        var t = upper * 0.2
        while t < upper {
            var error = 0.0
            for (x, m) in zip(xs, mass) {
                error += x > t ? (x - t) * (x - t) * m : (t / 255) * (t / 255) / 12 * m
            }
            if error < bestError { bestError = error; best = t }
            t += upper / 1000
        }
        return best
    }

    func testMSEThresholdOfHalfNormalMatchesNumericOptimum() {
        var rng = CalibRandom(seed: 4)
        let values = (0..<400_000).map { _ in Float(abs(rng.gaussian())) }
        let expected = numericOptimum(density: { 2 / (2 * Double.pi).squareRoot() * exp(-$0 * $0 / 2) }, upper: 8)
        let t = activationThreshold(histogram(values), method: .mse)
        XCTAssertEqual(t, expected, accuracy: 0.06 * expected)
        XCTAssertLessThan(t, Double(values.max() ?? 0))
    }

    func testMSEThresholdOfExponentialMatchesNumericOptimum() {
        var rng = CalibRandom(seed: 5)
        let values = (0..<400_000).map { _ in Float(-log(max(rng.unit(), 1e-300))) }
        let expected = numericOptimum(density: { exp(-$0) }, upper: 20)
        let t = activationThreshold(histogram(values), method: .mse)
        XCTAssertEqual(t, expected, accuracy: 0.06 * expected)
    }

    func testEntropyIgnoresRareOutliers() {
        var rng = CalibRandom(seed: 6)
        var values = (0..<200_000).map { _ in Float(abs(rng.gaussian())) }
        for index in 0..<5 { values[index * 1000] = 1000 }
        let t = activationThreshold(histogram(values), method: .entropy)
        XCTAssertGreaterThan(t, 2)  // keeps the bulk (P(|N| > 2) ~ 4.6%)
        XCTAssertLessThan(t, 200)   // drops the outliers
        XCTAssertEqual(activationThreshold(histogram(values), method: .minmax), 1000)
    }

    func testAllZeroActivationGivesZeroThresholdAndUnitScale() {
        let h = histogram([Float](repeating: 0, count: 100))
        for method in ActivationCalibrationMethod.allCases {
            XCTAssertEqual(activationThreshold(h, method: method), 0)
        }
        XCTAssertEqual(activationScale(threshold: 0), 1)
    }

    func testNonFiniteValuesAreCountedNotBinned() {
        let h = histogram([1, 2, .nan, .infinity, 3], batches: 1)
        XCTAssertEqual(h.nonFiniteCount, 2)
        XCTAssertEqual(h.positiveCount, 3)
        XCTAssertEqual(h.maxValue, 3)
    }

    func testWeightScales() {
        let weights: ArraySlice<Float> = [0.1, -0.5, 0.25, 0.01]
        XCTAssertEqual(weightScale(weights, method: .maxabs), 0.5 / 127)
        XCTAssertEqual(weightScale([0, 0], method: .maxabs), 1)
        // A heavy-tailed channel with one outlier: MSE clipping picks a smaller scale and a lower error.
        var rng = CalibRandom(seed: 7)
        var channel = (0..<2000).map { _ in Float(rng.gaussian()) * 0.05 }
        channel[0] = 2
        let slice = channel[...]
        let maxabs = weightScale(slice, method: .maxabs), mse = weightScale(slice, method: .mse)
        XCTAssertLessThan(mse, maxabs)
        func error(_ scale: Float) -> Float {
            slice.reduce(0) { sum, w in let d = w - Float(quantizeWeight(w, scale: scale)) * scale; return sum + d * d }
        }
        XCTAssertLessThan(error(mse), error(maxabs))
        XCTAssertEqual(quantizeWeight(1000, scale: 1), 127)
        XCTAssertEqual(quantizeWeight(-1000, scale: 1), -127)
        XCTAssertEqual(quantizeWeight(2.5, scale: 1), 2)  // half to even
    }

    func testHoldoutSpreadsOverTheSet() {
        let held = holdoutIndices(count: 100, fraction: 0.2)
        XCTAssertEqual(held.count, 20)
        XCTAssertEqual(held.first, 4)
        XCTAssertEqual(held.last, 99)
        XCTAssertEqual(holdoutIndices(count: 100, fraction: 0), [])
        XCTAssertEqual(evenlySpaced(Array(0..<10), count: 5), [0, 2, 4, 6, 8])
    }
}

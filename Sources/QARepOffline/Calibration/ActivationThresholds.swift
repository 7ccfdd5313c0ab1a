// Choosing the clipping threshold T of a uint8 activation (zero point 0, scale T / 255) from its histogram.
#if canImport(FoundationEssentials)
// FoundationEssentials, not Foundation: linked statically, Foundation's internationalization brings ICU's
// data (tens of MB) into the CLI. Glibc gives the math and stdio that Foundation re-exported.
import FoundationEssentials
import Glibc
#else
import Foundation
#endif

public enum ActivationCalibrationMethod: String, Sendable, CaseIterable, Codable {
    /// T = observed maximum.
    case minmax
    /// T = the given percentile of all values (zeros included), as pytorch-quantization and ONNX Runtime do.
    case percentile
    /// T minimizing the expected squared quantization error: clipping error above T plus rounding error
    /// (step^2 / 12) below it (the paper's Eq. 1).
    case mse
    /// T minimizing the KL divergence between the clipped distribution and its 256-level quantization,
    /// TensorRT's entropy calibration on a 2048-bin histogram.
    case entropy
}

/// Levels of a uint8 activation; also the entropy method's number of quantized bins.
let activationLevels = 256

/// The threshold (clipping value) for `histogram`, > 0 whenever the activation has any positive value; 0 for an
/// activation that was never positive.
public func activationThreshold(_ histogram: ActivationHistogram, method: ActivationCalibrationMethod,
                                 percentile: Double = 99.99) -> Double {
    guard histogram.positiveCount > 0, histogram.binWidth > 0 else { return 0 }
    let maxValue = Double(histogram.maxValue)
    switch method {
    case .minmax:
        return maxValue
    case .percentile:
        return min(percentileThreshold(histogram, percentile: percentile), maxValue)
    case .mse:
        return min(mseThreshold(histogram), maxValue)
    case .entropy:
        return min(entropyThreshold(histogram), maxValue)
    }
}

func percentileThreshold(_ histogram: ActivationHistogram, percentile: Double) -> Double {
    let fraction = min(max(percentile, 0), 100) / 100
    let target = fraction * histogram.totalCount
    var cumulative = histogram.zeroCount
    if cumulative >= target { return histogram.binWidth }  // an almost-all-zero activation: keep the finest range
    for index in 0..<histogram.counts.count {
        cumulative += histogram.counts[index]
        if cumulative >= target { return histogram.edge(index + 1) }
    }
    return Double(histogram.maxValue)
}

/// Expected squared error of quantizing the histogram's positive values with threshold `threshold`, values
/// represented by their bin centers; rounding error modeled as uniform, (T/255)^2 / 12 per unclipped value.
/// Evaluates every bin edge in O(bins) with suffix sums of n, n*x, n*x^2.
func mseThreshold(_ histogram: ActivationHistogram) -> Double {
    let end = histogram.occupiedBins
    guard end > 0 else { return 0 }
    var suffixCount = [Double](repeating: 0, count: end + 1)
    var suffixSum = [Double](repeating: 0, count: end + 1)
    var suffixSquares = [Double](repeating: 0, count: end + 1)
    for index in stride(from: end - 1, through: 0, by: -1) {
        let n = histogram.counts[index], x = histogram.center(index)
        suffixCount[index] = suffixCount[index + 1] + n
        suffixSum[index] = suffixSum[index + 1] + n * x
        suffixSquares[index] = suffixSquares[index + 1] + n * x * x
    }
    let steps = Double(activationLevels - 1)
    var bestThreshold = histogram.edge(end)
    var bestError = Double.infinity
    for cut in 1...end {
        // Values in bins [0, cut) are kept (their centers lie below T = edge(cut)); the rest are clipped to T.
        let threshold = histogram.edge(cut)
        let kept = suffixCount[0] - suffixCount[cut]
        let step = threshold / steps
        let rounding = kept * step * step / 12
        let clipping = suffixSquares[cut] - 2 * threshold * suffixSum[cut] + threshold * threshold * suffixCount[cut]
        let error = rounding + clipping
        if error < bestError {
            bestError = error
            bestThreshold = threshold
        }
    }
    return bestThreshold
}

/// Bins of the entropy method's reference histogram over [0, max], as TensorRT and pytorch-quantization use.
let entropyBins = 2048
/// Smallest candidate threshold, in reference bins (pytorch-quantization's start_bin).
let entropyFirstCandidate = 128
/// Probability given to a bin that Q leaves empty but P does not.
let entropySmoothing = 1e-4

func entropyThreshold(_ histogram: ActivationHistogram) -> Double {
    let maxValue = Double(histogram.maxValue)
    guard maxValue > 0 else { return 0 }
    // Re-bin the positive part onto 2048 bins over [0, max]; each fine bin goes where its center falls.
    var reference = [Double](repeating: 0, count: entropyBins)
    let width = maxValue / Double(entropyBins)
    for index in 0..<histogram.occupiedBins where histogram.counts[index] > 0 {
        let target = min(Int(histogram.center(index) / width), entropyBins - 1)
        reference[target] += histogram.counts[index]
    }
    let quantizedBins = activationLevels
    var bestCut = entropyBins
    var bestDivergence = Double.infinity
    var candidate = [Double](repeating: 0, count: entropyBins)
    var outliers = reference.reduce(0, +)
    for index in 0..<entropyFirstCandidate { outliers -= reference[index] }
    for cut in entropyFirstCandidate...entropyBins {
        // Q: the unclipped first `cut` bins merged into 256 chunks, each chunk's mass spread evenly over its
        // non-empty bins; P: the same bins with everything above folded into the last one. The folded mass is
        // what Q misses, so thresholds that clip much are penalized (TensorRT, pytorch-quantization).
        for chunk in 0..<quantizedBins {
            let start = chunk * cut / quantizedBins, stop = (chunk + 1) * cut / quantizedBins
            var mass = 0.0, nonEmpty = 0
            for index in start..<stop where reference[index] > 0 {
                mass += reference[index]
                nonEmpty += 1
            }
            let share = nonEmpty > 0 ? mass / Double(nonEmpty) : 0
            for index in start..<stop { candidate[index] = reference[index] > 0 ? share : 0 }
        }
        var totalQ = 0.0
        for index in 0..<cut { totalQ += candidate[index] }
        let totalP = totalQ + outliers
        defer { if cut < entropyBins { outliers -= reference[cut] } }
        guard totalP > 0, totalQ > 0 else { continue }
        var divergence = 0.0
        for index in 0..<cut {
            let p = (reference[index] + (index == cut - 1 ? outliers : 0)) / totalP
            guard p > 0 else { continue }
            // Folded outliers can land in a bin Q leaves empty; an infinite divergence would then reject every
            // clipping threshold and leave the maximum. Smooth such bins to a small probability as MXNet's and
            // ncnn's KL calibrators do.
            let q = max(candidate[index] / totalQ, entropySmoothing)
            divergence += p * log(p / q)
        }
        if divergence < bestDivergence {
            bestDivergence = divergence
            bestCut = cut
        }
    }
    return Double(bestCut) * width
}

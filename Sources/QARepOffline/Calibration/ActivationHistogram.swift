// Histogram of one non-negative activation, collected in a single pass over the calibration set.
// The range is not known in advance, so it adapts: the first batch sets it to that batch's maximum, and a later
// larger value doubles the bin width (merging bin pairs) until it fits. Doubling keeps every old bin boundary a
// boundary, so counts stay exact; the data maximum always lies in the upper half of the range, i.e. at least
// bins/2 bins cover [0, max]. One pass halves calibration time against the classic max-pass + histogram-pass.
public struct ActivationHistogram: Sendable, Equatable {
    public private(set) var counts: [Double]
    /// 0 until the first positive value arrives.
    public private(set) var binWidth: Double = 0
    /// Values <= 0 (after ReLU: exact zeros). They quantize to 0 exactly whatever the scale, so the threshold
    /// searches leave them out and only the percentile counts them.
    public private(set) var zeroCount: Double = 0
    public private(set) var positiveCount: Double = 0
    public private(set) var nonFiniteCount: Double = 0
    public private(set) var maxValue: Float = 0
    public private(set) var sum: Double = 0
    public private(set) var sumOfSquares: Double = 0

    public init(bins: Int = 8192) {
        counts = [Double](repeating: 0, count: max(bins, 2) & ~1)
    }

    public var totalCount: Double { zeroCount + positiveCount }
    public var range: Double { binWidth * Double(counts.count) }

    public mutating func add(_ values: UnsafeBufferPointer<Float>) {
        var batchMax: Float = 0
        var nonFinite = 0
        for value in values {
            if value.isFinite { batchMax = max(batchMax, value) } else { nonFinite += 1 }
        }
        nonFiniteCount += Double(nonFinite)
        if batchMax > 0 { fit(Double(batchMax)) }
        maxValue = max(maxValue, batchMax)
        var zeros = 0
        var batchSum = 0.0, batchSquares = 0.0
        let scale = binWidth > 0 ? 1 / binWidth : 0
        let lastBin = counts.count - 1
        counts.withUnsafeMutableBufferPointer { bins in
            for value in values where value.isFinite {
                if value <= 0 {
                    zeros += 1
                    continue
                }
                let x = Double(value)
                batchSum += x
                batchSquares += x * x
                bins[min(Int(x * scale), lastBin)] += 1
            }
        }
        zeroCount += Double(zeros)
        positiveCount += Double(values.count - zeros - nonFinite)
        sum += batchSum
        sumOfSquares += batchSquares
    }

    private mutating func fit(_ value: Double) {
        if binWidth == 0 {
            binWidth = value / Double(counts.count)
            return
        }
        while value > range {
            let half = counts.count / 2
            for index in 0..<half { counts[index] = counts[2 * index] + counts[2 * index + 1] }
            for index in half..<counts.count { counts[index] = 0 }
            binWidth *= 2
        }
    }

    /// Lower edge of bin `index`.
    func edge(_ index: Int) -> Double { Double(index) * binWidth }
    func center(_ index: Int) -> Double { (Double(index) + 0.5) * binWidth }

    /// One past the last non-empty bin (0 when there are no positive values).
    var occupiedBins: Int {
        var end = counts.count
        while end > 0 && counts[end - 1] == 0 { end -= 1 }
        return end
    }
}

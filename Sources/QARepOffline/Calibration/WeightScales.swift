// Per-output-channel symmetric int8 weight scales (range [-127, 127]).

public enum WeightCalibrationMethod: String, Sendable, CaseIterable, Codable {
    /// scale = max |w| / 127 per output channel: nothing is clipped.
    case maxabs
    /// The clipping value (searched between 25% and 100% of max |w|) minimizing the channel's squared
    /// quantization error, measured on the actual weights.
    case mse
}

/// Largest int8 magnitude used; -128 is never produced (docs/model-format.md).
let weightLevels: Float = 127

/// Scale for one output channel's weights; 1 for an all-zero channel (any positive scale is exact there).
func weightScale(_ weights: ArraySlice<Float>, method: WeightCalibrationMethod) -> Float {
    var maxAbs: Float = 0
    for value in weights { maxAbs = max(maxAbs, abs(value)) }
    guard maxAbs > 0, maxAbs.isFinite else { return 1 }
    switch method {
    case .maxabs:
        return maxAbs / weightLevels
    case .mse:
        let candidates = 96
        var bestScale = maxAbs / weightLevels
        var bestError = Float.infinity
        for step in 0...candidates {
            let clip = maxAbs * (0.25 + 0.75 * Float(step) / Float(candidates))
            let scale = clip / weightLevels
            var error: Float = 0
            for value in weights {
                let q = min(max((value / scale).rounded(.toNearestOrEven), -weightLevels), weightLevels)
                let difference = value - q * scale
                error += difference * difference
            }
            if error < bestError {
                bestError = error
                bestScale = scale
            }
        }
        return bestScale
    }
}

/// Symmetric int8 quantization with round half to even, saturating at +-127.
func quantizeWeight(_ value: Float, scale: Float) -> Int8 {
    Int8(min(max((value / scale).rounded(.toNearestOrEven), -weightLevels), weightLevels))
}

// What calibration chose and how well the INT8 model follows the FP32 one: the per-layer error report users of
// RepVGG-family PTQ keep asking for (find the layer that collapses).
#if canImport(FoundationEssentials)
// FoundationEssentials, not Foundation: linked statically, Foundation's internationalization brings ICU's
// data (tens of MB) into the CLI. Glibc gives the math and stdio that Foundation re-exported.
import FoundationEssentials
import Glibc
#else
import Foundation
#endif

/// One activation's observed distribution (the paper's C2) and the chosen uint8 range.
public struct ActivationStatistics: Sendable, Codable, Equatable {
    public var max: Float
    public var mean: Double
    public var std: Double
    /// Fraction of values that were exactly 0 (ReLU-off).
    public var zeroFraction: Double
    /// Clipping value T; the scale is T / 255.
    public var threshold: Double
    public var scale: Float
    /// Fraction of positive values above T.
    public var clippedFraction: Double
    /// 10 log10(sum x^2 / expected squared quantization error), from the histogram.
    public var estimatedSQNR: Double
}

public struct LayerReport: Sendable, Codable, Equatable {
    public var name: String
    public var inChannels: Int
    public var outChannels: Int
    public var stride: Int
    public var groups: Int
    public var weight: WeightStatistics
    public var activation: ActivationStatistics
    /// Mean |bias correction| over output channels, in steps of this layer's output scale; nil without
    /// bias correction.
    public var biasCorrectionShift: Double? = nil
}

/// INT8 (the real runtime) against FP32 on images not used for calibration.
public struct HoldoutReport: Sendable, Codable, Equatable {
    public var images: Int
    /// Fraction of images whose INT8 top-1 class equals the FP32 one.
    public var top1Agreement: Double
    public var meanLogitCosine: Double
    public var minLogitCosine: Double
    /// The runtime kernel path that produced the INT8 logits.
    public var kernel: String
}

public struct CalibrationReport: Sendable, Codable, Equatable {
    public var method: String
    public var percentile: Double?
    public var weightMethod: String
    public var calibrationImages: Int
    /// Images the bias correction measured its means on; 0 when it was off.
    public var biasCorrectionImages: Int = 0
    /// Mean |FC bias correction| over classes, in logit units; nil without bias correction.
    public var fcBiasCorrectionShift: Double? = nil
    public var skippedImages: [String]
    public var layers: [LayerReport]
    public var pool: ActivationStatistics
    public var fc: WeightStatistics
    /// Per conv layer, what cross-layer equalization did; nil when it was off.
    public var equalization: [EqualizationScales]? = nil
    /// Per conv layer, what weight rounding and the clipping search did; nil when both were off.
    public var refinement: [LayerRefinementReport]? = nil
    /// Biases clamped to keep the int32 accumulator bound of docs/model-format.md (normally empty).
    public var clampedBiases: [String]
    public var holdout: HoldoutReport?
    public var calibrationSeconds: Double
    public var biasCorrectionSeconds: Double = 0
    public var holdoutSeconds: Double

    public func jsonString() throws -> String { try reportJSON(self) }
}

/// Pretty, key-sorted JSON of a report, non-finite numbers as strings.
func reportJSON<T: Encodable>(_ value: T) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}

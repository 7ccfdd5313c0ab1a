// The content of a QARep model file (docs/model-format.md), as plain values: what the loader produces after
// validation and what the writer serializes. The offline module builds one to export a model; tests and
// bench build synthetic ones.

/// One fused 3x3 conv + bias + ReLU layer, quantized.
public struct QuantizedConvLayer: Sendable, Equatable {
    /// Input channels (the previous layer's output channels).
    public var inChannels: Int
    /// Output channels.
    public var outChannels: Int
    /// 1 or 2; padding is always 1.
    public var stride: Int
    /// Channel groups; divides both channel counts.
    public var groups: Int
    /// OIHW: [outChannels][inChannels / groups][3][3], values in -127...127.
    public var weight: [Int8]
    /// Per output channel, finite and > 0.
    public var weightScale: [Float]
    /// In units of inputScale * weightScale[o] (before any zero-point correction).
    public var bias: [Int32]
    /// Scale of this layer's uint8 output (zero point 0).
    public var outputScale: Float

    /// A layer from its values, which `Model(description:)` validates.
    public init(inChannels: Int, outChannels: Int, stride: Int, groups: Int, weight: [Int8],
                weightScale: [Float], bias: [Int32], outputScale: Float) {
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.stride = stride
        self.groups = groups
        self.weight = weight
        self.weightScale = weightScale
        self.bias = bias
        self.outputScale = outputScale
    }
}

/// Preprocessing a model expects, from its metadata.
public struct Preprocessing: Sendable, Equatable {
    /// Per-channel normalization on the 0...1 pixel scale: x = (pixel / 255 - mean) / std.
    public var mean: [Float]
    /// Per-channel standard deviation, see `mean`.
    public var std: [Float]
    /// In (0, 1]: resize the shorter side to size / cropRatio, then center-crop; 1 resizes straight to size.
    public var cropRatio: Float

    /// ImageNet's normalization and a 0.875 center crop unless given.
    public init(mean: [Float] = [0.485, 0.456, 0.406], std: [Float] = [0.229, 0.224, 0.225], cropRatio: Float = 0.875) {
        self.mean = mean
        self.std = std
        self.cropRatio = cropRatio
    }
}

/// A whole quantized network.
public struct QuantizedModelDescription: Sendable, Equatable {
    /// Pixels the network takes, vertically.
    public var inputHeight: Int
    /// Pixels the network takes, horizontally.
    public var inputWidth: Int
    /// The normalization and crop of the input.
    public var preprocessing: Preprocessing
    /// Scale of the uint8 input pixels (normally 1/255).
    public var inputScale: Float
    /// Per-channel input zero point (round(255 * mean)), also the first conv's padding value.
    public var inputZeroPoint: [UInt8]
    /// The 3x3 conv layers in order.
    public var convs: [QuantizedConvLayer]
    /// Scale of the uint8 pooled vector (zero point 0).
    public var poolOutputScale: Float
    /// Outputs of the classifier.
    public var numClasses: Int
    /// [numClasses][last conv outChannels], values in -127...127.
    public var fcWeight: [Int8]
    /// Per class, finite and > 0.
    public var fcWeightScale: [Float]
    /// In units of poolOutputScale * fcWeightScale[k].
    public var fcBias: [Int32]
    /// numClasses labels (the loader fills class_N when the file has none).
    public var labels: [String]
    /// Extra free-text metadata written as is (e.g. "producer", "calibration").
    public var extraMetadata: [String: String]

    /// A description from its values, which `Model(description:)` and `serialized()` validate.
    public init(inputHeight: Int, inputWidth: Int, preprocessing: Preprocessing, inputScale: Float,
                inputZeroPoint: [UInt8], convs: [QuantizedConvLayer], poolOutputScale: Float, numClasses: Int,
                fcWeight: [Int8], fcWeightScale: [Float], fcBias: [Int32], labels: [String],
                extraMetadata: [String: String] = [:]) {
        self.inputHeight = inputHeight
        self.inputWidth = inputWidth
        self.preprocessing = preprocessing
        self.inputScale = inputScale
        self.inputZeroPoint = inputZeroPoint
        self.convs = convs
        self.poolOutputScale = poolOutputScale
        self.numClasses = numClasses
        self.fcWeight = fcWeight
        self.fcWeightScale = fcWeightScale
        self.fcBias = fcBias
        self.labels = labels
        self.extraMetadata = extraMetadata
    }
}

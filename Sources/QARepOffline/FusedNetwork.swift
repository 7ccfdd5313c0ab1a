// The FP32 deploy form of a RepVGG-family classifier after exact reparameterization: a plain stack of
// 3x3 convs (+ bias, + ReLU), global average pooling and a linear head. Import + fusion produce it;
// the FP32 forward, calibration and export consume it.
import QARep

public struct FusedConv: Sendable {
    public var inChannels: Int
    public var outChannels: Int
    public var stride: Int
    public var groups: Int
    /// OIHW [outChannels][inChannels / groups][3][3]; applied to the normalized input for layer 0.
    public var weight: [Float]
    public var bias: [Float]

    public init(inChannels: Int, outChannels: Int, stride: Int, groups: Int, weight: [Float], bias: [Float]) {
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.stride = stride
        self.groups = groups
        self.weight = weight
        self.bias = bias
    }
}

public struct FusedNetwork: Sendable {
    public var convs: [FusedConv]
    /// [numClasses][last outChannels]
    public var fcWeight: [Float]
    public var fcBias: [Float]
    public var numClasses: Int
    public var inputHeight: Int
    public var inputWidth: Int
    public var preprocessing: Preprocessing
    public var labels: [String]

    public init(convs: [FusedConv], fcWeight: [Float], fcBias: [Float], numClasses: Int, inputHeight: Int,
                inputWidth: Int, preprocessing: Preprocessing, labels: [String]) {
        self.convs = convs
        self.fcWeight = fcWeight
        self.fcBias = fcBias
        self.numClasses = numClasses
        self.inputHeight = inputHeight
        self.inputWidth = inputWidth
        self.preprocessing = preprocessing
        self.labels = labels
    }
}

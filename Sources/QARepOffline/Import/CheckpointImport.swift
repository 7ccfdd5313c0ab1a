// Entry point of checkpoint import (owned by the import/fusion work). The signature is shared with the
// calibration and CLI code; the body is filled in by the importer.
import QARep

/// What a state_dict cannot tell about a model.
public struct ImportOptions: Sendable {
    /// BatchNorm epsilon (not stored in state_dicts): 1e-5 for most sources, 1e-3 for YOLOv6.
    public var bnEpsilon: Double = 1e-5
    public var inputHeight: Int = 224
    public var inputWidth: Int = 224
    public var preprocessing = Preprocessing()
    /// One label per class; nil gives class_0, class_1, ...
    public var labels: [String]? = nil

    public init() {}
}

public struct ImportError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Reads a checkpoint (safetensors, or a PyTorch torch.save zip through a restricted unpickler), recognizes its
/// RepVGG-family layout by key names and shapes, and fuses every block into one 3x3 conv + bias.
public func importCheckpoint(path: String, options: ImportOptions) throws -> FusedNetwork {
    throw ImportError("checkpoint import is not implemented yet")
}

// Writes a FusedNetwork as a deploy-form state_dict in the official RepVGG naming (stage0.rbr_reparam.*,
// stageS.N.rbr_reparam.*, linear.*), as safetensors. Stages are recovered from the layer list (a new stage
// starts wherever the stride is 2 or the width changes); the exact strides also go into the metadata, so
// the importer reads the file back to the same network even where the builder convention would differ.
#if canImport(FoundationEssentials)
// FoundationEssentials, not Foundation: linked statically, Foundation's internationalization brings ICU's
// data (tens of MB) into the CLI. Glibc gives the math and stdio that Foundation re-exported.
import FoundationEssentials
import Glibc
#else
import Foundation
#endif
import QARep

/// safetensors metadata key holding the comma-separated stride of every block.
let fusedCheckpointStridesKey = "qarep.block_strides"

func fusedCheckpointStrides(_ metadata: [String: String]) throws -> [Int]? {
    guard let text = metadata[fusedCheckpointStridesKey] else { return nil }
    let values = text.split(separator: ",").map { Int($0.trimmedWhitespace) }
    guard !values.isEmpty, values.allSatisfy({ $0 == 1 || $0 == 2 }) else {
        throw ImportError("metadata '\(fusedCheckpointStridesKey)' = '\(text)' is not a list of 1s and 2s")
    }
    return values.compactMap { $0 }
}

/// Module names for the layers of `net`: "stage0", then "stageS.N".
func deployBlockNames(_ net: FusedNetwork) -> [String] {
    var names: [String] = []
    var stage = 0
    var indexInStage = 0
    for (index, conv) in net.convs.enumerated() {
        if index == 0 {
            names.append("stage0")
            continue
        }
        if index == 1 || conv.stride == 2 || conv.inChannels != conv.outChannels {
            stage += 1
            indexInStage = 0
        } else {
            indexInStage += 1
        }
        names.append("stage\(stage).\(indexInStage)")
    }
    return names
}

public func writeFusedCheckpoint(_ net: FusedNetwork, path: String) throws {
    let lowered = path.lowercased()
    guard !lowered.hasSuffix(".pth"), !lowered.hasSuffix(".pt") else {
        throw ImportError("\(path): fused checkpoints are written as safetensors; use a .safetensors file name")
    }
    var writer = SafetensorsWriter(metadata: [
        fusedCheckpointStridesKey: net.convs.map { String($0.stride) }.joined(separator: ","),
        "format": "pt",
    ])
    do {
        for (name, conv) in zip(deployBlockNames(net), net.convs) {
            let shape = [conv.outChannels, conv.inChannels / max(conv.groups, 1), 3, 3]
            guard conv.weight.count == shape.reduce(1, *), conv.bias.count == conv.outChannels else {
                throw ImportError("layer '\(name)': weight/bias sizes do not match \(shape)")
            }
            try writer.add(name: name + ".rbr_reparam.weight", shape: shape, float32: conv.weight)
            try writer.add(name: name + ".rbr_reparam.bias", shape: [conv.outChannels], float32: conv.bias)
        }
        let features = net.convs.last?.outChannels ?? 0
        guard net.fcWeight.count == net.numClasses * features, net.fcBias.count == net.numClasses else {
            throw ImportError("head sizes do not match \(net.numClasses) classes x \(features) features")
        }
        try writer.add(name: "linear.weight", shape: [net.numClasses, features], float32: net.fcWeight)
        try writer.add(name: "linear.bias", shape: [net.numClasses], float32: net.fcBias)
    } catch let error as QARepError {
        throw ImportError("\(path): \(error.message)")
    }
    let bytes = writer.serialized()
    guard FileManager.default.createFile(atPath: path, contents: Data(bytes)) else {
        throw ImportError("\(path): cannot write the file")
    }
}

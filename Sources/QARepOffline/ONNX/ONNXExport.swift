// Writes a QARep INT8 model as a standard ONNX QDQ graph (opset 13) with exactly our integers and scales,
// so ONNX Runtime, OpenVINO or TensorRT run the same quantized network side by side with ours.
//
// Graph (input: uint8 RGB pixels, NCHW [N, 3, H, W]):
//   DequantizeLinear(pixels, 1/255 per channel, zero_point per channel, axis 1)
//   per conv: Conv(x, DQ(int8 W, per-channel scale), DQ(int32 bias, in_scale * w_scale)) -> Relu
//             -> QuantizeLinear(output_scale, 0) -> DequantizeLinear
//   GlobalAveragePool -> QuantizeLinear(pool scale) -> DequantizeLinear -> Flatten
//   Gemm(x, DQ(int8 FC weight), DQ(int32 FC bias), transB = 1) -> logits (float)
// The first conv's zero-point padding is what DequantizeLinear with a per-channel zero point means, so the
// graph and the runtime compute the same function (docs/model-format.md).
import QARep

public enum ONNXExportError: Error, CustomStringConvertible {
    case invalidModel(String)
    public var description: String {
        switch self {
        case .invalidModel(let why): return "cannot export to ONNX: \(why)"
        }
    }
}

private enum ONNXType: Int64 {
    case float = 1, uint8 = 2, int8 = 3, int32 = 6, int64 = 7
}

private enum AttributeType: Int64 {
    case float = 1, int = 2, ints = 7
}

private enum Attribute {
    case int(String, Int64)
    case ints(String, [Int64])
}

private struct Node {
    var op: String
    var inputs: [String]
    var outputs: [String]
    var attributes: [Attribute] = []
}

private struct Initializer {
    var name: String
    var type: ONNXType
    var dims: [Int64]
    var raw: [UInt8]
}

private func littleEndianBytes<T: FixedWidthInteger>(_ values: [T]) -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(values.count * MemoryLayout<T>.size)
    for v in values { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
    return out
}

private func floatBytes(_ values: [Float]) -> [UInt8] { littleEndianBytes(values.map(\.bitPattern)) }

/// Builds the node list and initializers, then serializes them as an ONNX ModelProto.
public func exportONNX(_ model: QuantizedModelDescription, producerVersion: String = "0.1.0") throws -> [UInt8] {
    guard let last = model.convs.last else { throw ONNXExportError.invalidModel("the model has no conv layers") }
    var nodes: [Node] = []
    var initializers: [Initializer] = []

    func constant(_ name: String, _ type: ONNXType, _ dims: [Int], _ raw: [UInt8]) -> String {
        initializers.append(Initializer(name: name, type: type, dims: dims.map(Int64.init), raw: raw))
        return name
    }
    // A scalar scale and uint8 zero point for a per-tensor activation quantization.
    func activationQuantization(_ prefix: String, _ scale: Float) -> (String, String) {
        (constant("\(prefix).scale", .float, [], floatBytes([scale])),
         constant("\(prefix).zero_point", .uint8, [], [0]))
    }
    func dequantizedPerChannel(_ prefix: String, _ data: [UInt8], type: ONNXType, dims: [Int], scales: [Float]) -> String {
        let q = constant("\(prefix).quantized", type, dims, data)
        let s = constant("\(prefix).scale", .float, [scales.count], floatBytes(scales))
        let zeroBytes = [UInt8](repeating: 0, count: scales.count * (type == .int32 ? 4 : 1))
        let z = constant("\(prefix).zero_point", type, [scales.count], zeroBytes)
        let out = "\(prefix).dequantized"
        nodes.append(Node(op: "DequantizeLinear", inputs: [q, s, z], outputs: [out], attributes: [.int("axis", 0)]))
        return out
    }

    let inputChannels = model.inputZeroPoint.count
    let inScale = constant("input.scale", .float, [inputChannels],
                           floatBytes([Float](repeating: model.inputScale, count: inputChannels)))
    let inZero = constant("input.zero_point", .uint8, [inputChannels], model.inputZeroPoint)
    nodes.append(Node(op: "DequantizeLinear", inputs: ["pixels", inScale, inZero], outputs: ["input.dequantized"],
                      attributes: [.int("axis", 1)]))

    var x = "input.dequantized"
    var inputScale = model.inputScale
    for (i, conv) in model.convs.enumerated() {
        let p = "conv.\(i)"
        let w = dequantizedPerChannel("\(p).weight", conv.weight.map { UInt8(bitPattern: $0) }, type: .int8,
                                      dims: [conv.outChannels, conv.inChannels / max(conv.groups, 1), 3, 3],
                                      scales: conv.weightScale)
        let biasScales = conv.weightScale.map { Float(Double(inputScale) * Double($0)) }
        let b = dequantizedPerChannel("\(p).bias", littleEndianBytes(conv.bias), type: .int32,
                                      dims: [conv.outChannels], scales: biasScales)
        nodes.append(Node(op: "Conv", inputs: [x, w, b], outputs: ["\(p).conv"], attributes: [
            .ints("kernel_shape", [3, 3]), .ints("pads", [1, 1, 1, 1]),
            .ints("strides", [Int64(conv.stride), Int64(conv.stride)]), .int("group", Int64(conv.groups)),
        ]))
        nodes.append(Node(op: "Relu", inputs: ["\(p).conv"], outputs: ["\(p).relu"]))
        let (s, z) = activationQuantization("\(p).output", conv.outputScale)
        nodes.append(Node(op: "QuantizeLinear", inputs: ["\(p).relu", s, z], outputs: ["\(p).quantized"]))
        nodes.append(Node(op: "DequantizeLinear", inputs: ["\(p).quantized", s, z], outputs: ["\(p).output"]))
        x = "\(p).output"
        inputScale = conv.outputScale
    }

    nodes.append(Node(op: "GlobalAveragePool", inputs: [x], outputs: ["pool.average"]))
    let (ps, pz) = activationQuantization("pool.output", model.poolOutputScale)
    nodes.append(Node(op: "QuantizeLinear", inputs: ["pool.average", ps, pz], outputs: ["pool.quantized"]))
    nodes.append(Node(op: "DequantizeLinear", inputs: ["pool.quantized", ps, pz], outputs: ["pool.output"]))
    nodes.append(Node(op: "Flatten", inputs: ["pool.output"], outputs: ["pool.flat"], attributes: [.int("axis", 1)]))
    let fcW = dequantizedPerChannel("fc.weight", model.fcWeight.map { UInt8(bitPattern: $0) }, type: .int8,
                                    dims: [model.numClasses, last.outChannels], scales: model.fcWeightScale)
    let fcBiasScales = model.fcWeightScale.map { Float(Double(model.poolOutputScale) * Double($0)) }
    let fcB = dequantizedPerChannel("fc.bias", littleEndianBytes(model.fcBias), type: .int32,
                                    dims: [model.numClasses], scales: fcBiasScales)
    nodes.append(Node(op: "Gemm", inputs: ["pool.flat", fcW, fcB], outputs: ["logits"], attributes: [.int("transB", 1)]))

    return serializeModel(nodes: nodes, initializers: initializers, height: model.inputHeight, width: model.inputWidth,
                          channels: inputChannels, classes: model.numClasses, producerVersion: producerVersion)
}

private func serializeModel(nodes: [Node], initializers: [Initializer], height: Int, width: Int, channels: Int,
                            classes: Int, producerVersion: String) -> [UInt8] {
    func valueInfo(_ w: inout ProtobufWriter, name: String, type: ONNXType, dims: [Int64?]) {
        w.string(1, name)
        w.message(2) { typeProto in
            typeProto.message(1) { tensorType in
                tensorType.int(1, type.rawValue)
                tensorType.message(2) { shape in
                    for d in dims {
                        shape.message(1) { dim in
                            if let d { dim.int(1, d) } else { dim.string(2, "N") }
                        }
                    }
                }
            }
        }
    }

    var model = ProtobufWriter()
    model.int(1, 8)  // ir_version 8 (ONNX 1.10+), which opset 13 is valid with
    model.string(2, "qarep")
    model.string(3, producerVersion)
    model.message(7) { graph in
        for node in nodes {
            graph.message(1) { n in
                for i in node.inputs { n.string(1, i) }
                for o in node.outputs { n.string(2, o) }
                n.string(3, node.outputs[0])
                n.string(4, node.op)
                for attribute in node.attributes {
                    n.message(5) { a in
                        switch attribute {
                        case .int(let name, let value):
                            a.string(1, name)
                            a.int(3, value)
                            a.int(20, AttributeType.int.rawValue)
                        case .ints(let name, let values):
                            a.string(1, name)
                            for v in values { a.int(8, v) }
                            a.int(20, AttributeType.ints.rawValue)
                        }
                    }
                }
            }
        }
        graph.string(2, "qarep_int8")
        for t in initializers {
            graph.message(5) { tensor in
                for d in t.dims { tensor.int(1, d) }
                tensor.int(2, t.type.rawValue)
                tensor.string(8, t.name)
                tensor.data(9, t.raw)
            }
        }
        graph.message(11) { valueInfo(&$0, name: "pixels", type: .uint8,
                                      dims: [nil, Int64(channels), Int64(height), Int64(width)]) }
        graph.message(12) { valueInfo(&$0, name: "logits", type: .float, dims: [nil, Int64(classes)]) }
    }
    model.message(8) { opset in
        opset.string(1, "")
        opset.int(2, 13)
    }
    return model.bytes
}

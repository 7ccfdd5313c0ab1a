// Reading and writing QARep model files (docs/model-format.md). The loader checks every header field
// against its limit before anything is sized from it, then checks every tensor's dtype and shape before
// decoding it, then checks values (weight range, scales, multipliers, int32 bounds) via validate().

import CQARepKernels

package enum ModelFormat {
    package static let name = "qarep.int8"
    /// The highest format version this library reads and the one it writes.
    package static let version: UInt32 = 1
    package static let maxHeaderBytes = 16 << 20
    /// JSON values in the header: a model has at most 4 * maxConvLayers + 7 tensors of about 10 values each
    /// (name, dtype, shape, offsets) and a few dozen metadata strings; without a bound, a header of many
    /// tiny entries takes seconds and hundreds of MB to refuse.
    package static let maxHeaderValues = 1 << 16
    // The kernels' limits (qk_limits.h), stated once there.
    package static let maxConvLayers = Int(QK_MAX_CONV_LAYERS)
    package static let maxChannels = Int(QK_MAX_CHANNELS)
    package static let maxInputSide = Int(QK_MAX_SIDE)
    package static let maxClasses = Int(QK_MAX_CLASSES)
    package static let maxLabelBytes = 1024
    package static let maxActivationBytes = Int(QK_MAX_ACTIVATION_BYTES)
    static let jsonMaxDepth = 8
}

extension QuantizedModelDescription {
    /// The model as a .qarep file (safetensors). Throws if the description would not load back.
    public func serialized() throws(QARepError) -> [UInt8] {
        _ = try validate()
        var metadata: [String: String] = [
            "format": ModelFormat.name,
            "format_version": String(ModelFormat.version),
            "input_height": String(inputHeight),
            "input_width": String(inputWidth),
            "num_classes": String(numClasses),
            "layers": JSONValue.array(convs.map { layer in
                .object(["in": .integer(layer.inChannels), "out": .integer(layer.outChannels),
                         "stride": .integer(layer.stride), "groups": .integer(layer.groups)])
            }).serialized(),
            "mean": JSONValue.array(preprocessing.mean.map(JSONValue.float)).serialized(),
            "std": JSONValue.array(preprocessing.std.map(JSONValue.float)).serialized(),
            "channel_order": "RGB",
            "resize": "bilinear",
            "crop_ratio": preprocessing.cropRatio.description,
            "labels": JSONValue.array(labels.map(JSONValue.string)).serialized(),
        ]
        for (key, value) in extraMetadata {
            guard metadata[key] == nil else {
                throw .invalidArgument("extra metadata key \"\(key)\" collides with a key the format defines")
            }
            metadata[key] = value
        }
        var writer = SafetensorsWriter(metadata: metadata)
        try writer.add(name: "input.scale", shape: [1], float32: [inputScale])
        try writer.add(name: "input.zero_point", dtype: .u8, shape: [3], values: inputZeroPoint)
        for (i, layer) in convs.enumerated() {
            try writer.add(name: "conv.\(i).weight", dtype: .i8,
                           shape: [layer.outChannels, layer.inChannels / layer.groups, 3, 3], values: layer.weight)
            try writer.add(name: "conv.\(i).weight_scale", shape: [layer.outChannels], float32: layer.weightScale)
            try writer.add(name: "conv.\(i).bias", dtype: .i32, shape: [layer.outChannels], values: layer.bias)
            try writer.add(name: "conv.\(i).output_scale", shape: [1], float32: [layer.outputScale])
        }
        try writer.add(name: "pool.output_scale", shape: [1], float32: [poolOutputScale])
        let lastChannels = convs.last?.outChannels ?? 0
        try writer.add(name: "fc.weight", dtype: .i8, shape: [numClasses, lastChannels], values: fcWeight)
        try writer.add(name: "fc.weight_scale", shape: [numClasses], float32: fcWeightScale)
        try writer.add(name: "fc.bias", dtype: .i32, shape: [numClasses], values: fcBias)
        return writer.serialized()
    }

    /// Parses and validates a .qarep file.
    public init(fileBytes bytes: [UInt8]) throws(QARepError) {
        self = try bytes.withUnsafeBufferPointer { (raw) throws(QARepError) -> QuantizedModelDescription in
            let source = MemoryByteSource(bytes: UnsafeRawBufferPointer(raw))
            let contents = try ModelFileContents(source: source)
            var description = contents.skeleton
            for i in description.convs.indices {
                description.convs[i].weight = try source.int8Values(contents.convWeights[i])
            }
            description.fcWeight = try source.int8Values(contents.fcWeight)
            return description
        }
        _ = try validate()
    }

    /// The description without its weight tensors (empty conv and fc weights), which is all of it but the
    /// bulk: what a Model keeps besides the packed weights.
    var withoutWeights: QuantizedModelDescription {
        var skeleton = self
        for i in skeleton.convs.indices { skeleton.convs[i].weight = [] }
        skeleton.fcWeight = []
        return skeleton
    }
}

/// A model file's header and small tensors, checked (every key, dtype and shape, in the order the format
/// lists them) but its weight tensors only located, so that a loader can take them one layer at a time.
struct ModelFileContents {
    /// The description with empty weights.
    var skeleton: QuantizedModelDescription
    /// The file's "format_version", at most ModelFormat.version.
    var formatVersion: UInt32
    var convWeights: [SafetensorsTensorInfo]
    var fcWeight: SafetensorsTensorInfo
}

extension ModelFileContents {
    init(source: some ByteSource) throws(QARepError) {
        let header = try SafetensorsHeader(source: source, maxHeaderBytes: ModelFormat.maxHeaderBytes,
                                           maxHeaderValues: ModelFormat.maxHeaderValues)
        self = try ModelFileReader(header: header, source: source).read()
    }
}

private struct ModelFileReader<Source: ByteSource> {
    let header: SafetensorsHeader
    let source: Source

    func metadataValue(_ key: String) throws(QARepError) -> String {
        guard let value = header.metadata[key] else { throw .invalidModel("metadata key \"\(key)\" is missing") }
        return value
    }

    /// Plain decimal digits only (no sign, no spaces), within bounds.
    func decimal(_ key: String, in range: ClosedRange<Int>) throws(QARepError) -> Int {
        let text = try metadataValue(key)
        guard !text.isEmpty, text.utf8.count <= 12, text.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }),
              let value = Int(text), range.contains(value) else {
            throw .invalidModel("metadata key \"\(key)\" is \"\(text.prefix(40))\", expected a decimal integer in \(range.lowerBound)...\(range.upperBound)")
        }
        return value
    }

    func json(_ key: String) throws(QARepError) -> JSONValue {
        let text = try metadataValue(key)
        do {
            return try JSONValue.parse(text, maxDepth: ModelFormat.jsonMaxDepth)
        } catch {
            throw .invalidModel("metadata key \"\(key)\" is not valid JSON: \(error)")
        }
    }

    func threeFloats(_ key: String) throws(QARepError) -> [Float] {
        guard let items = try json(key).arrayValue, items.count == 3 else {
            throw .invalidModel("metadata key \"\(key)\" is not a JSON array of 3 numbers")
        }
        var values: [Float] = []
        for item in items {
            guard let v = item.floatValue, v.isFinite else {
                throw .invalidModel("metadata key \"\(key)\" holds a value that is not a finite number")
            }
            values.append(v)
        }
        return values
    }

    func tensor(_ name: String, _ dtype: SafetensorsDType, _ shape: [Int]) throws(QARepError) -> SafetensorsTensorInfo {
        guard let info = header.tensors[name] else { throw .invalidModel("tensor \"\(name)\" is missing") }
        guard info.dtype == dtype else {
            throw .invalidModel("tensor \"\(name)\" has dtype \(info.dtype.rawValue), expected \(dtype.rawValue)")
        }
        guard info.shape == shape else {
            throw .invalidModel("tensor \"\(name)\" has shape \(shapeText(info.shape)), expected \(shapeText(shape))")
        }
        return info
    }

    func read() throws(QARepError) -> ModelFileContents {
        let format = try metadataValue("format")
        guard format == ModelFormat.name else {
            throw .invalidModel("metadata key \"format\" is \"\(format.prefix(40))\", expected \"\(ModelFormat.name)\"")
        }
        let versionText = try metadataValue("format_version")
        guard !versionText.isEmpty, versionText.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else {
            throw .invalidModel("metadata key \"format_version\" is \"\(versionText.prefix(40))\", expected a decimal integer")
        }
        // All digits: a value too large for UInt32 is certainly newer than anything this library reads.
        let version = UInt32(versionText) ?? UInt32.max
        guard version <= ModelFormat.version else {
            throw QARepError(.unsupportedVersion, "model format version \(versionText.prefix(20)) is newer than the highest this library reads (\(ModelFormat.version))")
        }
        guard version >= 1 else { throw .invalidModel("metadata key \"format_version\" is 0, versions start at 1") }

        let inputHeight = try decimal("input_height", in: 1...ModelFormat.maxInputSide)
        let inputWidth = try decimal("input_width", in: 1...ModelFormat.maxInputSide)
        let numClasses = try decimal("num_classes", in: 1...ModelFormat.maxClasses)
        let layers = try readLayers()
        _ = try checkLayerGeometry(inputHeight: inputHeight, inputWidth: inputWidth, layers: layers.map {
            LayerGeometry(inChannels: $0.in, outChannels: $0.out, stride: $0.stride, groups: $0.groups)
        })
        let mean = try threeFloats("mean")
        let std = try threeFloats("std")
        let channelOrder = try metadataValue("channel_order")
        guard channelOrder == "RGB" else {
            throw .invalidModel("metadata key \"channel_order\" is \"\(channelOrder.prefix(40))\", expected \"RGB\"")
        }
        let resize = try metadataValue("resize")
        guard resize == "bilinear" else {
            throw .invalidModel("metadata key \"resize\" is \"\(resize.prefix(40))\", expected \"bilinear\"")
        }
        let cropText = try metadataValue("crop_ratio")
        guard let cropRatio = Float(cropText), cropText.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || $0 == 46 }) else {
            throw .invalidModel("metadata key \"crop_ratio\" is \"\(cropText.prefix(40))\", expected a decimal number")
        }
        var labels: [String]
        if header.metadata["labels"] != nil {
            guard let items = try json("labels").arrayValue else {
                throw .invalidModel("metadata key \"labels\" is not a JSON array")
            }
            guard items.count == numClasses else {
                throw .invalidModel("metadata key \"labels\" has \(items.count) entries, num_classes is \(numClasses)")
            }
            labels = []
            for (i, item) in items.enumerated() {
                guard let label = item.stringValue else { throw .invalidModel("metadata key \"labels\": entry \(i) is not a string") }
                labels.append(label)
            }
        } else {
            labels = (0..<numClasses).map { "class_\($0)" }
        }
        var extra = header.metadata
        for key in ["format", "format_version", "input_height", "input_width", "num_classes", "layers", "mean", "std",
                    "channel_order", "resize", "crop_ratio", "labels"] {
            extra[key] = nil
        }

        let inputScale = try source.float32Values(tensor("input.scale", .f32, [1]))[0]
        let zeroPoint = try source.uint8Values(tensor("input.zero_point", .u8, [3]))
        var convs: [QuantizedConvLayer] = []
        var convWeights: [SafetensorsTensorInfo] = []
        for (i, layer) in layers.enumerated() {
            convWeights.append(try tensor("conv.\(i).weight", .i8, [layer.out, layer.in / layer.groups, 3, 3]))
            let weightScale = try source.float32Values(tensor("conv.\(i).weight_scale", .f32, [layer.out]))
            let bias = try source.int32Values(tensor("conv.\(i).bias", .i32, [layer.out]))
            let outputScale = try source.float32Values(tensor("conv.\(i).output_scale", .f32, [1]))[0]
            convs.append(QuantizedConvLayer(inChannels: layer.in, outChannels: layer.out, stride: layer.stride,
                                            groups: layer.groups, weight: [], weightScale: weightScale,
                                            bias: bias, outputScale: outputScale))
        }
        let lastChannels = layers.last?.out ?? 0
        let poolScale = try source.float32Values(tensor("pool.output_scale", .f32, [1]))[0]
        let fcWeight = try tensor("fc.weight", .i8, [numClasses, lastChannels])
        let fcWeightScale = try source.float32Values(tensor("fc.weight_scale", .f32, [numClasses]))
        let fcBias = try source.int32Values(tensor("fc.bias", .i32, [numClasses]))
        let skeleton = QuantizedModelDescription(
            inputHeight: inputHeight, inputWidth: inputWidth,
            preprocessing: Preprocessing(mean: mean, std: std, cropRatio: cropRatio),
            inputScale: inputScale, inputZeroPoint: zeroPoint, convs: convs, poolOutputScale: poolScale,
            numClasses: numClasses, fcWeight: [], fcWeightScale: fcWeightScale, fcBias: fcBias,
            labels: labels, extraMetadata: extra)
        return ModelFileContents(skeleton: skeleton, formatVersion: version, convWeights: convWeights, fcWeight: fcWeight)
    }

    struct LayerHeader { var `in`: Int; var out: Int; var stride: Int; var groups: Int }

    func readLayers() throws(QARepError) -> [LayerHeader] {
        guard let items = try json("layers").arrayValue else {
            throw .invalidModel("metadata key \"layers\" is not a JSON array")
        }
        guard (1...ModelFormat.maxConvLayers).contains(items.count) else {
            throw .invalidModel("metadata key \"layers\" has \(items.count) layers, expected 1...\(ModelFormat.maxConvLayers)")
        }
        var layers: [LayerHeader] = []
        for (i, item) in items.enumerated() {
            guard let fields = item.objectValue else { throw .invalidModel("layers[\(i)] is not a JSON object") }
            func field(_ name: String) throws(QARepError) -> Int {
                guard let v = fields[name]?.intValue else {
                    throw .invalidModel("layers[\(i)] field \"\(name)\" is missing or not an integer")
                }
                return v
            }
            let layer = LayerHeader(in: try field("in"), out: try field("out"), stride: try field("stride"), groups: try field("groups"))
            layers.append(layer)
        }
        return layers
    }
}

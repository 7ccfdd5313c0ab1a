// The model: validated once, immutable, shareable across threads. It holds its weights only packed, for
// the path a session gets by default; a set for any other path is cached in the model the first time a
// session asks for it, so many sessions on one model share a single packed copy and packing runs once per
// path.
import CQARepKernels

/// A validated model, immutable and safe to share across threads.
///
/// Loading packs each layer as soon as it has passed validation, for the path `Kernel.auto` resolves to
/// (which honors QAREP_KERNEL), so it never holds more than that copy plus one layer's OIHW weights. A
/// session forcing another path repacks from these, and `description` unpacks them.
public final class Model: Sendable {
    /// The description without its weights (they live in `primary`).
    let skeleton: QuantizedModelDescription
    let arithmetic: DerivedArithmetic
    let primary: PackedNetwork
    /// Format version of the file the model was loaded from.
    public let formatVersion: UInt32
    private let packedByPath = Locked<[UInt32: PackedNetwork]>([:])

    private struct Parts {
        var skeleton: QuantizedModelDescription
        var arithmetic: DerivedArithmetic
        var primary: PackedNetwork
        var formatVersion: UInt32
    }

    private init(parts: Parts) {
        skeleton = parts.skeleton
        arithmetic = parts.arithmetic
        primary = parts.primary
        formatVersion = parts.formatVersion
    }

    /// Validates the model, packing each layer as soon as it has passed. Each layer's weights are fetched from
    /// `weights` when validation reaches it.
    private static func build(skeleton: QuantizedModelDescription, formatVersion: UInt32, packing: PackingOptions,
                              weights: some LayerWeights) throws(QARepError) -> Parts {
        // An unusable QAREP_KERNEL is reported by the session that asks for it; the model packs for the best path.
        let path = (try? Kernel.auto.resolved())?.path ?? qk_best_path()
        var network: PackedNetwork? = nil
        var budget = PackedNetwork.Budget()
        let convs = skeleton.convs
        let arithmetic = try skeleton.validate(
            convWeight: { (i, body) throws(QARepError) in
                // Validation has checked the layer geometry by now.
                let count = convs[i].outChannels * (convs[i].inChannels / convs[i].groups) * 9
                try weights.conv(i, staging: network?.convStaging(i, count: count), body)
            },
            fcWeight: { (body) throws(QARepError) in
                let count = skeleton.numClasses * (convs.last?.outChannels ?? 0)
                try weights.fc(staging: network?.fcStaging(count: count), body)
            }
        ) { (checked) throws(QARepError) in
            switch checked {
            case let .shapes(shapes):
                let use = PackedNetwork.winogradUse(path: path, shapes: shapes, classes: skeleton.numClasses, options: packing)
                network = try PackedNetwork(path: path, use: use, shapes: shapes, classes: skeleton.numClasses, budget: &budget)
            case let .conv(index, layer, weight):
                try network?.setConv(index, layer: layer, weight: weight)
            case let .fullyConnected(poolMultiplier, fcMultiplier, weight):
                try network?.setHead(poolMultiplier: poolMultiplier, fcMultiplier: fcMultiplier, fcBias: skeleton.fcBias,
                                     weight: weight)
            }
        }
        guard let network else { throw QARepError(.internal, "validation did not hand over the layers' weights") }
        return Parts(skeleton: skeleton, arithmetic: arithmetic, primary: network, formatVersion: formatVersion)
    }

    /// Reads the file's tensors one at a time, each straight from the source.
    private static func load(source: some ByteSource, packing: PackingOptions) throws(QARepError) -> Parts {
        let contents = try ModelFileContents(source: source)
        defer { qk_release_freed_heap() }  // the buffer, if any, is freed by now
        return try build(skeleton: contents.skeleton, formatVersion: contents.formatVersion, packing: packing,
                         weights: FileLayerWeights(source: source, contents: contents))
    }

    /// A model from a description in memory (as the offline tool or a test builds one), validated as a file would be.
    /// - Parameter packing: what the packed weights may give up for memory (``PackingOptions``).
    public convenience init(description: QuantizedModelDescription, packing: PackingOptions = []) throws(QARepError) {
        self.init(parts: try Model.build(skeleton: description.withoutWeights, formatVersion: ModelFormat.version,
                                         packing: packing, weights: DescriptionLayerWeights(description: description)))
    }

    /// Loads a model from the bytes of a `.qarep` file.
    /// - Parameter packing: what the packed weights may give up for memory (``PackingOptions``).
    public convenience init(bytes: [UInt8], packing: PackingOptions = []) throws(QARepError) {
        self.init(parts: try bytes.withUnsafeBufferPointer { (raw) throws(QARepError) -> Parts in
            try Model.load(source: MemoryByteSource(bytes: UnsafeRawBufferPointer(raw)), packing: packing)
        })
    }

    /// Loads from the caller's buffer without copying it; the buffer is not used after the call.
    convenience init(unsafeBytes bytes: UnsafeRawBufferPointer, packing: PackingOptions = []) throws(QARepError) {
        self.init(parts: try Model.load(source: MemoryByteSource(bytes: bytes), packing: packing))
    }

    /// Loads a `.qarep` model file, reading its tensors one at a time.
    ///
    /// ```swift
    /// let model = try Model(contentsOfFile: "repvgg-a0.qarep")
    /// print(model.inputWidth, model.numClasses)
    /// ```
    ///
    /// Throws `io` if the file cannot be read, `invalidModel` (naming the key or tensor) if it is malformed,
    /// `unsupportedVersion` if it is newer than this library reads.
    /// - Parameter packing: what the packed weights may give up for memory (``PackingOptions``); the default
    ///   leaves it to the kernels.
    public convenience init(contentsOfFile path: String, packing: PackingOptions = []) throws(QARepError) {
        self.init(parts: try Model.load(source: FileByteSource(path: path), packing: packing))
    }

    /// Bytes of the packed weights the model holds for its default path (a session forcing another path adds
    /// that path's own, once per model).
    public var packedWeightBytes: Int { primary.packedBytes }

    /// The description the model was made from, weights included, rebuilt from the packed weights (which
    /// costs one unpacked copy of them: read the other properties when they suffice).
    public var description: QuantizedModelDescription { get throws(QARepError) {
        var full = skeleton
        for (i, layer) in arithmetic.layers.enumerated() { full.convs[i].weight = try primary.convWeight(i, layer: layer) }
        full.fcWeight = try primary.fcWeight(inChannels: arithmetic.fcInChannels, classes: numClasses)
        return full
    } }

    /// The normalization and crop the model was trained and calibrated with.
    public var preprocessing: Preprocessing { skeleton.preprocessing }
    /// Pixels the network takes, vertically.
    public var inputHeight: Int { skeleton.inputHeight }
    /// Pixels the network takes, horizontally.
    public var inputWidth: Int { skeleton.inputWidth }
    /// Always 3 (RGB).
    public var inputChannels: Int { 3 }
    /// Outputs of the classifier.
    public var numClasses: Int { skeleton.numClasses }
    /// One label per class (class_N where the file has none).
    public var labels: [String] { skeleton.labels }
    /// 3x3 conv layers in the network.
    public var numConvLayers: Int { skeleton.convs.count }
    /// Multiply-accumulates of one forward pass.
    public var macsPerImage: Double { arithmetic.macsPerImage }
    /// Bytes of one input image, `inputHeight * inputWidth * 3`.
    public var imageBytes: Int { inputHeight * inputWidth * 3 }

    /// Every conv layer, then the pool and the fc layer.
    public var layers: [LayerInfo] {
        var list = arithmetic.layers.enumerated().map { i, l in
            LayerInfo(kind: .conv3x3, name: "conv.\(i)", inputHeight: l.inHeight, inputWidth: l.inWidth,
                      inputChannels: l.inChannels, outputHeight: l.outHeight, outputWidth: l.outWidth,
                      outputChannels: l.outChannels, stride: l.stride, groups: l.groups, macs: l.macs)
        }
        let last = arithmetic.layers.last
        let c = arithmetic.fcInChannels
        list.append(LayerInfo(kind: .globalAveragePool, name: "pool", inputHeight: last?.outHeight ?? 1,
                              inputWidth: last?.outWidth ?? 1, inputChannels: c, outputHeight: 1, outputWidth: 1,
                              outputChannels: c, stride: 1, groups: 1, macs: 0))
        list.append(LayerInfo(kind: .fullyConnected, name: "fc", inputHeight: 1, inputWidth: 1, inputChannels: c,
                              outputHeight: 1, outputWidth: 1, outputChannels: numClasses, stride: 1, groups: 1,
                              macs: c * numClasses))
        return list
    }

    /// Resizes and center-crops an RGB image of any size to this model's input, as its metadata says
    /// (docs/model-format.md, "Preprocessing"): the result is one of the images ``Session/run(images:batch:)-([UInt8],_)``
    /// takes.
    /// - Parameters:
    ///   - rgb: `height` rows of `width * 3` bytes (R, G, B), rows `rowStride` bytes apart.
    ///   - width: pixels per row of the image.
    ///   - height: rows of the image.
    ///   - rowStride: bytes from one row to the next; `nil` means `width * 3` (rows packed).
    /// - Returns: `inputHeight * inputWidth * 3` bytes.
    ///
    /// ```swift
    /// let input = try model.preprocess(rgb: pixels, width: 640, height: 480)
    /// ```
    public func preprocess(rgb: [UInt8], width: Int, height: Int, rowStride: Int? = nil) throws(QARepError) -> [UInt8] {
        try rgb.withUnsafeBufferPointer { (buffer) throws(QARepError) -> [UInt8] in
            try preprocess(unsafeRGB: buffer, width: width, height: height, rowStride: rowStride)
        }
    }

    /// The same for pixels in any contiguous memory, without a copy.
    public func preprocess(rgb: Span<UInt8>, width: Int, height: Int, rowStride: Int? = nil) throws(QARepError) -> [UInt8] {
        try rgb.withUnsafeBufferPointer { (buffer) throws(QARepError) -> [UInt8] in
            try preprocess(unsafeRGB: buffer, width: width, height: height, rowStride: rowStride)
        }
    }

    /// The same from a raw buffer.
    public func preprocess(unsafeRGB rgb: UnsafeBufferPointer<UInt8>, width: Int, height: Int, rowStride: Int? = nil) throws(QARepError) -> [UInt8] {
        let (stride, overflow) = width.multipliedReportingOverflow(by: 3)
        guard !overflow else { throw .invalidArgument("width \(width) is too large") }
        return try resizeAndCrop(rgb: rgb, width: width, height: height, rowStride: rowStride ?? stride,
                                 outputWidth: inputWidth, outputHeight: inputHeight, cropRatio: skeleton.preprocessing.cropRatio)
    }

    /// The packed network a session running `kernel` (resolved) uses.
    func network(for kernel: Kernel) throws(QARepError) -> PackedNetwork {
        guard let path = kernel.path else { throw QARepError(.internal, "packing requested for an unresolved kernel") }
        if path == primary.path { return primary }
        // Packing under the lock: two sessions racing for the same path must not both pay for (and hold) it.
        return try packedByPath.withLock { (cache) throws(QARepError) -> PackedNetwork in
            if let packed = cache[path.rawValue] { return packed }
            let packed = try primary.repacked(for: path, arithmetic: arithmetic, classes: numClasses)
            cache[path.rawValue] = packed
            return packed
        }
    }
}

extension Model {
    /// What a model's packed weights may give up to take less memory. The results are the same bytes
    /// whichever is chosen; only speed and memory change.
    ///
    /// Where the kernels find it faster, the int16 paths (avx2, avx512bw, neon) run a layer with exact
    /// Winograd, whose transformed weights take 16 (F(2x2,3x3)), 25 (stride 2) or 36 (F(4x4,3x3)) int16
    /// values per 9 weights. By default a model keeps them while its packed weights stay within a quarter of
    /// the machine's memory, giving up F(4x4,3x3) first and then Winograd beyond that; these options give
    /// them up regardless, as ncnn's `use_winograd_convolution` options do.
    ///
    /// ```swift
    /// let model = try Model(contentsOfFile: "repvgg-b3.qarep", packing: .noWinograd4x4)
    /// print(model.packedWeightBytes)
    /// ```
    public struct PackingOptions: OptionSet, Sendable, Hashable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }

        /// No Winograd F(4x4,3x3): stride-1 Winograd layers take 16 instead of 36 values per 9 weights
        /// (RepVGG-A0 224 on avx2: 23 instead of 43 MiB of packed weights).
        public static let noWinograd4x4 = PackingOptions(rawValue: 1)
        /// No Winograd at all: the direct kernels' weights only, the least memory (A0 on avx2: 16 MiB).
        public static let noWinograd = PackingOptions(rawValue: 2)
    }
}

/// Where a model's weights come from while it is built: each call hands a layer's weights to `body` (valid
/// during the call only). `staging`, when given, is where the kernels can pack them in place.
private protocol LayerWeights {
    func conv(_ index: Int, staging: UnsafeMutableBufferPointer<Int8>?,
              _ body: (UnsafeBufferPointer<Int8>) throws(QARepError) -> Void) throws(QARepError)
    func fc(staging: UnsafeMutableBufferPointer<Int8>?,
            _ body: (UnsafeBufferPointer<Int8>) throws(QARepError) -> Void) throws(QARepError)
}

/// A description's own arrays.
private struct DescriptionLayerWeights: LayerWeights {
    let description: QuantizedModelDescription

    func conv(_ index: Int, staging: UnsafeMutableBufferPointer<Int8>?,
              _ body: (UnsafeBufferPointer<Int8>) throws(QARepError) -> Void) throws(QARepError) {
        try description.convs[index].weight.withUnsafeBufferPointer(body)
    }

    func fc(staging: UnsafeMutableBufferPointer<Int8>?,
            _ body: (UnsafeBufferPointer<Int8>) throws(QARepError) -> Void) throws(QARepError) {
        try description.fcWeight.withUnsafeBufferPointer(body)
    }
}

/// A file's tensors, read one at a time into the staging place the kernels offer (so that loading needs no
/// buffer for them), else into one buffer reused for every tensor.
private final class FileLayerWeights<Source: ByteSource>: LayerWeights {
    let source: Source
    let contents: ModelFileContents
    private var buffer: [Int8] = []

    init(source: Source, contents: ModelFileContents) {
        self.source = source
        self.contents = contents
    }

    func conv(_ index: Int, staging: UnsafeMutableBufferPointer<Int8>?,
              _ body: (UnsafeBufferPointer<Int8>) throws(QARepError) -> Void) throws(QARepError) {
        try source.withInt8Values(contents.convWeights[index], staging: staging, reusing: &buffer, body)
    }

    func fc(staging: UnsafeMutableBufferPointer<Int8>?,
            _ body: (UnsafeBufferPointer<Int8>) throws(QARepError) -> Void) throws(QARepError) {
        try source.withInt8Values(contents.fcWeight, staging: staging, reusing: &buffer, body)
    }
}

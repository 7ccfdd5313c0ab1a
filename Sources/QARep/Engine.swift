// The model (immutable, shareable) and the session (per-thread workspace) that run a network through the
// kernels. The model holds its weights packed for the default path only; a set for any other path is
// cached in the model, built the first time a session asks for that path: many sessions on one model (one
// per serving thread) then share a single packed copy instead of each holding its own (A0's weights packed
// are several MB), and packing runs once per path.
import CQARepKernels
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

public enum Kernel: Sendable, Equatable, CaseIterable {
    /// QAREP_KERNEL if set, else the fastest this CPU supports.
    case auto
    case scalar
    case avx2
    case avx512vnni

    public var name: String {
        switch self {
        case .auto: return "auto"
        case .scalar: return "scalar"
        case .avx2: return "avx2"
        case .avx512vnni: return "avx512vnni"
        }
    }

    public init?(name: String) {
        guard let kernel = Kernel.allCases.first(where: { $0.name == name }) else { return nil }
        self = kernel
    }

    var path: qk_path? {
        switch self {
        case .auto: return nil
        case .scalar: return QK_PATH_SCALAR
        case .avx2: return QK_PATH_AVX2
        case .avx512vnni: return QK_PATH_AVX512VNNI
        }
    }

    init(path: qk_path) {
        switch path {
        case QK_PATH_AVX2: self = .avx2
        case QK_PATH_AVX512VNNI: self = .avx512vnni
        default: self = .scalar
        }
    }

    /// Whether this CPU can run the path (auto always can).
    public var isSupported: Bool {
        guard let path else { return true }
        return qk_path_supported(path) != 0
    }

    /// The concrete path a session with this request runs.
    public func resolved() throws(QARepError) -> Kernel {
        var kernel = self
        if kernel == .auto, let requested = Platform.environment("QAREP_KERNEL"), !requested.isEmpty {
            guard let named = Kernel(name: requested), named != .auto else {
                throw QARepError(.invalidArgument, "QAREP_KERNEL=\"\(requested.prefix(40))\" is not one of scalar, avx2, avx512vnni")
            }
            kernel = named
        }
        guard let path = kernel.path else { return Kernel(path: qk_best_path()) }
        guard qk_path_supported(path) != 0 else {
            throw QARepError(.unsupportedKernel, "kernel path \(kernel.name) cannot run on this CPU")
        }
        return kernel
    }
}

/// One step of the forward pass, for reports and profiling.
public struct LayerInfo: Sendable, Equatable {
    public enum Kind: Sendable, Equatable { case conv3x3, globalAveragePool, fullyConnected }
    public var kind: Kind
    public var name: String
    public var inputHeight: Int, inputWidth: Int, inputChannels: Int
    public var outputHeight: Int, outputWidth: Int, outputChannels: Int
    public var stride: Int
    public var groups: Int
    public var macs: Int
}

/// Packed weights of every layer for one kernel path; immutable once built.
final class PackedWeights: Sendable {
    let path: qk_path
    let convs: [AlignedBuffer]
    let fc: AlignedBuffer
    /// The qk_network that qk_network_run takes, and the biases, multipliers and pad values it points to:
    /// the kernels keep pointers for a whole run, so they live in memory owned here, not in Swift arrays.
    private let network: AlignedBuffer
    private let networkConvs: AlignedBuffer
    private let networkParameters: AlignedBuffer

    init(path: qk_path, arithmetic: DerivedArithmetic, fcBias: [Int32], convs: [AlignedBuffer], fc: AlignedBuffer) throws(QARepError) {
        self.path = path
        self.fc = fc
        self.convs = convs
        (network, networkConvs, networkParameters) = try Self.buildNetwork(
            arithmetic: arithmetic, fcBias: fcBias, classes: fcBias.count, convs: convs, fc: fc)
    }

    /// The same weights for another path, rebuilt layer by layer from these (so that at most one layer's
    /// OIHW weights exist at a time besides the two packed copies).
    convenience init(path: qk_path, arithmetic: DerivedArithmetic, fcBias: [Int32], repacking source: PackedWeights) throws(QARepError) {
        var convs: [AlignedBuffer] = []
        var budget = Budget()
        for (i, layer) in arithmetic.layers.enumerated() {
            convs.append(try Self.packConv(path: path, layer: layer, weight: source.convWeight(i, layer: layer), budget: &budget))
        }
        let fc = try Self.packFC(path: path, inChannels: arithmetic.fcInChannels, classes: fcBias.count,
                                 weight: source.fcWeight(inChannels: arithmetic.fcInChannels, classes: fcBias.count),
                                 budget: &budget)
        try self.init(path: path, arithmetic: arithmetic, fcBias: fcBias, convs: convs, fc: fc)
    }

    /// Packed layouts can take 20 times the file's bytes (a 3x3 depthwise layer packs 9 weights per channel
    /// into 192 bytes), so a model within the format's limits could still ask for gigabytes: the running
    /// total is refused, with a clear error, before it passes the machine's memory.
    struct Budget {
        private var used = 0
        private let limit: Int?

        init(limit: Int? = Platform.physicalMemoryBytes()) { self.limit = limit }

        mutating func reserve(_ bytes: Int) throws(QARepError) {
            used += bytes
            if let limit, used > limit {
                throw QARepError(.outOfMemory, "packed weights need more than \(used) bytes, more than this machine's memory (\(limit))")
            }
        }
    }

    static func packConv(path: qk_path, layer: DerivedConvLayer, weight: [Int8], budget: inout Budget) throws(QARepError) -> AlignedBuffer {
        var shape = layer.kernelShape
        let size = qk_conv3x3_packed_size(path, &shape)
        guard size > 0 else { throw QARepError(.internal, "kernel rejected the shape of a \(layer.inChannels) -> \(layer.outChannels) layer") }
        try budget.reserve(size)
        let buffer = try AlignedBuffer(count: size)
        weight.withUnsafeBufferPointer { qk_conv3x3_pack(path, &shape, $0.baseAddress, buffer.pointer) }
        return buffer
    }

    static func packFC(path: qk_path, inChannels: Int, classes: Int, weight: [Int8], budget: inout Budget) throws(QARepError) -> AlignedBuffer {
        let inC = Int32(inChannels), outC = Int32(classes)
        let size = qk_fc_packed_size(path, inC, outC)
        guard size > 0 else { throw QARepError(.internal, "kernel rejected the shape of the fc layer") }
        try budget.reserve(size)
        let buffer = try AlignedBuffer(count: size)
        weight.withUnsafeBufferPointer { qk_fc_pack(path, inC, outC, $0.baseAddress, buffer.pointer) }
        return buffer
    }

    /// Conv layer i's OIHW weights, unpacked.
    func convWeight(_ i: Int, layer: DerivedConvLayer) -> [Int8] {
        var shape = layer.kernelShape
        var weight = [Int8](repeating: 0, count: layer.outChannels * (layer.inChannels / layer.groups) * 9)
        weight.withUnsafeMutableBufferPointer { qk_conv3x3_unpack(path, &shape, convs[i].pointer, $0.baseAddress) }
        return weight
    }

    /// The fc layer's [classes][inChannels] weights, unpacked.
    func fcWeight(inChannels: Int, classes: Int) -> [Int8] {
        var weight = [Int8](repeating: 0, count: inChannels * classes)
        weight.withUnsafeMutableBufferPointer {
            qk_fc_unpack(path, Int32(inChannels), Int32(classes), fc.pointer, $0.baseAddress)
        }
        return weight
    }

    var networkPointer: UnsafePointer<qk_network> { UnsafePointer(network.pointer.assumingMemoryBound(to: qk_network.self)) }

    private static func buildNetwork(arithmetic: DerivedArithmetic, fcBias: [Int32], classes: Int, convs: [AlignedBuffer],
                                     fc: AlignedBuffer) throws(QARepError) -> (AlignedBuffer, AlignedBuffer, AlignedBuffer) {
        func aligned(_ bytes: Int) -> Int { (bytes + 63) & ~63 }
        var parameterBytes = aligned(classes * 4) * 2
        for layer in arithmetic.layers {
            parameterBytes += aligned(layer.outChannels * 4) * 2 + aligned(layer.padValue.count)
        }
        let parameters = try AlignedBuffer(count: parameterBytes)
        var offset = 0
        func place<T>(_ values: [T]) -> UnsafePointer<T> {
            let destination = (parameters.pointer + offset).bindMemory(to: T.self, capacity: values.count)
            _ = UnsafeMutableBufferPointer(start: destination, count: values.count).initialize(from: values)
            offset += aligned(values.count * MemoryLayout<T>.stride)
            return UnsafePointer(destination)
        }
        let convTable = try AlignedBuffer(count: arithmetic.layers.count * MemoryLayout<qk_network_conv>.stride)
        let table = convTable.pointer.bindMemory(to: qk_network_conv.self, capacity: arithmetic.layers.count)
        for (i, layer) in arithmetic.layers.enumerated() {
            (table + i).initialize(to: qk_network_conv(shape: layer.kernelShape, packed: UnsafeRawPointer(convs[i].pointer),
                                                       bias: place(layer.bias), multiplier: place(layer.multiplier),
                                                       pad_value: place(layer.padValue)))
        }
        let fcBiasPointer = place(fcBias), fcMultiplierPointer = place(arithmetic.fcMultiplier)
        let network = try AlignedBuffer(count: MemoryLayout<qk_network>.stride)
        network.pointer.bindMemory(to: qk_network.self, capacity: 1).initialize(to: qk_network(
            conv_count: Int32(arithmetic.layers.count), convs: UnsafePointer(table),
            pool_multiplier: arithmetic.poolMultiplier, classes: Int32(classes),
            fc_packed: UnsafeRawPointer(fc.pointer), fc_bias: fcBiasPointer, fc_multiplier: fcMultiplierPointer,
            depth_first_bytes: 0))
        return (network, convTable, parameters)
    }
}

extension DerivedConvLayer {
    var kernelShape: qk_conv_shape {
        qk_conv_shape(in_h: Int32(inHeight), in_w: Int32(inWidth), in_c: Int32(inChannels), out_c: Int32(outChannels),
                      stride: Int32(stride), groups: Int32(groups))
    }
}

/// A validated model, immutable and safe to share across threads.
///
/// It holds its weights only packed, for the path a session gets by default (Kernel.auto, which honors
/// QAREP_KERNEL), packed layer by layer while the model is validated: loading never holds more than that
/// copy plus one layer's OIHW weights. A session forcing another path packs it from these by unpacking,
/// and `description` rebuilds the OIHW weights the same way.
public final class Model: Sendable {
    /// The description without its weights (they live in `primary`).
    let skeleton: QuantizedModelDescription
    let arithmetic: DerivedArithmetic
    let primary: PackedWeights
    private let packedByPath = Mutex<[Int: PackedWeights]>([:])

    private struct Parts {
        var skeleton: QuantizedModelDescription
        var arithmetic: DerivedArithmetic
        var primary: PackedWeights
    }

    private init(parts: Parts) {
        skeleton = parts.skeleton
        arithmetic = parts.arithmetic
        primary = parts.primary
    }

    /// Validates the model, packing each layer as soon as it has passed (weights fetched layer by layer).
    private static func build(skeleton: QuantizedModelDescription, convWeight: (Int) throws(QARepError) -> [Int8],
                              fcWeight: () throws(QARepError) -> [Int8]) throws(QARepError) -> Parts {
        // An unusable QAREP_KERNEL is reported by the session that asks for it; the model packs for the best path.
        let path = (try? Kernel.auto.resolved())?.path ?? qk_best_path()
        var convs: [AlignedBuffer] = []
        var fc: AlignedBuffer? = nil
        var budget = PackedWeights.Budget()
        let arithmetic = try skeleton.validate(convWeight: convWeight, fcWeight: fcWeight) { (weights) throws(QARepError) in
            switch weights {
            case let .conv(_, layer, weight):
                convs.append(try PackedWeights.packConv(path: path, layer: layer, weight: weight, budget: &budget))
            case let .fullyConnected(inChannels, classes, weight):
                fc = try PackedWeights.packFC(path: path, inChannels: inChannels, classes: classes, weight: weight,
                                              budget: &budget)
            }
        }
        guard let fc, convs.count == arithmetic.layers.count else {
            throw QARepError(.internal, "validation did not hand over every layer's weights")
        }
        let primary = try PackedWeights(path: path, arithmetic: arithmetic, fcBias: skeleton.fcBias, convs: convs, fc: fc)
        return Parts(skeleton: skeleton, arithmetic: arithmetic, primary: primary)
    }

    /// Reads the file's tensors one at a time, each straight from the source.
    private static func load(source: some ByteSource) throws(QARepError) -> Parts {
        let contents = try ModelFileContents(source: source)
        return try build(skeleton: contents.skeleton, convWeight: { (i) throws(QARepError) -> [Int8] in
            try source.int8Values(contents.convWeights[i])
        }, fcWeight: { () throws(QARepError) -> [Int8] in try source.int8Values(contents.fcWeight) })
    }

    public convenience init(description: QuantizedModelDescription) throws(QARepError) {
        self.init(parts: try Model.build(skeleton: description.withoutWeights, convWeight: { description.convs[$0].weight },
                                         fcWeight: { description.fcWeight }))
    }

    public convenience init(bytes: [UInt8]) throws(QARepError) {
        self.init(parts: try bytes.withUnsafeBufferPointer { (raw) throws(QARepError) -> Parts in
            try Model.load(source: MemoryByteSource(bytes: UnsafeRawBufferPointer(raw)))
        })
    }

    /// Loads from the caller's buffer without copying it; the buffer is not used after the call.
    convenience init(unsafeBytes bytes: UnsafeRawBufferPointer) throws(QARepError) {
        self.init(parts: try Model.load(source: MemoryByteSource(bytes: bytes)))
    }

    public convenience init(contentsOfFile path: String) throws(QARepError) {
        self.init(parts: try Model.load(source: FileByteSource(path: path)))
    }

    /// The description the model was made from, weights included, rebuilt from the packed weights (which
    /// costs one unpacked copy of them: read the other properties when they suffice).
    public var description: QuantizedModelDescription {
        var full = skeleton
        for (i, layer) in arithmetic.layers.enumerated() { full.convs[i].weight = primary.convWeight(i, layer: layer) }
        full.fcWeight = primary.fcWeight(inChannels: arithmetic.fcInChannels, classes: numClasses)
        return full
    }

    public var preprocessing: Preprocessing { skeleton.preprocessing }
    public var inputHeight: Int { skeleton.inputHeight }
    public var inputWidth: Int { skeleton.inputWidth }
    public var inputChannels: Int { 3 }
    public var numClasses: Int { skeleton.numClasses }
    public var labels: [String] { skeleton.labels }
    public var numConvLayers: Int { skeleton.convs.count }
    /// Format version of the file this model was loaded from (models built in memory report the current one).
    public var formatVersion: UInt32 { ModelFormat.version }
    public var macsPerImage: Double { arithmetic.macsPerImage }
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

    /// Resizes and center-crops an RGB image to this model's input, as its metadata says.
    public func preprocess(rgb: UnsafeBufferPointer<UInt8>, width: Int, height: Int, rowStride: Int) throws(QARepError) -> [UInt8] {
        try resizeAndCrop(rgb: rgb, width: width, height: height, rowStride: rowStride, outputWidth: inputWidth,
                          outputHeight: inputHeight, cropRatio: skeleton.preprocessing.cropRatio)
    }

    func packedWeights(for kernel: Kernel) throws(QARepError) -> PackedWeights {
        guard let path = kernel.path else { throw QARepError(.internal, "packing requested for an unresolved kernel") }
        if path == primary.path { return primary }
        let key = Int(path.rawValue)
        // Packing under the lock: two sessions racing for the same path must not both pay for (and hold) it.
        return try packedByPath.withLock { (cache) throws(QARepError) -> PackedWeights in
            if let packed = cache[key] { return packed }
            let packed = try PackedWeights(path: path, arithmetic: arithmetic, fcBias: skeleton.fcBias, repacking: primary)
            cache[key] = packed
            return packed
        }
    }
}

public struct Prediction: Sendable, Equatable {
    public var classIndex: Int
    public var label: String
    /// Softmax over all classes.
    public var probability: Float
}

/// A workspace for running one model on one thread at a time.
public final class Session {
    public let model: Model
    /// The kernel path this session really runs (never .auto).
    public let kernel: Kernel
    public let threads: Int
    public let maxBatch: Int
    static let maxBatchLimit = 65536

    private let packed: PackedWeights
    /// The images of a run; in a buffer of their own (not ping) so that the kernels may run a batch's
    /// early layers image by image.
    private let input: AlignedBuffer
    private let ping: AlignedBuffer
    private let pong: AlignedBuffer
    private let pooled: AlignedBuffer
    private var logits: [Float]
    /// Images in the last successful run; nil before one (and after a failed run).
    public private(set) var lastBatch: Int? = nil

    public init(model: Model, threads: Int = 0, maxBatch: Int = 1, kernel: Kernel = .auto) throws(QARepError) {
        guard threads >= 0, threads <= 4096 else { throw .invalidArgument("threads is \(threads), expected 0...4096 (0: all online CPUs)") }
        guard maxBatch >= 1, maxBatch <= Session.maxBatchLimit else {
            throw .invalidArgument("maxBatch is \(maxBatch), expected 1...\(Session.maxBatchLimit)")
        }
        self.kernel = try kernel.resolved()
        self.model = model
        self.threads = threads == 0 ? Platform.onlineCPUs() : threads
        self.maxBatch = maxBatch
        // Slack per image: the kernels may give each thread its own images and part of ping and pong.
        let activationBytes = maxBatch * (model.arithmetic.maxActivationBytes + kernelExtraBytes)  // <= 2^16 * 2^29
        let workspace = 2 * activationBytes + maxBatch * (model.imageBytes + model.arithmetic.fcInChannels)
        if let memory = Platform.physicalMemoryBytes(), workspace > memory {
            throw QARepError(.outOfMemory, "a workspace of \(workspace) bytes for maxBatch \(maxBatch) exceeds this machine's memory")
        }
        input = try AlignedBuffer(count: maxBatch * model.imageBytes + kernelExtraBytes)
        ping = try AlignedBuffer(count: activationBytes + kernelExtraBytes)
        pong = try AlignedBuffer(count: activationBytes + kernelExtraBytes)
        pooled = try AlignedBuffer(count: maxBatch * model.arithmetic.fcInChannels + kernelExtraBytes)
        // The kernels may read the slack; keep it defined.
        input.pointer.initializeMemory(as: UInt8.self, repeating: 0, count: input.count)
        ping.pointer.initializeMemory(as: UInt8.self, repeating: 0, count: ping.count)
        pong.pointer.initializeMemory(as: UInt8.self, repeating: 0, count: pong.count)
        pooled.pointer.initializeMemory(as: UInt8.self, repeating: 0, count: pooled.count)
        packed = try model.packedWeights(for: self.kernel)
        logits = [Float](repeating: 0, count: maxBatch * model.numClasses)
    }

    private func checkBatch(_ batch: Int) throws(QARepError) {
        guard batch >= 1, batch <= maxBatch else { throw .invalidArgument("batch is \(batch), expected 1...\(maxBatch)") }
    }

    /// Runs uint8 RGB HWC images stored one after another; returns logits [batch][numClasses].
    public func run(images: UnsafeBufferPointer<UInt8>, batch: Int) throws(QARepError) -> [Float] {
        try runInternal(images: images, batch: batch, observe: nil)
        return Array(logits[0..<(batch * model.numClasses)])
    }

    public func run(images: [UInt8], batch: Int) throws(QARepError) -> [Float] {
        try images.withUnsafeBufferPointer { (buffer) throws(QARepError) -> [Float] in try run(images: buffer, batch: batch) }
    }

    /// Runs normalized NCHW float input (x = (pixel / 255 - mean) / std), converted back to pixels first.
    public func run(normalized input: UnsafeBufferPointer<Float>, batch: Int) throws(QARepError) -> [Float] {
        try checkBatch(batch)
        let pixels = try pixelsFromNormalized(input, batch: batch)
        return try run(images: pixels, batch: batch)
    }

    public func run(normalized input: [Float], batch: Int) throws(QARepError) -> [Float] {
        try input.withUnsafeBufferPointer { (buffer) throws(QARepError) -> [Float] in try run(normalized: buffer, batch: batch) }
    }

    /// Like run(images:batch:), also returning the wall time of each step of `model.layers`, in seconds.
    /// The steps are timed inside the kernels' single parallel region, after the barrier that ends each.
    public func runProfiled(images: UnsafeBufferPointer<UInt8>, batch: Int) throws(QARepError) -> (logits: [Float], layerSeconds: [Double]) {
        var clock = [Double](repeating: 0, count: model.numConvLayers + 3)
        try clock.withUnsafeMutableBufferPointer { (buffer) throws(QARepError) in
            try runInternal(images: images, batch: batch, stepClock: buffer.baseAddress, observe: nil)
        }
        let seconds = (1..<clock.count).map { clock[$0] - clock[$0 - 1] }
        return (Array(logits[0..<(batch * model.numClasses)]), seconds)
    }

    public func classify(images: [UInt8], batch: Int, topK: Int) throws(QARepError) -> [[Prediction]] {
        _ = try run(images: images, batch: batch)
        return try (0..<batch).map { (i) throws(QARepError) -> [Prediction] in try self.topK(imageIndex: i, k: topK) }
    }

    /// Logits of the last run, [lastBatch][numClasses].
    public func lastLogits() throws(QARepError) -> [Float] {
        guard let batch = lastBatch else { throw QARepError(.noResult, "no successful run yet") }
        return Array(logits[0..<(batch * model.numClasses)])
    }

    /// The k most probable classes of one image of the last run, most probable first, ties lower index first.
    public func topK(imageIndex: Int, k: Int) throws(QARepError) -> [Prediction] {
        guard let batch = lastBatch else { throw QARepError(.noResult, "no successful run yet") }
        guard imageIndex >= 0, imageIndex < batch else {
            throw .invalidArgument("image index \(imageIndex) outside the last batch of \(batch)")
        }
        guard k >= 1 else { throw .invalidArgument("k is \(k), expected >= 1") }
        let classes = model.numClasses
        let row = Array(logits[(imageIndex * classes)..<((imageIndex + 1) * classes)])
        return topKPredictions(logits: row, k: k, labels: model.labels)
    }

    /// Runs the batch; `observe` sees each step's output (conv layers, pool) in order, then is called once
    /// more after the fc layer with an empty buffer.
    /// With `stepClock` (model.numConvLayers + 3 values) the kernels record when each step ended.
    func runInternal(images: UnsafeBufferPointer<UInt8>, batch: Int, stepClock: UnsafeMutablePointer<Double>? = nil,
                     observe: ((Int, UnsafeBufferPointer<UInt8>) -> Void)?) throws(QARepError) {
        try checkBatch(batch)
        let imageBytes = model.imageBytes
        guard images.count == batch * imageBytes else {
            throw QARepError(.bufferSize, "images hold \(images.count) bytes, expected batch \(batch) x \(imageBytes)")
        }
        guard let source = images.baseAddress else { throw .invalidArgument("images buffer is empty") }
        lastBatch = nil
        let arithmetic = model.arithmetic
        let path = kernel.path ?? QK_PATH_SCALAR
        let threads = Int32(self.threads)
        if observe == nil {
            input.pointer.copyMemory(from: source, byteCount: batch * imageBytes)
            let status = logits.withUnsafeMutableBufferPointer { out in
                qk_network_run_timed(path, packed.networkPointer, Int32(batch), input.bytes, ping.bytes, pong.bytes,
                                     pooled.bytes, out.baseAddress, threads, stepClock)
            }
            guard status == 0 else { throw QARepError(.internal, "the kernels rejected the network") }
            lastBatch = batch
            return
        }
        // Step by step, so that `observe` sees every activation (tests).
        ping.pointer.copyMemory(from: source, byteCount: batch * imageBytes)
        var layerInput = ping, layerOutput = pong
        for (i, layer) in arithmetic.layers.enumerated() {
            var shape = layer.kernelShape
            layer.bias.withUnsafeBufferPointer { bias in
                layer.multiplier.withUnsafeBufferPointer { multiplier in
                    layer.padValue.withUnsafeBufferPointer { pad in
                        qk_conv3x3_u8(path, &shape, Int32(batch), packed.convs[i].pointer, bias.baseAddress,
                                      multiplier.baseAddress, pad.baseAddress, layerInput.bytes, layerOutput.bytes, threads)
                    }
                }
            }
            observe?(i, UnsafeBufferPointer(start: layerOutput.bytes, count: batch * layer.outputBytes))
            swap(&layerInput, &layerOutput)
        }
        let channels = arithmetic.fcInChannels
        qk_global_avgpool_u8(path, Int32(batch), Int32(arithmetic.lastPixels), Int32(channels), layerInput.bytes,
                             arithmetic.poolMultiplier, pooled.bytes, threads)
        observe?(arithmetic.layers.count, UnsafeBufferPointer(start: pooled.bytes, count: batch * channels))
        model.skeleton.fcBias.withUnsafeBufferPointer { bias in
            arithmetic.fcMultiplier.withUnsafeBufferPointer { multiplier in
                logits.withUnsafeMutableBufferPointer { out in
                    qk_fc_u8(path, Int32(batch), Int32(channels), Int32(model.numClasses), packed.fc.pointer,
                             bias.baseAddress, multiplier.baseAddress, pooled.bytes, out.baseAddress, threads)
                }
            }
        }
        observe?(arithmetic.layers.count + 1, UnsafeBufferPointer(start: nil, count: 0))
        lastBatch = batch
    }

    /// Every intermediate activation of one run (conv outputs, then the pooled vector), for tests.
    func runCapturingActivations(images: [UInt8], batch: Int) throws(QARepError) -> (activations: [[UInt8]], logits: [Float]) {
        var captured: [[UInt8]] = []
        try images.withUnsafeBufferPointer { (buffer) throws(QARepError) in
            try runInternal(images: buffer, batch: batch) { _, output in
                if output.count > 0 { captured.append(Array(output)) }
            }
        }
        return (captured, Array(logits[0..<(batch * model.numClasses)]))
    }

    private func pixelsFromNormalized(_ input: UnsafeBufferPointer<Float>, batch: Int) throws(QARepError) -> [UInt8] {
        let height = model.inputHeight, width = model.inputWidth, plane = height * width
        guard input.count == batch * 3 * plane else {
            throw QARepError(.bufferSize, "input holds \(input.count) floats, expected batch \(batch) x 3 x \(height) x \(width)")
        }
        let mean = model.preprocessing.mean, std = model.preprocessing.std
        var pixels = [UInt8](repeating: 0, count: batch * plane * 3)
        for n in 0..<batch {
            for c in 0..<3 {
                let planeStart = (n * 3 + c) * plane
                for p in 0..<plane {
                    var t = input[planeStart + p] * std[c]
                    t = t + mean[c]
                    t = t * 255
                    // Written so that NaN clamps to 0 like C's fmaxf.
                    if !(t > 0) { t = 0 }
                    if t > 255 { t = 255 }
                    pixels[(n * plane + p) * 3 + c] = UInt8(t.rounded(.toNearestOrEven))
                }
            }
        }
        return pixels
    }
}

/// Softmax (max subtracted first, so large logits cannot overflow) and the k best classes.
func topKPredictions(logits: [Float], k: Int, labels: [String]) -> [Prediction] {
    guard let maxLogit = logits.max() else { return [] }
    var exps = logits.map { exp(Double($0) - Double(maxLogit)) }
    let sum = exps.reduce(0, +)
    for i in exps.indices { exps[i] /= sum }
    let order = logits.indices.sorted { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
    return order.prefix(k).map { Prediction(classIndex: $0, label: labels[$0], probability: Float(exps[$0])) }
}

// A network as the kernels hold it (qk_network): weights packed for one path, owned by the C side, which
// checks every argument and reports a status. Immutable once complete.
import CQARepKernels

final class PackedNetwork: @unchecked Sendable {
    // @unchecked: the handle is only mutated while the network is built, before it is shared.
    private let handle: OpaquePointer
    let path: qk_path

    private init(handle: OpaquePointer) {
        self.handle = handle
        path = qk_network_path(handle)
    }

    deinit { qk_network_destroy(handle) }

    /// An empty network for `path` with the model's layer shapes (the kernels check that they chain), Winograd
    /// limited to `use`. The kernels allocate every layer's packed weights at once, so the whole amount is
    /// reserved here.
    convenience init(path: qk_path, use: qk_winograd_use, shapes: [qk_conv_shape], classes: Int, budget: inout Budget) throws(QARepError) {
        var shapes = shapes
        try budget.reserve(qk_network_packed_size(path, use, Int32(shapes.count), &shapes, Int32(classes)))
        var handle: OpaquePointer? = nil
        let status = qk_network_create_limited(path, use, Int32(shapes.count), &shapes, Int32(classes), &handle)
        guard let handle else { throw PackedNetwork.error(status, "creating the network") }
        self.init(handle: handle)
    }

    /// The Winograd use a network of these shapes gets: the one `options` asks for, limited further while its
    /// packed weights would take more than `memoryShare` of the machine's memory (F(4x4,3x3) given up first,
    /// then Winograd), so that a model whose direct weights fit is not turned away for its transformed ones.
    static func winogradUse(path: qk_path, shapes: [qk_conv_shape], classes: Int, options: Model.PackingOptions,
                            memoryShare: Int = 4) -> qk_winograd_use {
        var use = options.contains(.noWinograd) ? QK_WINOGRAD_USE_NONE
            : options.contains(.noWinograd4x4) ? QK_WINOGRAD_USE_NO_4X4 : QK_WINOGRAD_USE_ANY
        guard let memory = Platform.physicalMemoryBytes() else { return use }
        var shapes = shapes
        while use != QK_WINOGRAD_USE_NONE,
              qk_network_packed_size(path, use, Int32(shapes.count), &shapes, Int32(classes)) > memory / memoryShare {
            use = use == QK_WINOGRAD_USE_ANY ? QK_WINOGRAD_USE_NO_4X4 : QK_WINOGRAD_USE_NONE
        }
        return use
    }

    /// Bytes of packed weights the network holds.
    var packedBytes: Int { qk_network_packed_bytes(handle) }

    /// How conv layer `index` runs ("direct", "winograd-4x4", ...) and its packed weights' bytes.
    func convLayer(_ index: Int) -> (algorithm: String?, packedBytes: Int) {
        (qk_network_conv_algorithm(handle, Int32(index)).map { String(cString: $0) }, qk_network_conv_packed_bytes(handle, Int32(index)))
    }

    /// Packs conv layer `index` (in place when `weight` is its staging buffer).
    func setConv(_ index: Int, layer: DerivedConvLayer, weight: UnsafeBufferPointer<Int8>) throws(QARepError) {
        let status = qk_network_set_conv(handle, Int32(index), weight.baseAddress, layer.bias, layer.multiplier, layer.padValue)
        try PackedNetwork.check(status, "packing conv layer \(index)")
    }

    /// Packs the fully connected head and sets the pool's multiplier (in place when `weight` is its staging buffer).
    func setHead(poolMultiplier: Float, fcMultiplier: [Float], fcBias: [Int32], weight: UnsafeBufferPointer<Int8>) throws(QARepError) {
        let status = qk_network_set_head(handle, poolMultiplier, weight.baseAddress, fcBias, fcMultiplier)
        try PackedNetwork.check(status, "packing the fc layer")
    }

    /// Where conv layer `index`'s `count` OIHW weights can be read so that `setConv` packs them where they lie
    /// (no buffer of their own during a load); nil when that layer cannot be packed in place.
    func convStaging(_ index: Int, count: Int) -> UnsafeMutableBufferPointer<Int8>? {
        guard let start = qk_network_conv_staging(handle, Int32(index)) else { return nil }
        return UnsafeMutableBufferPointer(start: start, count: count)
    }

    /// The same for the head's `count` weights and `setHead`.
    func fcStaging(count: Int) -> UnsafeMutableBufferPointer<Int8>? {
        guard let start = qk_network_fc_staging(handle) else { return nil }
        return UnsafeMutableBufferPointer(start: start, count: count)
    }

    /// The same network packed for another path (one layer unpacked at a time).
    func repacked(for path: qk_path, arithmetic: DerivedArithmetic, classes: Int) throws(QARepError) -> PackedNetwork {
        var budget = Budget()
        try budget.reserve(qk_network_packed_bytes(handle))
        var shapes = arithmetic.layers.map { $0.kernelShape }
        try budget.reserve(qk_network_packed_size(path, qk_network_winograd_use(handle), Int32(shapes.count), &shapes, Int32(classes)))
        var copy: OpaquePointer? = nil
        let status = qk_network_repack(handle, path, &copy)
        guard let copy else { throw PackedNetwork.error(status, "repacking the network") }
        return PackedNetwork(handle: copy)
    }

    /// Conv layer i's OIHW weights, unpacked.
    func convWeight(_ index: Int, layer: DerivedConvLayer) throws(QARepError) -> [Int8] {
        var weight = [Int8](repeating: 0, count: layer.outChannels * (layer.inChannels / layer.groups) * 9)
        let status = weight.withUnsafeMutableBufferPointer { qk_network_conv_weights(handle, Int32(index), $0.baseAddress) }
        try PackedNetwork.check(status, "unpacking conv layer \(index)")
        return weight
    }

    /// The fc layer's [classes][inChannels] weights, unpacked.
    func fcWeight(inChannels: Int, classes: Int) throws(QARepError) -> [Int8] {
        var weight = [Int8](repeating: 0, count: inChannels * classes)
        let status = weight.withUnsafeMutableBufferPointer { qk_network_fc_weights(handle, $0.baseAddress) }
        try PackedNetwork.check(status, "unpacking the fc layer")
        return weight
    }

    func scratchSizes(maxBatch: Int) throws(QARepError) -> qk_network_scratch {
        var sizes = qk_network_scratch()
        try PackedNetwork.check(qk_network_scratch_sizes(handle, Int32(maxBatch), &sizes), "sizing the workspace")
        return sizes
    }

    /// Runs `batch` images; the buffers are at least scratchSizes(batch) large, threadScratch `threads` times
    /// its `thread` bytes (nil: the kernels allocate it for the run).
    func run(batch: Int, input: UnsafePointer<UInt8>, ping: UnsafeMutablePointer<UInt8>, pong: UnsafeMutablePointer<UInt8>,
             pooled: UnsafeMutablePointer<UInt8>, logits: UnsafeMutablePointer<Float>,
             threadScratch: UnsafeMutablePointer<UInt8>?, threads: Int,
             stepClock: UnsafeMutablePointer<Double>?, history: UnsafeMutablePointer<qk_team_history>? = nil) throws(QARepError) {
        let status = qk_network_run_paced(handle, Int32(batch), input, ping, pong, pooled, logits, threadScratch, Int32(threads),
                                          stepClock, history)
        try PackedNetwork.check(status, "running the network")
    }

    /// For tests: how many bytes of leading layers' batch output make them run image by image.
    func setDepthFirstBytes(_ bytes: Int64) throws(QARepError) {
        try PackedNetwork.check(qk_network_set_depth_first_bytes(handle, bytes), "setting depth-first bytes")
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

    private static func error(_ status: qk_status, _ doing: String) -> QARepError {
        switch status {
        case QK_ERROR_OUT_OF_MEMORY: return QARepError(.outOfMemory, "out of memory \(doing)")
        case QK_ERROR_UNSUPPORTED_PATH: return QARepError(.unsupportedKernel, "the kernel path cannot run on this CPU (\(doing))")
        default: return QARepError(.internal, "the kernels refused \(doing) (status \(status.rawValue))")
        }
    }

    private static func check(_ status: qk_status, _ doing: String) throws(QARepError) {
        guard status == QK_OK else { throw error(status, doing) }
    }
}

extension DerivedConvLayer {
    var kernelShape: qk_conv_shape {
        qk_conv_shape(in_h: Int32(inHeight), in_w: Int32(inWidth), in_c: Int32(inChannels), out_c: Int32(outChannels),
                      stride: Int32(stride), groups: Int32(groups))
    }
}

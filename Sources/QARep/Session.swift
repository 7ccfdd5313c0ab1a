// A session: the workspace for running one model on one thread at a time. Buffer sizes come from the
// kernels (qk_network_scratch_sizes), which own the contract of what a run reads and writes.
import CQARepKernels

/// A workspace for running one model on one thread at a time.
public final class Session {
    public let model: Model
    /// The kernel path this session really runs (never .auto).
    public let kernel: Kernel
    public let threads: Int
    public let maxBatch: Int
    static let maxBatchLimit = Int(QK_MAX_BATCH)

    let network: PackedNetwork
    /// The images of a run, in a buffer of their own, so that the kernels may run a batch's early layers
    /// image by image.
    private let input: AlignedBuffer
    private let ping: AlignedBuffer
    private let pong: AlignedBuffer
    private let pooled: AlignedBuffer
    private let logits: AlignedBuffer
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
        network = try model.network(for: self.kernel)
        let sizes = try network.scratchSizes(maxBatch: maxBatch)
        let workspace = sizes.input + sizes.ping + sizes.pong + sizes.pooled + sizes.logits
        if let memory = Platform.physicalMemoryBytes(), workspace > memory {
            throw QARepError(.outOfMemory, "a workspace of \(workspace) bytes for maxBatch \(maxBatch) exceeds this machine's memory")
        }
        // Zeroed: the kernels may read the slack, which must be defined.
        input = try AlignedBuffer(zeroedCount: sizes.input)
        ping = try AlignedBuffer(zeroedCount: sizes.ping)
        pong = try AlignedBuffer(zeroedCount: sizes.pong)
        pooled = try AlignedBuffer(zeroedCount: sizes.pooled)
        logits = try AlignedBuffer(zeroedCount: sizes.logits)
    }

    private func checkBatch(_ batch: Int) throws(QARepError) {
        guard batch >= 1, batch <= maxBatch else { throw .invalidArgument("batch is \(batch), expected 1...\(maxBatch)") }
    }

    /// Runs uint8 RGB HWC images stored one after another; returns logits [batch][numClasses].
    public func run(images: UnsafeBufferPointer<UInt8>, batch: Int) throws(QARepError) -> [Float] {
        try run(images: images, batch: batch, stepClock: nil)
        return logitsOfLastRun(batch: batch)
    }

    public func run(images: [UInt8], batch: Int) throws(QARepError) -> [Float] {
        try images.withUnsafeBufferPointer { (buffer) throws(QARepError) -> [Float] in try run(images: buffer, batch: batch) }
    }

    /// Runs normalized NCHW float input (x = (pixel / 255 - mean) / std), converted back to pixels first.
    public func run(normalized input: UnsafeBufferPointer<Float>, batch: Int) throws(QARepError) -> [Float] {
        try checkBatch(batch)
        let height = model.inputHeight, width = model.inputWidth
        guard input.count == batch * 3 * height * width else {
            throw QARepError(.bufferSize, "input holds \(input.count) floats, expected batch \(batch) x 3 x \(height) x \(width)")
        }
        let pixels = pixelsFromNormalized(input, images: batch, height: height, width: width,
                                          preprocessing: model.preprocessing)
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
            try run(images: images, batch: batch, stepClock: buffer.baseAddress)
        }
        let seconds = (1..<clock.count).map { clock[$0] - clock[$0 - 1] }
        return (logitsOfLastRun(batch: batch), seconds)
    }

    public func classify(images: [UInt8], batch: Int, topK: Int) throws(QARepError) -> [[Prediction]] {
        _ = try run(images: images, batch: batch)
        return try (0..<batch).map { (i) throws(QARepError) -> [Prediction] in try self.topK(imageIndex: i, k: topK) }
    }

    /// Logits of the last run, [lastBatch][numClasses].
    public func lastLogits() throws(QARepError) -> [Float] {
        guard let batch = lastBatch else { throw QARepError(.noResult, "no successful run yet") }
        return logitsOfLastRun(batch: batch)
    }

    /// The k most probable classes of one image of the last run, most probable first, ties lower index first.
    public func topK(imageIndex: Int, k: Int) throws(QARepError) -> [Prediction] {
        guard let batch = lastBatch else { throw QARepError(.noResult, "no successful run yet") }
        guard imageIndex >= 0, imageIndex < batch else {
            throw .invalidArgument("image index \(imageIndex) outside the last batch of \(batch)")
        }
        guard k >= 1 else { throw .invalidArgument("k is \(k), expected >= 1") }
        let classes = model.numClasses
        let row = logitsOfLastRun(batch: batch)[(imageIndex * classes)..<((imageIndex + 1) * classes)]
        return topKPredictions(logits: row, k: k, labels: model.labels)
    }

    /// Copies the logits of the last run into `out` (batch x numClasses floats), without an array.
    func copyLogits(batch: Int, into out: UnsafeMutableBufferPointer<Float>) {
        let count = min(out.count, batch * model.numClasses)
        out.baseAddress?.update(from: logits.pointer.assumingMemoryBound(to: Float.self), count: count)
    }

    /// Runs the batch; with `stepClock` (model.numConvLayers + 3 values) the kernels record when each step ended.
    func run(images: UnsafeBufferPointer<UInt8>, batch: Int, stepClock: UnsafeMutablePointer<Double>?) throws(QARepError) {
        try checkBatch(batch)
        let imageBytes = model.imageBytes
        guard images.count == batch * imageBytes else {
            throw QARepError(.bufferSize, "images hold \(images.count) bytes, expected batch \(batch) x \(imageBytes)")
        }
        guard let source = images.baseAddress else { throw .invalidArgument("images buffer is empty") }
        lastBatch = nil
        input.pointer.copyMemory(from: source, byteCount: batch * imageBytes)
        try network.run(batch: batch, input: input.bytes, ping: ping.bytes, pong: pong.bytes, pooled: pooled.bytes,
                        logits: logits.pointer.assumingMemoryBound(to: Float.self), threads: threads, stepClock: stepClock)
        lastBatch = batch
    }

    private func logitsOfLastRun(batch: Int) -> [Float] {
        Array(UnsafeBufferPointer(start: logits.pointer.assumingMemoryBound(to: Float.self), count: batch * model.numClasses))
    }
}

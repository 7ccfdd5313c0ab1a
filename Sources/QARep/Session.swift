// A session: the workspace for running one model on one thread at a time. Buffer sizes come from the
// kernels (qk_network_scratch_sizes), which own the contract of what a run reads and writes.
import CQARepKernels
import Synchronization

/// A workspace for running one ``Model``: its activation buffers and the logits of its last run.
///
/// A session serves one thread at a time; make one per thread (they can share one model). A run that
/// starts while another is still going on the same session throws `invalidArgument` instead of mixing
/// their buffers.
///
/// ```swift
/// let session = try Session(model: model, threads: 2, maxBatch: 8)
/// let top5 = try session.classify(images: [image1, image2], topK: 5)
/// print(top5[0][0].label, top5[0][0].probability)
/// ```
public final class Session {
    /// The model this session runs; the session keeps it alive.
    public let model: Model
    /// The kernel path this session really runs (never `.auto`).
    public let kernel: Kernel
    /// OpenMP threads a run uses.
    public let threads: Int
    /// The largest batch a run may take.
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
    /// The kernels' scratch, `threads` parts (the int16 paths' widened input rows and Winograd's transformed
    /// inputs; may be empty).
    private let threadScratch: AlignedBuffer
    private let running = Atomic<Bool>(false)
    /// How the team kept pace in recent runs: after a member was late (another process on its core), runs
    /// of fewer images than threads use one thread or rescue mode for a while, and the history holds rescue
    /// mode's threads and buffers (Sources/CQARepKernels/network/team-pace.c, team-rescue.h, team-crew.h).
    private var history = qk_team_history()
    /// Images in the last successful run; nil before one (and after a failed run).
    public private(set) var lastBatch: Int? = nil
    /// Bytes of memory the session holds for its runs (input, activations, pooled features, logits, the
    /// kernels' scratch of each thread), all allocated when it is created: a run allocates nothing but a few bytes of work counters per thread.
    /// The packed weights belong to the model and are not counted; nor are rescue mode's threads and
    /// buffers, made if load makes a team with more threads than images late, and grown with the batch (see
    /// `qarep_session_workspace_bytes`).
    public let workspaceBytes: Int

    /// A workspace for `model`.
    /// - Parameters:
    ///   - model: the model to run; the session keeps it alive.
    ///   - threads: OpenMP threads per run; 0 means all online CPUs. A batch of at least this many images
    ///     runs one image per thread at a time; a smaller one runs layer by layer with all threads, or with one
    ///     for a while after a thread was kept off its core long enough to hold the others up. Results are
    ///     the same bytes either way.
    ///   - maxBatch: the largest batch a run may take (1...65536); it sizes the buffers.
    ///   - kernel: the CPU path; `.auto` (the default) picks QAREP_KERNEL if set, else the fastest one.
    ///   - maxWorkspaceBytes: the most ``workspaceBytes`` may be; a model or `maxBatch` that needs more throws
    ///     `outOfMemory` here, before anything is allocated. 0 (the default) means no limit.
    public init(model: Model, threads: Int = 0, maxBatch: Int = 1, kernel: Kernel = .auto,
                maxWorkspaceBytes: Int = 0) throws(QARepError) {
        guard threads >= 0, threads <= 4096 else { throw .invalidArgument("threads is \(threads), expected 0...4096 (0: all online CPUs)") }
        guard maxWorkspaceBytes >= 0 else { throw .invalidArgument("maxWorkspaceBytes is \(maxWorkspaceBytes), expected >= 0 (0: no limit)") }
        guard maxBatch >= 1, maxBatch <= Session.maxBatchLimit else {
            throw .invalidArgument("maxBatch is \(maxBatch), expected 1...\(Session.maxBatchLimit)")
        }
        self.kernel = try kernel.resolved()
        self.model = model
        self.threads = threads == 0 ? Platform.onlineCPUs() : threads
        self.maxBatch = maxBatch
        network = try model.network(for: self.kernel)
        let sizes = try network.scratchSizes(maxBatch: maxBatch)
        let (scratchBytes, overflow) = sizes.thread.multipliedReportingOverflow(by: self.threads)
        guard !overflow else { throw QARepError(.outOfMemory, "kernel scratch of \(sizes.thread) bytes for each of \(self.threads) threads overflows") }
        let workspace = sizes.input + sizes.ping + sizes.pong + sizes.pooled + sizes.logits + scratchBytes
        if maxWorkspaceBytes > 0, workspace > maxWorkspaceBytes {
            throw QARepError(.outOfMemory, "a workspace of \(workspace) bytes for maxBatch \(maxBatch) exceeds the limit of \(maxWorkspaceBytes) bytes")
        }
        workspaceBytes = workspace
        if let memory = Platform.physicalMemoryBytes(), workspace > memory {
            throw QARepError(.outOfMemory, "a workspace of \(workspace) bytes for maxBatch \(maxBatch) exceeds this machine's memory")
        }
        // Zeroed: the kernels may read the slack, which must be defined.
        input = try AlignedBuffer(zeroedCount: sizes.input)
        ping = try AlignedBuffer(zeroedCount: sizes.ping)
        pong = try AlignedBuffer(zeroedCount: sizes.pong)
        pooled = try AlignedBuffer(zeroedCount: sizes.pooled)
        logits = try AlignedBuffer(zeroedCount: sizes.logits)
        threadScratch = try AlignedBuffer(count: scratchBytes)
    }

    deinit {
        qk_team_history_release(&history)
    }

    /// The model's ``Model/layers`` with how this session's kernels run each conv layer (`algorithm`) and
    /// the bytes of its packed weights.
    public var layers: [LayerInfo] {
        var list = model.layers
        for index in list.indices where list[index].kind == .conv3x3 {
            let layer = network.convLayer(index)
            list[index].algorithm = layer.algorithm
            list[index].packedWeightBytes = layer.packedBytes
        }
        return list
    }

    private func checkBatch(_ batch: Int) throws(QARepError) {
        guard batch >= 1, batch <= maxBatch else { throw .invalidArgument("batch is \(batch), expected 1...\(maxBatch)") }
    }

    // MARK: Running

    /// Runs `batch` uint8 RGB images, each `model.inputHeight x model.inputWidth x 3` (HWC, as
    /// ``Model/preprocess(rgb:width:height:rowStride:)-([UInt8],_,_,_)`` makes them), stored one after another.
    /// - Returns: the logits, `[batch][model.numClasses]`.
    public func run(images: [UInt8], batch: Int) throws(QARepError) -> [Float] {
        try images.withUnsafeBufferPointer { (buffer) throws(QARepError) -> [Float] in try run(unsafeImages: buffer, batch: batch) }
    }

    /// The same for images in any contiguous memory, without a copy.
    public func run(images: Span<UInt8>, batch: Int) throws(QARepError) -> [Float] {
        try images.withUnsafeBufferPointer { (buffer) throws(QARepError) -> [Float] in try run(unsafeImages: buffer, batch: batch) }
    }

    /// Runs one image per element, each `model.imageBytes` long; the batch is `images.count`.
    public func run(images: [[UInt8]]) throws(QARepError) -> [Float] {
        try run(images: try concatenated(images), batch: images.count)
    }

    /// The same from a raw buffer, for callers that already hold one.
    public func run(unsafeImages images: UnsafeBufferPointer<UInt8>, batch: Int) throws(QARepError) -> [Float] {
        try run(images: images, batch: batch, stepClock: nil)
        return logitsOfLastRun(batch: batch)
    }

    /// Runs normalized NCHW float input, `[batch][3][height][width]` with x = (pixel / 255 - mean) / std,
    /// converted back to pixels first (docs/model-format.md).
    public func run(normalized input: [Float], batch: Int) throws(QARepError) -> [Float] {
        try input.withUnsafeBufferPointer { (buffer) throws(QARepError) -> [Float] in try run(unsafeNormalized: buffer, batch: batch) }
    }

    /// The same for floats in any contiguous memory, without a copy.
    public func run(normalized input: Span<Float>, batch: Int) throws(QARepError) -> [Float] {
        try input.withUnsafeBufferPointer { (buffer) throws(QARepError) -> [Float] in try run(unsafeNormalized: buffer, batch: batch) }
    }

    /// The same from a raw buffer.
    public func run(unsafeNormalized input: UnsafeBufferPointer<Float>, batch: Int) throws(QARepError) -> [Float] {
        try checkBatch(batch)
        let height = model.inputHeight, width = model.inputWidth
        guard input.count == batch * 3 * height * width else {
            throw QARepError(.bufferSize, "input holds \(input.count) floats, expected batch \(batch) x 3 x \(height) x \(width)")
        }
        try exclusively { () throws(QARepError) in
            pixelsFromNormalized(input, images: batch, height: height, width: width, preprocessing: model.preprocessing,
                                 into: self.input.bytes)
            try runInputBuffer(batch: batch, stepClock: nil)
        }
        return logitsOfLastRun(batch: batch)
    }

    /// Like ``run(images:batch:)-([UInt8],_)``, also returning the wall time of each step of
    /// `model.layers`, in seconds, timed inside the kernels after the barrier that ends each step.
    public func runProfiled(images: [UInt8], batch: Int) throws(QARepError) -> (logits: [Float], layerSeconds: [Double]) {
        try images.withUnsafeBufferPointer { (buffer) throws(QARepError) in try runProfiled(unsafeImages: buffer, batch: batch) }
    }

    /// The same for images in any contiguous memory.
    public func runProfiled(images: Span<UInt8>, batch: Int) throws(QARepError) -> (logits: [Float], layerSeconds: [Double]) {
        try images.withUnsafeBufferPointer { (buffer) throws(QARepError) in try runProfiled(unsafeImages: buffer, batch: batch) }
    }

    /// The same from a raw buffer.
    public func runProfiled(unsafeImages images: UnsafeBufferPointer<UInt8>, batch: Int) throws(QARepError) -> (logits: [Float], layerSeconds: [Double]) {
        var clock = [Double](repeating: 0, count: model.numConvLayers + 3)
        try clock.withUnsafeMutableBufferPointer { (buffer) throws(QARepError) in
            try run(images: images, batch: batch, stepClock: buffer.baseAddress)
        }
        let seconds = (1..<clock.count).map { clock[$0] - clock[$0 - 1] }
        return (logitsOfLastRun(batch: batch), seconds)
    }

    // MARK: Results

    /// Runs the batch and returns the `topK` most probable classes of each image, most probable first.
    public func classify(images: [UInt8], batch: Int, topK: Int) throws(QARepError) -> [[Prediction]] {
        _ = try run(images: images, batch: batch)
        return try (0..<batch).map { (i) throws(QARepError) -> [Prediction] in try self.topK(imageIndex: i, k: topK) }
    }

    /// The same with one element per image.
    public func classify(images: [[UInt8]], topK: Int) throws(QARepError) -> [[Prediction]] {
        try classify(images: try concatenated(images), batch: images.count, topK: topK)
    }

    /// Logits of the last run, `[lastBatch][model.numClasses]`.
    public func lastLogits() throws(QARepError) -> [Float] {
        guard let batch = lastBatch else { throw QARepError(.noResult, "no successful run yet") }
        return logitsOfLastRun(batch: batch)
    }

    /// The `k` most probable classes of one image of the last run, most probable first, ties lower index
    /// first, with softmax probabilities over all classes.
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

    private func concatenated(_ images: [[UInt8]]) throws(QARepError) -> [UInt8] {
        let imageBytes = model.imageBytes
        var joined: [UInt8] = []
        joined.reserveCapacity(images.count * imageBytes)
        for (i, image) in images.enumerated() {
            guard image.count == imageBytes else {
                throw QARepError(.bufferSize, "image \(i) holds \(image.count) bytes, expected \(model.inputHeight) x \(model.inputWidth) x 3 = \(imageBytes)")
            }
            joined.append(contentsOf: image)
        }
        return joined
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
        try exclusively { () throws(QARepError) in
            input.pointer.copyMemory(from: source, byteCount: batch * imageBytes)
            try runInputBuffer(batch: batch, stepClock: stepClock)
        }
    }

    /// Runs `body` as the session's only run; one that starts meanwhile on another thread is refused.
    private func exclusively(_ body: () throws(QARepError) -> Void) throws(QARepError) {
        guard !running.exchange(true, ordering: .acquiring) else {
            throw .invalidArgument("the session is already running on another thread; use one session per thread")
        }
        defer { running.store(false, ordering: .releasing) }
        lastBatch = nil
        try body()
    }

    /// Runs the `batch` images already in the input buffer (inside `exclusively`).
    private func runInputBuffer(batch: Int, stepClock: UnsafeMutablePointer<Double>?) throws(QARepError) {
        try withUnsafeMutablePointer(to: &history) { (history) throws(QARepError) in
            try network.run(batch: batch, input: input.bytes, ping: ping.bytes, pong: pong.bytes, pooled: pooled.bytes,
                            logits: logits.pointer.assumingMemoryBound(to: Float.self), threadScratch: threadScratch.bytes,
                            threads: threads,
                            stepClock: stepClock, history: history)
        }
        lastBatch = batch
    }

    private func logitsOfLastRun(batch: Int) -> [Float] {
        Array(UnsafeBufferPointer(start: logits.pointer.assumingMemoryBound(to: Float.self), count: batch * model.numClasses))
    }
}

import CQARepKernels
import XCTest

/// A small random network: its conv cases (batch 1), the per-layer data and the fc head.
struct NetworkCase {
    var convs: [ConvCase]
    var data: [ConvData]
    var classes: Int
    var fcWeight: [Int8], fcBias: [Int32], fcMultiplier: [Float]
    var poolMultiplier: Float

    var lastChannels: Int { convs[convs.count - 1].outC }
    var lastPixels: Int { convs[convs.count - 1].outH * convs[convs.count - 1].outW }
    var imageBytes: Int { convs[0].inH * convs[0].inW * convs[0].inC }
    var maxActivationBytes: Int { convs.map { max($0.inH * $0.inW * $0.inC, $0.outH * $0.outW * $0.outC) }.max() ?? 0 }
    /// What each scratch buffer must hold per image: ping the input and the odd layers' outputs, pong the even ones'.
    var largestInPing: Int { stride(from: 1, to: convs.count, by: 2).map { convs[$0].outputCount }.reduce(imageBytes, max) }
    var largestInPong: Int { stride(from: 0, to: convs.count, by: 2).map { convs[$0].outputCount }.reduce(0, max) }

    /// Layers as (out channels, stride, groups) after a 3-channel input of inH x inW.
    static func random(inH: Int, inW: Int, layers: [(Int, Int, Int)], classes: Int, _ rng: inout SeededGenerator) -> NetworkCase {
        var convs: [ConvCase] = []
        var h = inH, w = inW, c = 3
        for (outC, stride, groups) in layers {
            let conv = ConvCase(inH: h, inW: w, inC: c, outC: outC, stride: stride, groups: groups, batch: 1)
            convs.append(conv)
            h = conv.outH
            w = conv.outW
            c = outC
        }
        let data = convs.map { ConvData.random($0, &rng) }
        let fcWeight = rng.weights(classes * c)
        let fcBias = (0..<classes).map { _ in Int32.random(in: -5_000_000...5_000_000, using: &rng) }
        let fcMultiplier = (0..<classes).map { _ in Float.random(in: 1e-6...1e-3, using: &rng) }
        // Average of the last activation, spread over the uint8 range (some channels clamp at 255).
        let poolMultiplier = Float.random(in: 0.8...1.6, using: &rng) / Float(h * w)
        return NetworkCase(convs: convs, data: data, classes: classes, fcWeight: fcWeight, fcBias: fcBias,
                           fcMultiplier: fcMultiplier, poolMultiplier: poolMultiplier)
    }
}

/// Pooled bytes and logit bit patterns of one run.
struct NetworkResult: Equatable {
    var pooled: [UInt8]
    var logits: [UInt32]
}

final class NetworkKernelTests: XCTestCase {
    static let baseSeed: UInt64 = 0x0BE7_2024_0001
    /// How many runs a test with a late member makes for the others to step in while it sleeps.
    static let tries = 5

    /// The oracle: scalar kernels, one call per step, one thread.
    func perLayerScalar(_ net: NetworkCase, images: [UInt8], batch: Int) -> NetworkResult {
        var activation = images
        for (conv, data) in zip(net.convs, net.data) {
            var c = conv
            c.batch = batch
            var shape = c.shape
            let packed = AlignedBytes(byteCount: qk_conv3x3_packed_size(QK_PATH_SCALAR, &shape))
            qk_conv3x3_pack(QK_PATH_SCALAR, &shape, data.weights, packed.pointer)
            var output = [UInt8](repeating: 0, count: c.outputCount + extraBytes)
            qk_conv3x3_u8(QK_PATH_SCALAR, &shape, Int32(batch), packed.pointer, data.bias, data.multiplier, data.pad,
                          activation, &output, 1)
            activation = output
        }
        var pooled = [UInt8](repeating: 0, count: batch * net.lastChannels + extraBytes)
        qk_global_avgpool_u8(QK_PATH_SCALAR, Int32(batch), Int32(net.lastPixels), Int32(net.lastChannels), activation,
                             net.poolMultiplier, &pooled, 1)
        let packedFC = AlignedBytes(byteCount: qk_fc_packed_size(QK_PATH_SCALAR, Int32(net.lastChannels), Int32(net.classes)))
        qk_fc_pack(QK_PATH_SCALAR, Int32(net.lastChannels), Int32(net.classes), net.fcWeight, packedFC.pointer)
        var logits = [Float](repeating: 0, count: batch * net.classes)
        qk_fc_u8(QK_PATH_SCALAR, Int32(batch), Int32(net.lastChannels), Int32(net.classes), packedFC.pointer, net.fcBias,
                 net.fcMultiplier, pooled, &logits, 1)
        return NetworkResult(pooled: Array(pooled.prefix(batch * net.lastChannels)), logits: logits.map(\.bitPattern))
    }

    /// The network built through the kernels' own constructor for one path; `body` runs while it lives.
    /// nil when the kernels refuse it.
    func withNetwork<R>(_ net: NetworkCase, path: qk_path, depthFirstBytes: Int64 = 0,
                        _ body: (OpaquePointer) -> R) -> R? {
        guard let network = makeNetwork(net, path: path) else { return nil }
        defer { qk_network_destroy(network) }
        XCTAssertEqual(qk_network_set_depth_first_bytes(network, depthFirstBytes), QK_OK)
        return body(network)
    }

    func makeNetwork(_ net: NetworkCase, path: qk_path, setHead: Bool = true) -> OpaquePointer? {
        var shapes = net.convs.map(\.shape)
        var network: OpaquePointer? = nil
        guard qk_network_create(path, Int32(shapes.count), &shapes, Int32(net.classes), &network) == QK_OK,
              let network else { return nil }
        for (i, data) in net.data.enumerated() {
            XCTAssertEqual(qk_network_set_conv(network, Int32(i), data.weights, data.bias, data.multiplier, data.pad), QK_OK)
        }
        if setHead {
            XCTAssertEqual(qk_network_set_head(network, net.poolMultiplier, net.fcWeight, net.fcBias, net.fcMultiplier), QK_OK)
        }
        return network
    }

    /// A run that succeeded, wrote within its buffers, and gave the oracle's pooled features and logits.
    func assertSameBytes(_ run: (status: qk_status, result: NetworkResult, fencesIntact: Bool), _ expected: NetworkResult,
                         _ label: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(run.status, QK_OK, label, file: file, line: line)
        XCTAssertTrue(run.fencesIntact, label, file: file, line: line)
        XCTAssertTrue(run.result.pooled == expected.pooled, "\(label): pooled differ", file: file, line: line)
        XCTAssertTrue(run.result.logits == expected.logits, "\(label): logits differ", file: file, line: line)
    }

    /// One qk_network_run with the images in `ping` (as the runtime does) or in a buffer of their own.
    /// Also reports whether every buffer's bytes past its payload survived.
    func runNetwork(_ network: OpaquePointer?, _ net: NetworkCase, path: qk_path, images: [UInt8],
                    batch: Int, threads: Int32, inputInPing: Bool,
                    history: UnsafeMutablePointer<qk_team_history>? = nil) -> (status: qk_status, result: NetworkResult, fencesIntact: Bool) {
        // The contract's scratch size, and how far a run may write into it: to the batch's largest activation,
        // or, when threads run images alone (input not in ping, at least as many images as threads), to the
        // threads' slots of the largest activation plus slack, and to the rest of the images, if any, placed
        // after as many slots as there were images run alone.
        let alone = !inputInPing && threads > 1 && batch >= Int(threads) ? batch - batch % Int(threads) : 0
        func reach(_ largest: Int) -> Int {
            let slot = largest + extraBytes
            return alone == 0 ? batch * largest
                : alone == batch ? Int(threads) * slot - extraBytes : alone * slot + (batch - alone) * largest
        }
        let pingReach = reach(net.largestInPing), pongReach = reach(net.largestInPong)
        let fence: UInt8 = 0x5A
        var ping = [UInt8](repeating: fence, count: batch * (net.largestInPing + extraBytes) + extraBytes)
        var pong = [UInt8](repeating: fence, count: batch * (net.largestInPong + extraBytes) + extraBytes)
        // The kernels' scratch of each thread, then a fence: a run writes its widened rows and Winograd's tiles
        // only within it.
        var sizes = qk_network_scratch()
        _ = qk_network_scratch_sizes(network, Int32(batch), &sizes)
        let scratchReach = Int(threads) * sizes.thread
        var threadScratch = [UInt8](repeating: fence, count: scratchReach + extraBytes)
        var separateInput = images
        if inputInPing { ping.replaceSubrange(0..<images.count - extraBytes, with: images.prefix(images.count - extraBytes)) }
        let pooledCount = batch * net.lastChannels
        var pooled = [UInt8](repeating: fence, count: pooledCount + extraBytes)
        var status = QK_ERROR_INVALID_ARGUMENT
        let logits = withGuardedOutput(UInt32.self, count: batch * net.classes) { output in
            output.withMemoryRebound(to: Float.self, capacity: batch * net.classes) { logits in
                ping.withUnsafeMutableBufferPointer { pingBuffer in
                    pong.withUnsafeMutableBufferPointer { pongBuffer in
                        separateInput.withUnsafeMutableBufferPointer { inputBuffer in
                            let input = inputInPing ? pingBuffer.baseAddress : inputBuffer.baseAddress
                            status = qk_network_run_paced(network, Int32(batch), input, pingBuffer.baseAddress,
                                                          pongBuffer.baseAddress, &pooled, logits, &threadScratch, threads,
                                                          nil, history)
                        }
                    }
                }
            }
        }
        // Only the slack after the largest activation may be read; nothing is written past an output.
        let fencesIntact = logits.guardsIntact && pooled[pooledCount...].allSatisfy { $0 == fence } &&
            pong[pongReach...].allSatisfy { $0 == fence } && ping[pingReach...].allSatisfy { $0 == fence } &&
            threadScratch[scratchReach...].allSatisfy { $0 == fence }
        return (status, NetworkResult(pooled: Array(pooled.prefix(pooledCount)), logits: logits.payload), fencesIntact)
    }

    /// Depth-first budgets: the default (these small networks then run layer by layer), one byte (every
    /// leading layer the buffer rules allow runs image by image), and one between.
    static let depthFirstBudgets: [Int64] = [0, 1, 600]

    func checkNetwork(_ net: NetworkCase, seed: UInt64, maxBatch: Int) -> Set<String> {
        var rng = SeededGenerator(seed: seed &+ 77)
        let allImages = rng.bytes(maxBatch * net.imageBytes)
        var compared = Set<String>()
        for batch in 1...maxBatch {
            let images = withGarbageSlack(Array(allImages.prefix(batch * net.imageBytes)), &rng)
            let expected = perLayerScalar(net, images: images, batch: batch)
            let context = "seed \(seed) batch \(batch) layers \(net.convs)"
            // The data must reach the head with some spread, or equal results prove little.
            XCTAssertGreaterThan(Set(expected.pooled).count, 2, "pooled values degenerate: \(context)")
            for path in allPaths where qk_path_supported(path) != 0 {
              for budget in Self.depthFirstBudgets {
                let checked: Void? = withNetwork(net, path: path, depthFirstBytes: budget) { network in
                    for threads in threadCounts {
                        for inputInPing in [true, false] {
                            let run = runNetwork(network, net, path: path, images: images, batch: batch, threads: threads,
                                                 inputInPing: inputInPing)
                            let label = "\(pathName(path)) x\(threads) depth-first budget \(budget) input in \(inputInPing ? "ping" : "own buffer")"
                            XCTAssertEqual(run.status, QK_OK, "\(label) refused: \(context)")
                            XCTAssertTrue(run.fencesIntact, "\(label) wrote outside its buffers: \(context)")
                            XCTAssertTrue(run.result.pooled == expected.pooled,
                                          "\(label) pooled at \(firstMismatch(run.result.pooled, expected.pooled)): \(context)")
                            XCTAssertTrue(run.result.logits == expected.logits,
                                          "\(label) logits at \(firstMismatch(run.result.logits, expected.logits)): \(context)")
                        }
                    }
                }
                XCTAssertNotNil(checked, "\(pathName(path)) refused a layer: \(context)")
              }
                compared.insert(pathName(path))
            }
        }
        return compared
    }

    /// The whole-network entry point against the per-layer scalar oracle: every path, 1-3 threads, batch 1-5,
    /// a 3-channel stem, stride 2, groups, channel counts off every SIMD width, several channel tiles.
    func testWholeNetworkMatchesPerLayerScalar() {
        let networks: [(Int, Int, [(Int, Int, Int)], Int)] = [
            (11, 13, [(16, 2, 1), (24, 1, 1), (24, 1, 2), (40, 2, 1), (40, 1, 1)], 7),
            (9, 9, [(48, 2, 1), (100, 1, 1), (52, 2, 4), (20, 1, 1)], 33),
            (7, 5, [(5, 1, 1)], 3),
            // Activations that grow again after shrinking: only some leading layers may run image by image.
            (8, 8, [(12, 1, 1), (6, 1, 1), (24, 1, 1), (8, 2, 1), (8, 1, 1)], 5),
        ]
        var compared = Set<String>()
        for (index, (h, w, layers, classes)) in networks.enumerated() {
            let seed = Self.baseSeed &+ UInt64(index)
            var rng = SeededGenerator(seed: seed)
            let net = NetworkCase.random(inH: h, inW: w, layers: layers, classes: classes, &rng)
            compared.formUnion(checkNetwork(net, seed: seed, maxBatch: 5))
        }
        XCTAssertEqual(compared, Set(allPaths.filter { qk_path_supported($0) != 0 }.map(pathName)))
        print("network paths compared on this CPU: \(compared.sorted()); not run: \(pathsNotRun())")
    }

    /// The timed entry point computes the same and stamps every step's end in order, nothing past the last.
    func testTimedRunMatchesAndStampsEveryStep() {
        var rng = SeededGenerator(seed: Self.baseSeed &+ 200)
        let net = NetworkCase.random(inH: 10, inW: 8, layers: [(16, 2, 1), (20, 1, 1), (24, 2, 1)], classes: 9, &rng)
        let batch = 3  // on 2 threads: two images run alone, one by the team
        let images = withGarbageSlack(rng.bytes(batch * net.imageBytes), &rng)
        let expected = perLayerScalar(net, images: images, batch: batch)
        for path in allPaths where qk_path_supported(path) != 0 {
            let checked: Void? = withNetwork(net, path: path) { network in
                for threads: Int32 in [1, 2] {
                    var ping = [UInt8](repeating: 0, count: batch * (net.maxActivationBytes + extraBytes)), pong = ping
                    var pooled = [UInt8](repeating: 0, count: batch * net.lastChannels + extraBytes)
                    var logits = [Float](repeating: 0, count: batch * net.classes)
                    let steps = net.convs.count + 3
                    var clock = [Double](repeating: -1, count: steps + 1)
                    // No thread scratch: the run allocates its own.
                    let status = qk_network_run(network, Int32(batch), images, &ping, &pong, &pooled, &logits, nil, threads,
                                                &clock)
                    let label = "\(pathName(path)) x\(threads)"
                    XCTAssertEqual(status, QK_OK, label)
                    XCTAssertEqual(Array(pooled.prefix(batch * net.lastChannels)), expected.pooled, label)
                    XCTAssertEqual(logits.map(\.bitPattern), expected.logits, label)
                    XCTAssertTrue(clock[0] > 0 && zip(clock.prefix(steps), clock.prefix(steps).dropFirst()).allSatisfy { $0 <= $1 },
                                  "\(label) clock \(clock)")
                    XCTAssertEqual(clock[steps], -1, "\(label) wrote past the last step")
                }
            }
            XCTAssertNotNil(checked)
        }
    }

    /// Each thread's kernel scratch (the int16 paths' widened input rows, qk_network_scratch.thread) does not
    /// depend on the batch, is there exactly on the paths that widen (these stride-2 layers run direct), and
    /// is none where every layer reads u8 inputs (scalar, the dot-product paths) or runs in dense mode. A
    /// 3-channel stem alone widens too: both widening paths have a stem3 kernel.
    func testThreadScratchIsSizedForTheWideningPaths() {
        var rng = SeededGenerator(seed: Self.baseSeed &+ 400)
        let strided = NetworkCase.random(inH: 12, inW: 10, layers: [(16, 2, 1), (24, 2, 1)], classes: 5, &rng)
        let stemOnly = NetworkCase.random(inH: 12, inW: 10, layers: [(16, 2, 1)], classes: 5, &rng)
        var compared: [String] = []
        for path in allPaths where qk_path_supported(path) != 0 {
            let name = pathName(path)
            let widens = ["avx2", "avx512bw"].contains(name)
            for (net, layerWidens) in [(strided, widens), (stemOnly, widens)] {
                _ = withNetwork(net, path: path) { network in
                    var one = qk_network_scratch(), eight = qk_network_scratch()
                    XCTAssertEqual(qk_network_scratch_sizes(network, 1, &one), QK_OK)
                    XCTAssertEqual(qk_network_scratch_sizes(network, 8, &eight), QK_OK)
                    XCTAssertEqual(one.thread, eight.thread, "\(name): the thread scratch grew with the batch")
                    XCTAssertEqual(one.thread > 0, layerWidens, "\(name): \(one.thread) bytes of thread scratch")
                    XCTAssertEqual(one.thread % 64, 0, "\(name): not whole cache lines")
                }
            }
            compared.append(name)
        }
        print("thread scratch checked on: \(compared)")
    }

    /// A layer the cost model puts on Winograd transforms its input tiles into the thread scratch, so the
    /// network's scratch holds a segment of them (256 KB, F(4x4,3x3) 320 KB) whatever the batch: a run
    /// allocates nothing per layer. The whole-network tests run with exactly this size (ASan sees an overrun).
    func testThreadScratchHoldsTheWinogradSegment() {
        var rng = SeededGenerator(seed: Self.baseSeed &+ 410)
        let net = NetworkCase.random(inH: 16, inW: 16, layers: [(48, 1, 1), (48, 1, 1)], classes: 5, &rng)
        var checked: [String] = []
        for path in allPaths where qk_path_supported(path) != 0 {
            var shape = net.convs[1].shape
            guard let algorithm = qk_conv3x3_algorithm(path, &shape).map({ String(cString: $0) }),
                  algorithm.hasPrefix("winograd") else { continue }
            let name = pathName(path)
            let segment = algorithm == "winograd-4x4" ? 320 << 10 : 256 << 10
            _ = withNetwork(net, path: path) { network in
                var one = qk_network_scratch(), eight = qk_network_scratch()
                XCTAssertEqual(qk_network_scratch_sizes(network, 1, &one), QK_OK)
                XCTAssertEqual(qk_network_scratch_sizes(network, 8, &eight), QK_OK)
                XCTAssertEqual(one.thread, eight.thread, "\(name): the thread scratch grew with the batch")
                XCTAssertGreaterThanOrEqual(one.thread, segment, "\(name) (\(algorithm)): \(one.thread) bytes of thread scratch")
            }
            checked.append("\(name) (\(algorithm))")
        }
        print("Winograd thread scratch checked on: \(checked)")
    }

    /// A member that falls behind (as when another process holds its core) has its items taken over by the
    /// others; which thread computes an item must not change a byte.
    func testItemsTakenOverFromAStragglerGiveTheSameResult() {
        var rng = SeededGenerator(seed: Self.baseSeed &+ 300)
        let net = NetworkCase.random(inH: 12, inW: 10, layers: [(16, 2, 1), (20, 1, 1), (40, 1, 2), (24, 2, 1)],
                                     classes: 9, &rng)
        let batch = 3
        let images = withGarbageSlack(rng.bytes(batch * net.imageBytes), &rng)
        let expected = perLayerScalar(net, images: images, batch: batch)
        defer { qk_testing_set_straggler(-1, 0) }
        var blockedPaths = 0
        for path in allPaths where qk_path_supported(path) != 0 {
            let checked: Void? = withNetwork(net, path: path) { network in
                for threads: Int32 in [2, 3] {
                    for straggler in 0..<threads {
                        let label = "\(pathName(path)) x\(threads) member \(straggler) late"
                        // The others take over only if they run during the sleep; on a loaded machine (CI's
                        // sanitizer steps side by side) they may not, so a few tries, each checked for its bytes.
                        // The blocked paths claim items; the scalar oracle keeps its static split.
                        let wantTakeover = path != QK_PATH_SCALAR
                        var takenOver: Int64 = 0
                        for _ in 0..<(wantTakeover ? Self.tries : 1) where takenOver == 0 {
                            qk_testing_set_straggler(straggler, 3000)
                            _ = qk_testing_taken_over_items()
                            let run = runNetwork(network, net, path: path, images: images, batch: batch, threads: threads,
                                                 inputInPing: true)
                            takenOver = qk_testing_taken_over_items()
                            qk_testing_set_straggler(-1, 0)
                            assertSameBytes(run, expected, label)
                        }
                        if wantTakeover {
                            XCTAssertGreaterThan(takenOver, 0, "\(label): nothing was taken over in \(Self.tries) runs")
                        }
                    }
                }
            }
            XCTAssertNotNil(checked)
            if path != QK_PATH_SCALAR { blockedPaths += 1 }
        }
        XCTAssertGreaterThan(blockedPaths, 0, "no SIMD path on this CPU to exercise")
    }

    /// Rescue mode (a loaded machine): a member asleep on an item it claimed has that item redone by another,
    /// which commits it and moves on; every step's output goes to a buffer no late member still reads. Whoever
    /// computes an item, and whichever commit wins, the bytes are the oracle's.
    func testRescueModeRedoesALateMembersItemsWithTheSameBytes() {
        var rng = SeededGenerator(seed: Self.baseSeed &+ 320)
        let net = NetworkCase.random(inH: 12, inW: 10, layers: [(16, 2, 1), (20, 1, 1), (40, 1, 2), (24, 2, 1), (32, 1, 1)],
                                     classes: 9, &rng)
        let images = withGarbageSlack(rng.bytes(2 * net.imageBytes), &rng)
        qk_testing_force_rescue(1)
        // Partners need not join a run at all: each run waits for them to start, so that they take part.
        qk_testing_crew_roll_call(1)
        defer {
            qk_testing_force_rescue(0)
            qk_testing_crew_roll_call(0)
            qk_testing_set_straggler(-1, 0)
        }
        let cpus = Int32(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        var rescuedPaths = 0
        for path in allPaths where qk_path_supported(path) != 0 {
            let checked: Void? = withNetwork(net, path: path) { network in
                var history = qk_team_history()
                defer { qk_team_history_release(&history) }
                for (batch, threads): (Int, Int32) in [(1, 2), (1, 3), (2, 3)] {
                    let expected = perLayerScalar(net, images: images, batch: batch)
                    for straggler: Int32 in [-1] + Array(0..<threads) {
                        let label = "\(pathName(path)) batch \(batch) x\(threads) member \(straggler) late"
                        // Every member is in each step from its start (the roll call, and a step ends for
                        // all at once), and takes its own share first: the caller claims items, and sleeps on
                        // the first of each step. Unless a spinning partner shares its CPU (more threads than
                        // CPUs) and the scheduler leaves the caller out of a step, or (a loaded machine) the
                        // partners are off their CPUs for the whole sleep: a few tries, each checked for its bytes.
                        let wantRedone = path != QK_PATH_SCALAR && straggler == 0 && threads <= cpus
                        var redone: Int64 = 0
                        for _ in 0..<(wantRedone ? Self.tries : 1) where redone == 0 {
                            qk_testing_set_straggler(straggler, straggler < 0 ? 0 : 3000)
                            _ = qk_testing_redone_items()
                            let before = history.rescue_runs
                            let run = runNetwork(network, net, path: path, images: images, batch: batch, threads: threads,
                                                 inputInPing: false, history: &history)
                            redone = qk_testing_redone_items()
                            qk_testing_set_straggler(-1, 0)
                            assertSameBytes(run, expected, label)
                            // The scalar oracle's kernels do not claim items: it runs on one thread instead.
                            XCTAssertEqual(history.rescue_runs - before, path == QK_PATH_SCALAR ? 0 : 1, label)
                        }
                        if wantRedone {
                            XCTAssertGreaterThan(redone, 0, "\(label): nothing was redone in \(Self.tries) runs")
                        }
                    }
                }
            }
            XCTAssertNotNil(checked)
            if path != QK_PATH_SCALAR { rescuedPaths += 1 }
        }
        XCTAssertGreaterThan(rescuedPaths, 0, "no SIMD path on this CPU to exercise")
    }

    /// One image of a random network, the first SIMD path this CPU has and the scalar oracle's result; nil,
    /// after a failure, where the CPU has no SIMD path.
    func singleImageCase(seed: UInt64, inH: Int, inW: Int, layers: [(Int, Int, Int)], classes: Int)
        -> (net: NetworkCase, images: [UInt8], path: qk_path, expected: NetworkResult)? {
        var rng = SeededGenerator(seed: Self.baseSeed &+ seed)
        let net = NetworkCase.random(inH: inH, inW: inW, layers: layers, classes: classes, &rng)
        let images = withGarbageSlack(rng.bytes(net.imageBytes), &rng)
        guard let path = allPaths.first(where: { qk_path_supported($0) != 0 && $0 != QK_PATH_SCALAR }) else {
            XCTFail("no SIMD path on this CPU to exercise")
            return nil
        }
        return (net, images, path, perLayerScalar(net, images: images, batch: 1))
    }

    /// A rescue-mode run returns once every item is committed, without waiting for a partner asleep on an item
    /// it claimed (OpenMP's join would have held the caller for the whole sleep); the next run takes another
    /// set of buffers meanwhile and gives the same bytes, and releasing the history waits for the partner.
    func testRescueModeReturnsWithoutWaitingForALatePartner() {
        // A first layer long enough that the partner, once it has started, claims an item of its own share
        // before the caller is through with the caller's.
        guard let (net, images, path, expected) = singleImageCase(seed: 322, inH: 96, inW: 96,
                                                                  layers: [(32, 1, 1), (24, 2, 1), (32, 1, 2)], classes: 7)
        else { return }
        qk_testing_force_rescue(1)
        defer {
            qk_testing_force_rescue(0)
            qk_testing_crew_roll_call(0)
            qk_testing_set_straggler(-1, 0)
        }
        let checked: Void? = withNetwork(net, path: path) { network in
            var history = qk_team_history()
            // The partner enters the run before the caller starts, and sleeps half a second on its first item. On a
            // loaded machine (the sanitizer runs) it may get no CPU until the caller has done every item, and then
            // it claims none and sleeps on none: that run tests nothing, so it is run again (20 times at most).
            var late: (status: qk_status, result: NetworkResult, fencesIntact: Bool)?
            var lateRuns = 0, partnerSlept = false
            _ = qk_testing_straggles()
            while lateRuns < 20 && !partnerSlept {
                qk_testing_crew_roll_call(1)
                qk_testing_set_straggler(1, 500_000)
                late = runNetwork(network, net, path: path, images: images, batch: 1, threads: 2, inputInPing: false,
                                  history: &history)
                lateRuns += 1
                partnerSlept = qk_testing_straggles() > 0
                if partnerSlept {
                    XCTAssertEqual(qk_testing_partners_in_runs(), 1, "the caller waited for its late partner")
                } else {
                    // Let a partner that is still on its way out leave, and the scheduler catch up, before the next attempt.
                    while qk_testing_partners_in_runs() > 0 { usleep(1000) }
                    usleep(10_000)
                }
            }
            XCTAssertTrue(partnerSlept, "the partner claimed no item in \(lateRuns) runs")
            guard let late else { return }
            qk_testing_set_straggler(-1, 0)
            qk_testing_crew_roll_call(0)
            let next = runNetwork(network, net, path: path, images: images, batch: 1, threads: 2, inputInPing: false,
                                  history: &history)
            XCTAssertEqual(history.rescue_runs, Int64(lateRuns + 1))
            for (label, run) in [("late partner", late), ("next run", next)] {
                assertSameBytes(run, expected, label)
            }
            let crews = qk_testing_live_crews()
            qk_team_history_release(&history)
            XCTAssertEqual(qk_testing_partners_in_runs(), 0, "releasing the history did not wait for the partner")
            XCTAssertEqual(qk_testing_live_crews(), crews - 1, "releasing the history left its crew's threads")
        }
        XCTAssertNotNil(checked)
    }

    /// A process forked after rescue mode made its crew (Python's multiprocessing and pre-forking servers do
    /// this) has none of the crew's threads, since fork copies only the calling thread. The child makes a crew
    /// of its own and runs with the same bytes, and releasing the history leaves the parent's threads alone.
    /// The child's run waits for its partner to enter (the roll call), so a crew without threads hangs it:
    /// before, the child kept the parent's crew (its rescue-mode runs went on the caller alone, and releasing
    /// it signalled and joined threads that are not there). The parent goes on with its own crew. The child
    /// makes only C calls on memory set up before the fork.
    func testAForkedChildRunsAndReleasesWithoutTheParentsCrew() throws {
        if dlsym(nil, "__tsan_init") != nil {
            throw XCTSkip("not run under ThreadSanitizer, which cannot start threads in a child of a multithreaded fork")
        }
        guard let (net, images, path, expected) = singleImageCase(seed: 323, inH: 20, inW: 18,
                                                                  layers: [(16, 2, 1), (24, 1, 1), (32, 2, 1)], classes: 5)
        else { return }
        qk_testing_force_rescue(1)
        defer { qk_testing_force_rescue(0) }
        let checked: Void? = withNetwork(net, path: path) { network in
            var history = qk_team_history()
            defer { qk_team_history_release(&history) }
            let first = runNetwork(network, net, path: path, images: images, batch: 1, threads: 2, inputInPing: false,
                                   history: &history)
            XCTAssertEqual(first.status, QK_OK)
            XCTAssertTrue(history.crew != nil, "the first rescue-mode run made no crew")
            var sizes = qk_network_scratch()
            XCTAssertEqual(qk_network_scratch_sizes(network, 1, &sizes), QK_OK)
            let bytes = [sizes.input + extraBytes, sizes.ping, sizes.pong, sizes.pooled, sizes.logits, 2 * sizes.thread]
            let buffers = bytes.map { UnsafeMutableRawPointer.allocate(byteCount: max($0, 64), alignment: 64) }
            defer { buffers.forEach { $0.deallocate() } }
            images.withUnsafeBytes { source in
                if let base = source.baseAddress { memcpy(buffers[0], base, min(source.count, bytes[0])) }
            }
            let want = UnsafeMutablePointer<UInt32>.allocate(capacity: net.classes)
            defer { want.deallocate() }
            for (i, value) in expected.logits.enumerated() { want[i] = value }
            let logits = buffers[4].assumingMemoryBound(to: Float.self)

            let child = fork()
            if child == 0 {
                qk_testing_crew_roll_call(1)
                let status = qk_network_run_paced(network, 1, buffers[0].assumingMemoryBound(to: UInt8.self),
                                                  buffers[1].assumingMemoryBound(to: UInt8.self),
                                                  buffers[2].assumingMemoryBound(to: UInt8.self),
                                                  buffers[3].assumingMemoryBound(to: UInt8.self), logits,
                                                  buffers[5].assumingMemoryBound(to: UInt8.self), 2, nil, &history)
                let same = memcmp(logits, want, net.classes * MemoryLayout<Float>.size) == 0
                qk_team_history_release(&history)
                _exit(status != QK_OK ? 2 : same ? 0 : 3)
            }
            XCTAssertGreaterThan(child, 0, "fork failed")
            guard child > 0 else { return }
            var waitStatus: Int32 = 0
            var finished = false
            for _ in 0..<600 where !finished {
                let waited = waitpid(child, &waitStatus, WNOHANG)
                finished = waited == child
                if waited < 0 { break }
                if !finished { usleep(50_000) }
            }
            if !finished {
                kill(child, SIGKILL)
                waitpid(child, &waitStatus, 0)
            }
            XCTAssertTrue(finished, "the forked child did not finish within 30 s (a crew without threads?)")
            // WIFEXITED and WEXITSTATUS: the low 7 bits 0 (else the signal), the exit code above them.
            XCTAssertTrue(finished && waitStatus & 0x7F == 0 && (waitStatus >> 8) & 0xFF == 0,
                          "the child failed: exit code \((waitStatus >> 8) & 0xFF) (2: an error, 3: other logits), signal \(waitStatus & 0x7F)")
            let after = runNetwork(network, net, path: path, images: images, batch: 1, threads: 2, inputInPing: false,
                                   history: &history)
            XCTAssertEqual(after.status, QK_OK)
            XCTAssertTrue(after.result.logits == expected.logits, "the parent's next run differs")
            XCTAssertEqual(history.rescue_runs, 2)
        }
        XCTAssertNotNil(checked)
    }

    /// A team with as many threads as the caller may use CPUs binds each worker to a CPU of its own, none to
    /// the caller's, in layer-by-layer and image-per-thread runs and in rescue mode alike; a larger team, or
    /// QAREP_BIND_THREADS=0, binds nobody. The bytes are the oracle's either way.
    func testATeamAsLargeAsTheCPUsBindsItsWorkersToCPUsOfTheirOwn() {
        let threads = qk_testing_binding_threads()
        guard threads >= 2 else {
            print("not run: thread binding (this process may use \(threads) CPU(s), or binding is off here)")
            return
        }
        var rng = SeededGenerator(seed: Self.baseSeed &+ 325)
        let net = NetworkCase.random(inH: 12, inW: 10, layers: [(16, 2, 1), (24, 1, 1), (32, 1, 2)], classes: 7, &rng)
        let batch = Int(threads)
        let images = withGarbageSlack(rng.bytes(batch * net.imageBytes), &rng)
        guard let path = allPaths.first(where: { qk_path_supported($0) != 0 && $0 != QK_PATH_SCALAR }) else {
            XCTFail("no SIMD path on this CPU to exercise")
            return
        }
        defer {
            qk_testing_force_rescue(0)
            qk_testing_crew_roll_call(0)
        }
        let checked: Void? = withNetwork(net, path: path) { network in
            var history = qk_team_history()
            defer { qk_team_history_release(&history) }
            for (images: count, team, rescue, bindingOff) in [(1, threads, false, false), (batch, threads, false, false),
                                                              (1, threads, true, false), (1, threads + 1, false, false),
                                                              (1, threads, false, true)] {
                let expected = perLayerScalar(net, images: images, batch: count)
                qk_testing_force_rescue(rescue ? 1 : 0)
                // Rescue mode's partners need not join the run: the caller waits for them to enter it.
                qk_testing_crew_roll_call(rescue ? 1 : 0)
                if bindingOff { setenv("QAREP_BIND_THREADS", "0", 1) }
                _ = qk_testing_bound_cpus()
                let run = runNetwork(network, net, path: path, images: images, batch: count, threads: team,
                                     inputInPing: false, history: &history)
                let bound = qk_testing_bound_cpus()
                if bindingOff { unsetenv("QAREP_BIND_THREADS") }
                let label = "batch \(count) x\(team)\(rescue ? " rescue" : "")\(bindingOff ? " QAREP_BIND_THREADS=0" : "")"
                XCTAssertEqual(run.status, QK_OK, label)
                XCTAssertTrue(run.fencesIntact, label)
                XCTAssertTrue(run.result.logits == expected.logits, "\(label): logits differ")
                let expectedBound = team == threads && !bindingOff ? Int(threads) - 1 : 0
                XCTAssertEqual(bound.nonzeroBitCount, expectedBound, "\(label): CPUs bound \(String(bound, radix: 2))")
            }
        }
        XCTAssertNotNil(checked)
    }

    /// A loaded period times rescue mode and one thread (a few runs each, the first of each not counted),
    /// then keeps to whichever took less per image; a period that goes on keeps those timings but times the
    /// slower mode twice more.
    func testALoadedPeriodKeepsTheFasterOfRescueAndSolo() {
        var rng = SeededGenerator(seed: Self.baseSeed &+ 330)
        let net = NetworkCase.random(inH: 12, inW: 10, layers: [(16, 2, 1), (24, 1, 1)], classes: 5, &rng)
        let images = withGarbageSlack(rng.bytes(net.imageBytes), &rng)
        let expected = perLayerScalar(net, images: images, batch: 1)
        guard let path = allPaths.first(where: { qk_path_supported($0) != 0 && $0 != QK_PATH_SCALAR }) else {
            XCTFail("no SIMD path on this CPU to exercise")
            return
        }
        let checked: Void? = withNetwork(net, path: path) { network in
            var history = qk_team_history()
            defer { qk_team_history_release(&history) }
            history.solo_until = 1e12  // a loaded period that lasts
            func run() -> Int64 {
                let before = history.rescue_runs
                let result = runNetwork(network, net, path: path, images: images, batch: 1, threads: 2,
                                        inputInPing: false, history: &history)
                XCTAssertEqual(result.status, QK_OK)
                XCTAssertTrue(result.result.logits == expected.logits, pathName(path))
                return history.rescue_runs - before
            }
            let trial = (0..<8).map { _ in run() }
            XCTAssertEqual(trial, [1, 1, 1, 1, 0, 0, 0, 0], "\(pathName(path)): rescue mode, then one thread, 4 runs each")
            XCTAssertEqual(history.loaded_runs.1, 4)
            XCTAssertEqual(history.loaded_runs.2, 4)
            history.loaded_seconds.1 = 1.0
            history.loaded_seconds.2 = 0.5
            XCTAssertEqual(run(), 1, "\(pathName(path)): rescue mode was faster")
            history.loaded_seconds.2 = 100.0
            XCTAssertEqual(run(), 0, "\(pathName(path)): one thread was faster")
            // The period ends, and the first team run after it is late: the next period starts at once and keeps
            // these timings, but times the slower mode twice more, its earlier runs weighing as one.
            history.solo_until = 0
            history.solo_length = 0.25
            history.team_runs = 1
            history.late_runs = 0
            history.loaded_runs = (0, 4, 4)
            history.loaded_seconds = (0, 3.0, 6.0)  // one thread 1 s per counted run, rescue mode 2 s
            qk_testing_set_straggler(1, 2000)
            defer { qk_testing_set_straggler(-1, 0) }
            XCTAssertEqual(run(), 0, "\(pathName(path)): a team run")
            XCTAssertEqual(history.late_runs, 1)
            XCTAssertEqual(history.solo_length, 0.5, "one late run after a loaded period starts the next")
            XCTAssertEqual(history.loaded_runs.1, 4, "the faster mode keeps its timings")
            XCTAssertEqual(history.loaded_seconds.1, 3.0)
            XCTAssertEqual(history.loaded_runs.2, 2, "the slower mode is timed twice more")
            XCTAssertEqual(history.loaded_seconds.2, 2.0, "its earlier runs weigh as one")
        }
        XCTAssertNotNil(checked)
    }

    /// After a first team run that is not judged, a member late at a barrier twice in a row makes the next
    /// layer-by-layer runs of that history go on one thread for a while (twice as long, and its timings kept,
    /// if the first team run after it is late again),
    /// and a run that keeps pace ends the doubling; runs of at least as many images as threads are not
    /// judged. Every run gives the same bytes.
    func testALateMemberShrinksTheTeamForAWhile() {
        var rng = SeededGenerator(seed: Self.baseSeed &+ 310)
        let net = NetworkCase.random(inH: 12, inW: 10, layers: [(16, 2, 1), (24, 1, 1), (32, 2, 1)], classes: 5, &rng)
        let images = withGarbageSlack(rng.bytes(2 * net.imageBytes), &rng)
        let expected = perLayerScalar(net, images: images, batch: 2)
        let expectedOne = perLayerScalar(net, images: images, batch: 1)
        defer { qk_testing_set_straggler(-1, 0) }
        var checkedPaths = 0
        for path in allPaths where qk_path_supported(path) != 0 && path != QK_PATH_SCALAR {
            let checked: Void? = withNetwork(net, path: path) { network in
                var history = qk_team_history()
                defer { qk_team_history_release(&history) }
                func run(batch: Int, lateMember: Int32?) {
                    qk_testing_set_straggler(lateMember ?? -1, lateMember == nil ? 0 : 2000)
                    let result = runNetwork(network, net, path: path, images: images, batch: batch, threads: 2,
                                            inputInPing: false, history: &history)
                    qk_testing_set_straggler(-1, 0)
                    XCTAssertEqual(result.status, QK_OK)
                    XCTAssertTrue(result.fencesIntact)
                    XCTAssertTrue(result.result.logits == (batch == 1 ? expectedOne : expected).logits, "\(pathName(path)) batch \(batch)")
                }
                run(batch: 1, lateMember: 1)
                XCTAssertEqual(history.late_runs, 0, "\(pathName(path)): the first team run is not judged")
                XCTAssertEqual(history.team_runs, 1, pathName(path))
                run(batch: 1, lateMember: 1)
                XCTAssertEqual(history.late_runs, 1, pathName(path))
                XCTAssertEqual(history.solo_length, 0, "\(pathName(path)): one late run alone is a hiccup, not load")
                XCTAssertEqual(history.solo_until, 0)
                run(batch: 1, lateMember: 1)
                XCTAssertEqual(history.late_runs, 2, pathName(path))
                XCTAssertEqual(history.solo_length, 0.25, "\(pathName(path)): late twice in a row goes solo")
                XCTAssertGreaterThan(history.solo_until, 0)
                // Rescue mode now (pushed far out, so a slow sanitizer build cannot outlive it): the late member's
                // items are redone and the run is not judged.
                history.solo_until += 1000
                run(batch: 1, lateMember: 1)
                XCTAssertEqual(history.late_runs, 2, "\(pathName(path)): a rescue-mode run was judged")
                XCTAssertEqual(history.rescue_runs, 1, "\(pathName(path)): the loaded period runs in rescue mode")
                // Images alone are not judged either, late member or not.
                history.solo_until = 0
                run(batch: 2, lateMember: 0)
                XCTAssertEqual(history.late_runs, 2, "\(pathName(path)): a run of images alone was judged")
                run(batch: 1, lateMember: 0)
                XCTAssertEqual(history.late_runs, 3)
                XCTAssertEqual(history.solo_length, 0.5, "\(pathName(path)): still late, the period doubles")
                XCTAssertEqual(history.loaded_runs.2, 1, "\(pathName(path)): a period that goes on keeps what the last one measured")
                // A run on time, judged so: on a loaded machine (CI's sanitizer steps side by side) every run can be
                // late for real, 50 of 50 here with two busy loops beside TSan.
                qk_testing_judge_on_time(1)
                defer { qk_testing_judge_on_time(0) }
                history.solo_until = 0
                run(batch: 1, lateMember: nil)
                XCTAssertEqual(history.solo_length, 0, "\(pathName(path)): a run that keeps pace ends the doubling")
                XCTAssertEqual(history.late_in_a_row, 0, pathName(path))
            }
            XCTAssertNotNil(checked)
            checkedPaths += 1
        }
        XCTAssertGreaterThan(checkedPaths, 0, "no SIMD path on this CPU to exercise")
    }

    /// The kernels build networks themselves and refuse broken ones when they are made; a run of an
    /// incomplete network, or with a missing buffer, computes nothing (the logits keep their fence pattern).
    func testInvalidNetworksAreRefused() {
        var rng = SeededGenerator(seed: Self.baseSeed &+ 100)
        let net = NetworkCase.random(inH: 6, inW: 6, layers: [(8, 2, 1), (12, 1, 1)], classes: 4, &rng)
        let images = withGarbageSlack(rng.bytes(net.imageBytes), &rng)
        let path = qk_best_path()
        let shapes = net.convs.map(\.shape)
        let refusedBy: [(String, [qk_conv_shape], Int32)] = [
            ("broken channel chain", [shapes[0], { var s = shapes[1]; s.in_c = 9; return s }()], 4),
            ("broken size chain", [shapes[0], { var s = shapes[1]; s.in_h = 6; return s }()], 4),
            ("invalid groups", [shapes[0], { var s = shapes[1]; s.groups = 5; return s }()], 4),
            ("zero classes", shapes, 0),
            ("too many classes", shapes, Int32(QK_MAX_CLASSES) + 1),
        ]
        for (name, shapes, classes) in refusedBy {
            var table = shapes
            var network: OpaquePointer? = nil
            XCTAssertEqual(qk_network_create(path, Int32(table.count), &table, classes, &network), QK_ERROR_INVALID_ARGUMENT, name)
            XCTAssertNil(network, name)
        }
        var table = shapes
        var network: OpaquePointer? = nil
        XCTAssertEqual(qk_network_create(path, 0, &table, 4, &network), QK_ERROR_INVALID_ARGUMENT, "no layers")
        XCTAssertEqual(qk_network_create(path, 2, nil, 4, &network), QK_ERROR_INVALID_ARGUMENT, "no shapes")
        XCTAssertEqual(qk_network_create(QK_PATH_COUNT, 2, &table, 4, &network), QK_ERROR_INVALID_ARGUMENT, "not a path")
        for unsupported in allPaths where qk_path_supported(unsupported) == 0 {
            XCTAssertEqual(qk_network_create(unsupported, 2, &table, 4, &network), QK_ERROR_UNSUPPORTED_PATH, pathName(unsupported))
        }

        let incomplete = makeNetwork(net, path: path, setHead: false)
        defer { qk_network_destroy(incomplete) }
        let run = runNetwork(incomplete, net, path: path, images: images, batch: 1, threads: 2, inputInPing: true)
        XCTAssertEqual(run.status, QK_ERROR_INCOMPLETE, "a network without its head ran")
        XCTAssertTrue(run.result.logits.allSatisfy { $0 == 0xA5A5_A5A5 }, "an incomplete network wrote logits")
        var weights = [Int8](repeating: 0, count: 12 * 8 * 9)
        XCTAssertEqual(qk_network_conv_weights(incomplete, 2, &weights), QK_ERROR_INVALID_ARGUMENT, "layer index past the end")
        XCTAssertEqual(qk_network_set_conv(incomplete, -1, weights, net.data[0].bias, net.data[0].multiplier, net.data[0].pad),
                       QK_ERROR_INVALID_ARGUMENT, "negative layer index")
        XCTAssertEqual(qk_network_set_conv(incomplete, 0, nil, net.data[0].bias, net.data[0].multiplier, net.data[0].pad),
                       QK_ERROR_INVALID_ARGUMENT, "NULL weights")

        let result: Void? = withNetwork(net, path: path) { valid in
            XCTAssertEqual(runNetwork(valid, net, path: path, images: images, batch: 1, threads: 2, inputInPing: true).status, QK_OK)
            var ping = [UInt8](repeating: 0, count: net.maxActivationBytes + extraBytes), pong = ping  // batch 1
            var pooled = [UInt8](repeating: 0, count: net.lastChannels + extraBytes)
            var logits = [Float](repeating: 0, count: net.classes)
            XCTAssertEqual(qk_network_run(valid, 0, images, &ping, &pong, &pooled, &logits, nil, 1, nil), QK_ERROR_INVALID_ARGUMENT,
                           "batch 0 accepted")
            XCTAssertEqual(qk_network_run(nil, 1, images, &ping, &pong, &pooled, &logits, nil, 1, nil), QK_ERROR_INVALID_ARGUMENT,
                           "NULL network accepted")
            XCTAssertEqual(qk_network_run(valid, 1, images, &ping, nil, &pooled, &logits, nil, 1, nil), QK_ERROR_INVALID_ARGUMENT,
                           "NULL pong accepted")
            XCTAssertTrue(logits.allSatisfy { $0 == 0 }, "a refused run wrote logits")
            var scratch = qk_network_scratch()
            XCTAssertEqual(qk_network_scratch_sizes(valid, 3, &scratch), QK_OK)
            XCTAssertEqual(scratch.ping, 3 * (net.largestInPing + extraBytes) + extraBytes)
            XCTAssertEqual(scratch.pong, 3 * (net.largestInPong + extraBytes) + extraBytes)
            XCTAssertEqual(scratch.input, 3 * net.imageBytes + extraBytes)
            XCTAssertEqual(scratch.logits, 3 * net.classes * 4)
            XCTAssertEqual(qk_network_scratch_sizes(valid, 0, &scratch), QK_ERROR_INVALID_ARGUMENT)
        }
        XCTAssertNotNil(result)
    }

    /// Repacking for another path keeps every weight and every result.
    func testRepackedNetworksUnpackToTheSameWeightsAndRun() {
        var rng = SeededGenerator(seed: Self.baseSeed &+ 400)
        let net = NetworkCase.random(inH: 9, inW: 7, layers: [(16, 2, 1), (24, 1, 2), (5, 1, 1)], classes: 6, &rng)
        let images = withGarbageSlack(rng.bytes(2 * net.imageBytes), &rng)
        let expected = perLayerScalar(net, images: images, batch: 2)
        guard let scalar = makeNetwork(net, path: QK_PATH_SCALAR) else { return XCTFail("scalar network refused") }
        defer { qk_network_destroy(scalar) }
        for path in allPaths where qk_path_supported(path) != 0 {
            var copy: OpaquePointer? = nil
            XCTAssertEqual(qk_network_repack(scalar, path, &copy), QK_OK, pathName(path))
            defer { qk_network_destroy(copy) }
            XCTAssertEqual(qk_network_path(copy), path)
            for (i, data) in net.data.enumerated() {
                var weights = [Int8](repeating: 0, count: data.weights.count)
                XCTAssertEqual(qk_network_conv_weights(copy, Int32(i), &weights), QK_OK)
                XCTAssertEqual(weights, data.weights, "\(pathName(path)) conv \(i)")
            }
            var fc = [Int8](repeating: 0, count: net.fcWeight.count)
            XCTAssertEqual(qk_network_fc_weights(copy, &fc), QK_OK)
            XCTAssertEqual(fc, net.fcWeight, pathName(path))
            let run = runNetwork(copy, net, path: path, images: images, batch: 2, threads: 2, inputInPing: false)
            XCTAssertEqual(run.status, QK_OK)
            XCTAssertTrue(run.result == expected, "\(pathName(path)) repacked network differs")
        }
    }
}

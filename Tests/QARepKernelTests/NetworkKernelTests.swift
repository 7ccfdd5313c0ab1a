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

    /// The oracle: scalar kernels, one call per step, one thread.
    func perLayerScalar(_ net: NetworkCase, images: [UInt8], batch: Int) -> NetworkResult {
        var activation = images
        for (conv, data) in zip(net.convs, net.data) {
            var c = conv
            c.batch = batch
            var shape = c.shape
            let packed = PackedWeights(byteCount: qk_conv3x3_packed_size(QK_PATH_SCALAR, &shape))
            qk_conv3x3_pack(QK_PATH_SCALAR, &shape, data.weights, packed.pointer)
            var output = [UInt8](repeating: 0, count: c.outputCount + extraBytes)
            qk_conv3x3_u8(QK_PATH_SCALAR, &shape, Int32(batch), packed.pointer, data.bias, data.multiplier, data.pad,
                          activation, &output, 1)
            activation = output
        }
        var pooled = [UInt8](repeating: 0, count: batch * net.lastChannels + extraBytes)
        qk_global_avgpool_u8(QK_PATH_SCALAR, Int32(batch), Int32(net.lastPixels), Int32(net.lastChannels), activation,
                             net.poolMultiplier, &pooled, 1)
        let packedFC = PackedWeights(byteCount: qk_fc_packed_size(QK_PATH_SCALAR, Int32(net.lastChannels), Int32(net.classes)))
        qk_fc_pack(QK_PATH_SCALAR, Int32(net.lastChannels), Int32(net.classes), net.fcWeight, packedFC.pointer)
        var logits = [Float](repeating: 0, count: batch * net.classes)
        qk_fc_u8(QK_PATH_SCALAR, Int32(batch), Int32(net.lastChannels), Int32(net.classes), packedFC.pointer, net.fcBias,
                 net.fcMultiplier, pooled, &logits, 1)
        return NetworkResult(pooled: Array(pooled.prefix(batch * net.lastChannels)), logits: logits.map(\.bitPattern))
    }

    /// Packed weights and the qk_network describing them for one path; `body` runs while the pointers live.
    func withNetwork<R>(_ net: NetworkCase, path: qk_path, depthFirstBytes: Int64 = 0,
                        _ body: (UnsafePointer<qk_network>) -> R) -> R? {
        var packedConvs: [PackedWeights] = []
        for (conv, data) in zip(net.convs, net.data) {
            var shape = conv.shape
            let size = qk_conv3x3_packed_size(path, &shape)
            if size == 0 { return nil }
            let packed = PackedWeights(byteCount: size)
            qk_conv3x3_pack(path, &shape, data.weights, packed.pointer)
            packedConvs.append(packed)
        }
        let packedFC = PackedWeights(byteCount: qk_fc_packed_size(path, Int32(net.lastChannels), Int32(net.classes)))
        qk_fc_pack(path, Int32(net.lastChannels), Int32(net.classes), net.fcWeight, packedFC.pointer)
        // Parameter arrays are copied into memory that outlives the whole call.
        let biases = net.data.map { data in Self.copy(data.bias) }
        let multipliers = net.data.map { data in Self.copy(data.multiplier) }
        let pads = net.data.map { data in Self.copy(data.pad) }
        let fcBias = Self.copy(net.fcBias), fcMultiplier = Self.copy(net.fcMultiplier)
        defer {
            for pointer in biases { pointer.deallocate() }
            for pointer in multipliers { pointer.deallocate() }
            for pointer in pads { pointer.deallocate() }
            fcBias.deallocate()
            fcMultiplier.deallocate()
        }
        var convs = net.convs.indices.map { i in
            qk_network_conv(shape: net.convs[i].shape, packed: UnsafeRawPointer(packedConvs[i].pointer),
                            bias: UnsafePointer(biases[i]), multiplier: UnsafePointer(multipliers[i]),
                            pad_value: UnsafePointer(pads[i]))
        }
        return convs.withUnsafeMutableBufferPointer { table in
            var network = qk_network(conv_count: Int32(table.count), convs: UnsafePointer(table.baseAddress),
                                     pool_multiplier: net.poolMultiplier, classes: Int32(net.classes),
                                     fc_packed: UnsafeRawPointer(packedFC.pointer), fc_bias: UnsafePointer(fcBias),
                                     fc_multiplier: UnsafePointer(fcMultiplier), depth_first_bytes: depthFirstBytes)
            return withUnsafePointer(to: &network) { body($0) }
        }
    }

    static func copy<T>(_ values: [T]) -> UnsafeMutablePointer<T> {
        let pointer = UnsafeMutablePointer<T>.allocate(capacity: max(values.count, 1))
        pointer.initialize(from: values, count: values.count)
        return pointer
    }

    /// One qk_network_run with the images in `ping` (as the runtime does) or in a buffer of their own.
    /// Also reports whether every buffer's bytes past its payload survived.
    func runNetwork(_ network: UnsafePointer<qk_network>, _ net: NetworkCase, path: qk_path, images: [UInt8],
                    batch: Int, threads: Int32, inputInPing: Bool) -> (status: Int32, result: NetworkResult, fencesIntact: Bool) {
        // The contract's scratch size, and how far a run may write into it: to the batch's largest activation,
        // or, when threads run images alone (input not in ping, at least as many images as threads), to the
        // threads' slots of the largest activation plus slack, and to the rest of the images, if any, placed
        // after as many slots as there were images run alone.
        let scratchBytes = batch * (net.maxActivationBytes + extraBytes)
        let alone = !inputInPing && threads > 1 && batch >= Int(threads) ? batch - batch % Int(threads) : 0
        let slot = net.maxActivationBytes + extraBytes
        let activationBytes = alone == 0 ? batch * net.maxActivationBytes
            : alone == batch ? Int(threads) * slot - extraBytes : alone * slot + (batch - alone) * net.maxActivationBytes
        let fence: UInt8 = 0x5A
        var ping = [UInt8](repeating: fence, count: scratchBytes + extraBytes)
        var pong = ping
        var separateInput = images
        if inputInPing { ping.replaceSubrange(0..<images.count - extraBytes, with: images.prefix(images.count - extraBytes)) }
        let pooledCount = batch * net.lastChannels
        var pooled = [UInt8](repeating: fence, count: pooledCount + extraBytes)
        var status: Int32 = -2
        let logits = withGuardedOutput(UInt32.self, count: batch * net.classes) { output in
            output.withMemoryRebound(to: Float.self, capacity: batch * net.classes) { logits in
                ping.withUnsafeMutableBufferPointer { pingBuffer in
                    pong.withUnsafeMutableBufferPointer { pongBuffer in
                        separateInput.withUnsafeMutableBufferPointer { inputBuffer in
                            let input = inputInPing ? pingBuffer.baseAddress : inputBuffer.baseAddress
                            status = qk_network_run(path, network, Int32(batch), input, pingBuffer.baseAddress,
                                                    pongBuffer.baseAddress, &pooled, logits, threads)
                        }
                    }
                }
            }
        }
        // Only the slack after the largest activation may be read; nothing is written past an output.
        let fencesIntact = logits.guardsIntact && pooled[pooledCount...].allSatisfy { $0 == fence } &&
            pong[activationBytes...].allSatisfy { $0 == fence } && ping[activationBytes...].allSatisfy { $0 == fence }
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
                            XCTAssertEqual(run.status, 0, "\(label) refused: \(context)")
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
        print("network paths compared on this CPU: \(compared.sorted())")
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
                    let status = qk_network_run_timed(path, network, Int32(batch), images, &ping, &pong, &pooled, &logits,
                                                      threads, &clock)
                    let label = "\(pathName(path)) x\(threads)"
                    XCTAssertEqual(status, 0, label)
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
                        qk_testing_set_straggler(straggler, 3000)
                        _ = qk_testing_taken_over_items()
                        let run = runNetwork(network, net, path: path, images: images, batch: batch, threads: threads,
                                             inputInPing: true)
                        let takenOver = qk_testing_taken_over_items()
                        qk_testing_set_straggler(-1, 0)
                        let label = "\(pathName(path)) x\(threads) member \(straggler) late"
                        XCTAssertEqual(run.status, 0, label)
                        XCTAssertTrue(run.fencesIntact, label)
                        XCTAssertTrue(run.result.pooled == expected.pooled, "\(label): pooled differ")
                        XCTAssertTrue(run.result.logits == expected.logits, "\(label): logits differ")
                        // The blocked paths claim items; the scalar oracle keeps its static split.
                        if path != QK_PATH_SCALAR {
                            XCTAssertGreaterThan(takenOver, 0, "\(label): nothing was taken over")
                        }
                    }
                }
            }
            XCTAssertNotNil(checked)
            if path != QK_PATH_SCALAR { blockedPaths += 1 }
        }
        XCTAssertGreaterThan(blockedPaths, 0, "no SIMD path on this CPU to exercise")
    }

    /// Refused networks compute nothing: the logits keep their fence pattern.
    func testInvalidNetworksAreRefused() {
        var rng = SeededGenerator(seed: Self.baseSeed &+ 100)
        let net = NetworkCase.random(inH: 6, inW: 6, layers: [(8, 2, 1), (12, 1, 1)], classes: 4, &rng)
        let images = withGarbageSlack(rng.bytes(net.imageBytes), &rng)
        let path = qk_best_path()
        let refusedBy: [(String, (inout qk_network, inout [qk_network_conv]) -> Void)] = [
            ("no layers", { network, _ in network.conv_count = 0 }),
            ("broken channel chain", { _, convs in convs[1].shape.in_c = 9 }),
            ("broken size chain", { _, convs in convs[1].shape.in_h = 6 }),
            ("invalid groups", { _, convs in convs[1].shape.groups = 5 }),
            ("no fc weights", { network, _ in network.fc_packed = nil }),
            ("no bias", { _, convs in convs[0].bias = nil }),
            ("zero classes", { network, _ in network.classes = 0 }),
        ]
        let result: Void? = withNetwork(net, path: path) { valid in
            XCTAssertEqual(runNetwork(valid, net, path: path, images: images, batch: 1, threads: 2, inputInPing: true).status, 0)
            for (name, breakIt) in refusedBy {
                var network = valid.pointee
                var convs = Array(UnsafeBufferPointer(start: network.convs, count: Int(network.conv_count)))
                breakIt(&network, &convs)
                convs.withUnsafeBufferPointer { table in
                    network.convs = table.baseAddress
                    let run = withUnsafePointer(to: &network) {
                        runNetwork($0, net, path: path, images: images, batch: 1, threads: 2, inputInPing: true)
                    }
                    XCTAssertEqual(run.status, -1, "\(name) accepted")
                    XCTAssertTrue(run.result.logits.allSatisfy { $0 == 0xA5A5_A5A5 }, "\(name) wrote logits")
                }
            }
            var ping = [UInt8](repeating: 0, count: net.maxActivationBytes + extraBytes), pong = ping  // batch 1
            var pooled = [UInt8](repeating: 0, count: net.lastChannels + extraBytes)
            var logits = [Float](repeating: 0, count: net.classes)
            XCTAssertEqual(qk_network_run(path, valid, 0, images, &ping, &pong, &pooled, &logits, 1), -1, "batch 0 accepted")
            XCTAssertEqual(qk_network_run(path, nil, 1, images, &ping, &pong, &pooled, &logits, 1), -1,
                           "NULL network accepted")
            XCTAssertEqual(qk_network_run(path, valid, 1, images, &ping, nil, &pooled, &logits, 1), -1, "NULL pong accepted")
            XCTAssertTrue(logits.allSatisfy { $0 == 0 }, "a refused run wrote logits")
        }
        XCTAssertNotNil(result)
    }
}

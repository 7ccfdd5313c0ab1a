import Foundation
import RepVGGArchitectures
import CQARepKernels
import XCTest
@testable import QARep

/// An independent model of docs/model-format.md's arithmetic in double precision: no kernels, no derived
/// quantities from the runtime. Each layer is fed the engine's previous activation, so a disagreement points
/// at one layer instead of compounding.
enum ReferenceModel {
    static func conv(_ model: QuantizedModelDescription, layer index: Int, input: [UInt8], batch: Int,
                     height: Int, width: Int) -> (output: [Double], height: Int, width: Int) {
        let layer = model.convs[index]
        let inScale = index == 0 ? Double(model.inputScale) : Double(model.convs[index - 1].outputScale)
        let outH = (height - 1) / layer.stride + 1, outW = (width - 1) / layer.stride + 1
        let inPG = layer.inChannels / layer.groups, outPG = layer.outChannels / layer.groups
        var out = [Double](repeating: 0, count: batch * outH * outW * layer.outChannels)
        for n in 0..<batch {
            for oy in 0..<outH {
                for ox in 0..<outW {
                    for o in 0..<layer.outChannels {
                        let g = o / outPG
                        var acc: Double = 0  // real value, dequantized
                        for c in 0..<inPG {
                            let channel = g * inPG + c
                            let zeroPoint = index == 0 ? Double(model.inputZeroPoint[channel]) : 0
                            for ky in 0..<3 {
                                for kx in 0..<3 {
                                    let iy = oy * layer.stride + ky - 1, ix = ox * layer.stride + kx - 1
                                    let x: Double
                                    if iy >= 0 && iy < height && ix >= 0 && ix < width {
                                        x = Double(input[((n * height + iy) * width + ix) * layer.inChannels + channel])
                                    } else {
                                        x = zeroPoint
                                    }
                                    let w = Double(layer.weight[((o * inPG + c) * 3 + ky) * 3 + kx])
                                    acc += (x - zeroPoint) * inScale * w * Double(layer.weightScale[o])
                                }
                            }
                        }
                        acc += Double(layer.bias[o]) * inScale * Double(layer.weightScale[o])
                        out[((n * outH + oy) * outW + ox) * layer.outChannels + o] = min(max(acc / Double(layer.outputScale), 0), 255)
                    }
                }
            }
        }
        return (out, outH, outW)
    }

    static func pool(_ model: QuantizedModelDescription, input: [UInt8], batch: Int, pixels: Int) -> [Double] {
        let channels = model.convs[model.convs.count - 1].outChannels
        let scale = Double(model.convs[model.convs.count - 1].outputScale)
        var out = [Double](repeating: 0, count: batch * channels)
        for n in 0..<batch {
            for c in 0..<channels {
                var sum: Double = 0
                for p in 0..<pixels { sum += Double(input[(n * pixels + p) * channels + c]) * scale }
                out[n * channels + c] = min(max(sum / Double(pixels) / Double(model.poolOutputScale), 0), 255)
            }
        }
        return out
    }

    static func fc(_ model: QuantizedModelDescription, input: [UInt8], batch: Int) -> [Double] {
        let channels = model.convs[model.convs.count - 1].outChannels
        var out: [Double] = []
        for n in 0..<batch {
            for k in 0..<model.numClasses {
                let ws = Double(model.fcWeightScale[k]), xs = Double(model.poolOutputScale)
                var acc = Double(model.fcBias[k]) * xs * ws
                for c in 0..<channels {
                    acc += Double(input[n * channels + c]) * xs * Double(model.fcWeight[k * channels + c]) * ws
                }
                out.append(acc)
            }
        }
        return out
    }
}

final class EngineTests: XCTestCase {
    func randomImages(_ model: QuantizedModelDescription, batch: Int, seed: UInt64) -> [UInt8] {
        var rng = SeededGenerator(seed: seed)
        return rng.bytes(batch * model.inputHeight * model.inputWidth * 3)
    }

    func checkAgainstReference(_ description: QuantizedModelDescription, batch: Int, kernel: Kernel) throws {
        let model = try Model(description: description)
        let session = try Session(model: model, threads: 1, maxBatch: batch, kernel: kernel)
        let images = randomImages(description, batch: batch, seed: 7)
        let (activations, logits) = try session.capturingActivations(images: images, batch: batch)
        XCTAssertEqual(activations.count, description.convs.count + 1)
        var input = images, height = description.inputHeight, width = description.inputWidth
        var interior = 0
        for i in 0..<description.convs.count {
            let (expected, h, w) = ReferenceModel.conv(description, layer: i, input: input, batch: batch, height: height, width: width)
            XCTAssertEqual(activations[i].count, expected.count)
            for (j, (got, want)) in zip(activations[i], expected).enumerated() {
                if want > 0.5 && want < 254.5 { interior += 1 }
                if abs(Double(got) - want) > 1 {
                    XCTFail("layer \(i) element \(j): engine \(got), reference \(want)")
                    return
                }
            }
            input = activations[i]; height = h; width = w
        }
        // Most activations must sit strictly inside the clamp range, or the comparison would prove little.
        XCTAssertGreaterThan(interior, activations.dropLast().map(\.count).reduce(0, +) / 3)
        let pooled = ReferenceModel.pool(description, input: input, batch: batch, pixels: height * width)
        for (got, want) in zip(activations[description.convs.count], pooled) {
            XCTAssertLessThanOrEqual(abs(Double(got) - want), 1)
        }
        let expectedLogits = ReferenceModel.fc(description, input: activations[description.convs.count], batch: batch)
        for (got, want) in zip(logits, expectedLogits) {
            XCTAssertEqual(Double(got), want, accuracy: 1e-5 * max(1, abs(want)))
        }
    }

    func testMatchesIndependentReferenceOnEveryKernel() throws {
        for kernel in Kernel.all where kernel.isSupported {
            try checkAgainstReference(smallModel(), batch: 2, kernel: kernel)
            try checkAgainstReference(makeRandomModel(seed: 3, height: 12, width: 7,
                                                      layers: [LayerSpec(out: 24, stride: 1), LayerSpec(out: 32, stride: 2, groups: 4),
                                                               LayerSpec(out: 64, stride: 2), LayerSpec(out: 40, stride: 1, groups: 8)],
                                                      numClasses: 17), batch: 3, kernel: kernel)
        }
    }

    static func a0Layers(grouped: Bool) -> [LayerSpec] {
        var layers: [LayerSpec] = []
        for (width, blocks) in [(48, 1), (48, 2), (96, 4), (192, 14), (1280, 1)] {
            for b in 0..<blocks {
                // RepVGG-A0-g4 style: every second layer inside a stage is grouped.
                let groups = grouped && b % 2 == 1 ? 4 : 1
                layers.append(LayerSpec(out: width, stride: b == 0 ? 2 : 1, groups: groups))
            }
        }
        return layers
    }

    /// RepVGG-B0's layers: stem, then 4, 6, 16 and 1 blocks of 64, 128, 256 and 1280 channels.
    static func b0Layers() -> [LayerSpec] {
        var layers: [LayerSpec] = []
        for (width, blocks) in [(64, 1), (64, 4), (128, 6), (256, 16), (1280, 1)] {
            for b in 0..<blocks { layers.append(LayerSpec(out: width, stride: b == 0 ? 2 : 1)) }
        }
        return layers
    }

    /// Every kernel at 1 and 2 threads gives the scalar path's activations and logits, bit for bit; returns
    /// how many layers the int16 paths run with Winograd.
    @discardableResult
    func checkIdenticalAcrossKernels(_ description: QuantizedModelDescription, layers: Int) throws -> Int {
        let model = try Model(description: description)
        XCTAssertEqual(model.numConvLayers, layers)
        let images = randomImages(description, batch: 2, seed: 5)
        let reference = try Session(model: model, threads: 1, maxBatch: 2, kernel: .scalar)
            .capturingActivations(images: images, batch: 2)
        XCTAssertGreaterThan(Set(reference.logits).count, 5, "degenerate network: logits barely vary")
        var winogradLayers = 0
        for kernel in Kernel.all where kernel.isSupported {
            var path = QK_PATH_SCALAR
            if qk_path_from_name(kernel.name, &path) == QK_OK {
                let chosen = model.layers.filter { layer in
                    var shape = qk_conv_shape(in_h: Int32(layer.inputHeight), in_w: Int32(layer.inputWidth),
                                              in_c: Int32(layer.inputChannels), out_c: Int32(layer.outputChannels),
                                              stride: Int32(layer.stride), groups: Int32(layer.groups))
                    return layer.kind == .conv3x3 && qk_conv3x3_algorithm(path, &shape).map { String(cString: $0) }?.hasPrefix("winograd") == true
                }.count
                winogradLayers = max(winogradLayers, chosen)
            }
            for threads in [1, 2] {
                let session = try Session(model: model, threads: threads, maxBatch: 2, kernel: kernel)
                let result = try session.capturingActivations(images: images, batch: 2)
                XCTAssertEqual(result.activations, reference.activations, "\(kernel) threads \(threads)")
                XCTAssertEqual(result.logits.map(\.bitPattern), reference.logits.map(\.bitPattern), "\(kernel) threads \(threads)")
                // A batch of one gives the same answer as the same image inside a batch.
                let single = try session.run(images: Array(images[0..<model.imageBytes]), batch: 1)
                XCTAssertEqual(single, Array(reference.logits[0..<10]))
            }
        }
        return winogradLayers
    }

    func testA0ShapedNetworkIdenticalAcrossKernelsAndThreads() throws {
        for grouped in [false, true] {
            let description = makeRandomModel(seed: grouped ? 11 : 10, height: 64, width: 64,
                                              layers: Self.a0Layers(grouped: grouped), numClasses: 10)
            try checkIdenticalAcrossKernels(description, layers: 22)
        }
    }

    /// B0 with its stride-1 layers on Winograd where the CPU has an int16 path (the A0 test covers groups).
    func testB0ShapedNetworkIdenticalAcrossKernelsAndThreads() throws {
        let description = makeRandomModel(seed: 12, height: 64, width: 64, layers: Self.b0Layers(), numClasses: 10,
                                          fixedScales: true)
        let winograd = try checkIdenticalAcrossKernels(description, layers: 28)
        if Kernel.all.contains(where: { $0.isSupported && ["avx2", "avx512bw", "neon"].contains($0.name) }) {
            // At least the 8 stride-1 layers of 16x16 and 8x8; avx2 runs the 4x4 ones directly, where each
            // image's 4 tiles would stream the transformed weights (the cost model's streaming term).
            XCTAssertGreaterThanOrEqual(winograd, 8, "the stride-1 layers should run Winograd")
        }
        print("B0-shaped network: \(winograd) layers on Winograd")
    }

    func testFloatInputMatchesPixels() throws {
        let description = smallModel()
        let model = try Model(description: description)
        let session = try Session(model: model, threads: 1, maxBatch: 2, kernel: .scalar)
        let images = randomImages(description, batch: 2, seed: 9)
        let plane = model.inputHeight * model.inputWidth
        var normalized = [Float](repeating: 0, count: 2 * 3 * plane)
        let mean = description.preprocessing.mean, std = description.preprocessing.std
        for n in 0..<2 {
            for p in 0..<plane {
                for c in 0..<3 {
                    normalized[(n * 3 + c) * plane + p] = (Float(images[(n * plane + p) * 3 + c]) / 255 - mean[c]) / std[c]
                }
            }
        }
        XCTAssertEqual(try session.run(normalized: normalized, batch: 2), try session.run(images: images, batch: 2))
        XCTAssertThrowsError(try session.run(normalized: Array(normalized.dropLast()), batch: 2)) {
            XCTAssertEqual(($0 as? QARepError)?.code, .bufferSize)
        }
    }

    func testTopK() throws {
        let predictions = topKPredictions(logits: [1, 3, 3, -2, 1000], k: 3, labels: ["a", "b", "c", "d", "e"])
        XCTAssertEqual(predictions.map(\.classIndex), [4, 1, 2])
        XCTAssertEqual(predictions[0].probability, 1, accuracy: 1e-6)
        let even = topKPredictions(logits: [0, 0, 0, 0], k: 10, labels: ["a", "b", "c", "d"])
        XCTAssertEqual(even.map(\.classIndex), [0, 1, 2, 3])
        XCTAssertEqual(even.map(\.probability), [0.25, 0.25, 0.25, 0.25])

        let model = try Model(description: smallModel())
        let session = try Session(model: model, threads: 1, maxBatch: 2, kernel: .scalar)
        XCTAssertThrowsError(try session.topK(imageIndex: 0, k: 1)) { XCTAssertEqual(($0 as? QARepError)?.code, .noResult) }
        let result = try session.classify(images: randomImages(model.description, batch: 2, seed: 1), batch: 2, topK: 3)
        XCTAssertEqual(result.count, 2)
        XCTAssertEqual(result[0].count, 3)
        XCTAssertGreaterThanOrEqual(result[0][0].probability, result[0][1].probability)
        XCTAssertEqual(result[0][0].label, model.labels[result[0][0].classIndex])
        XCTAssertThrowsError(try session.topK(imageIndex: 2, k: 1)) { XCTAssertEqual(($0 as? QARepError)?.code, .invalidArgument) }
        XCTAssertThrowsError(try session.topK(imageIndex: 0, k: 0)) { XCTAssertEqual(($0 as? QARepError)?.code, .invalidArgument) }
    }

    /// The Swift side of the workspace limit: reported bytes, and the limit checked before allocation.
    func testWorkspaceLimit() throws {
        let model = try Model(description: smallModel())
        let bytes = try Session(model: model, threads: 1, maxBatch: 3).workspaceBytes
        XCTAssertEqual(try Session(model: model, threads: 1, maxBatch: 3, maxWorkspaceBytes: bytes).workspaceBytes, bytes)
        XCTAssertThrowsError(try Session(model: model, threads: 1, maxBatch: 3, maxWorkspaceBytes: bytes - 1)) { error in
            XCTAssertEqual((error as? QARepError)?.code, .outOfMemory)
        }
        XCTAssertThrowsError(try Session(model: model, maxWorkspaceBytes: -1)) { error in
            XCTAssertEqual((error as? QARepError)?.code, .invalidArgument)
        }
    }

    func testSessionArgumentChecks() throws {
        let model = try Model(description: smallModel())
        XCTAssertThrowsError(try Session(model: model, maxBatch: 0)) { XCTAssertEqual(($0 as? QARepError)?.code, .invalidArgument) }
        XCTAssertThrowsError(try Session(model: model, threads: -1)) { XCTAssertEqual(($0 as? QARepError)?.code, .invalidArgument) }
        let session = try Session(model: model, threads: 0, maxBatch: 2)
        XCTAssertGreaterThanOrEqual(session.threads, 1)
        XCTAssertNotEqual(session.kernel, .auto)
        let image = [UInt8](repeating: 0, count: model.imageBytes)
        XCTAssertThrowsError(try session.run(images: image, batch: 3)) { XCTAssertEqual(($0 as? QARepError)?.code, .invalidArgument) }
        XCTAssertThrowsError(try session.run(images: image, batch: 2)) { XCTAssertEqual(($0 as? QARepError)?.code, .bufferSize) }
        for kernel in Kernel.all where !kernel.isSupported {
            XCTAssertThrowsError(try Session(model: model, kernel: kernel)) { XCTAssertEqual(($0 as? QARepError)?.code, .unsupportedKernel) }
        }
        let profiled = try session.runProfiled(images: image, batch: 1)
        XCTAssertEqual(profiled.layerSeconds.count, model.layers.count)
        XCTAssertEqual(model.layers.map(\.macs).reduce(0, +), Int(model.macsPerImage))
    }

    /// Arrays, spans, arrays of images and raw buffers are the same run.
    func testEveryInputFormGivesTheSameLogits() throws {
        let description = smallModel()
        let model = try Model(description: description)
        let session = try Session(model: model, threads: 1, maxBatch: 2)
        let images = randomImages(description, batch: 2, seed: 9)
        let expected = try session.run(images: images, batch: 2)
        XCTAssertEqual(try session.run(images: images.span, batch: 2), expected)
        let split = [Array(images[0..<model.imageBytes]), Array(images[model.imageBytes...])]
        XCTAssertEqual(try session.run(images: split), expected)
        XCTAssertEqual(try images.withUnsafeBufferPointer { try session.run(unsafeImages: $0, batch: 2) }, expected)
        XCTAssertEqual(try session.classify(images: split, topK: 2), try session.classify(images: images, batch: 2, topK: 2))
        XCTAssertThrowsError(try session.run(images: [split[0], [1, 2, 3]])) { XCTAssertEqual(($0 as? QARepError)?.code, .bufferSize) }
        // Preprocessing from an array, with and without an explicit row stride, and from a span.
        var rng = SeededGenerator(seed: 4)
        let photo = rng.bytes(20 * 15 * 3)
        let packed = try model.preprocess(rgb: photo, width: 20, height: 15)
        XCTAssertEqual(packed.count, model.imageBytes)
        XCTAssertEqual(try model.preprocess(rgb: photo, width: 20, height: 15, rowStride: 60), packed)
        XCTAssertEqual(try model.preprocess(rgb: photo.span, width: 20, height: 15), packed)
        XCTAssertThrowsError(try model.preprocess(rgb: photo, width: 21, height: 15)) { XCTAssertEqual(($0 as? QARepError)?.code, .bufferSize) }
    }

    /// One session used from several threads at once (a misuse): every run either gives the right logits or
    /// is refused with invalidArgument, never a mix of two runs' buffers.
    func testOverlappingRunsOnOneSessionAreRefusedNotMixed() throws {
        let description = makeRandomModel(seed: 23, height: 96, width: 96,
                                          layers: [LayerSpec(out: 64, stride: 1), LayerSpec(out: 64, stride: 1)], numClasses: 5)
        let model = try Model(description: description)
        let session = try Session(model: model, threads: 1, maxBatch: 1)
        let images = (0..<4).map { randomImages(description, batch: 1, seed: UInt64(40 + $0)) }
        let expected = try images.map { try Session(model: model, threads: 1).run(images: $0, batch: 1) }
        let outcomes = LockedList<String>()
        // Session is not Sendable, so Swift 6 refuses this sharing at compile time; the run-time check is for
        // callers who get around it (C callers, unchecked code).
        nonisolated(unsafe) let shared = session
        DispatchQueue.concurrentPerform(iterations: 64) { i in
            let outcome: String
            do {
                outcome = try shared.run(images: images[i % 4], batch: 1) == expected[i % 4] ? "right" : "WRONG"
            } catch {
                outcome = (error as? QARepError)?.code == .invalidArgument ? "refused" : "\(error)"
            }
            outcomes.append(outcome)
        }
        let all = outcomes.all
        XCTAssertEqual(Set(all).subtracting(["right", "refused"]), [], "\(all)")
        XCTAssertTrue(all.contains("right"))
        print("overlapping runs on one session: \(all.filter { $0 == "right" }.count) right, \(all.filter { $0 == "refused" }.count) refused")
    }

    func testKernelEnvironmentVariable() throws {
        let model = try Model(description: smallModel())
        defer { unsetenv("QAREP_KERNEL") }
        setenv("QAREP_KERNEL", "scalar", 1)
        XCTAssertEqual(try Session(model: model, kernel: .auto).kernel, .scalar)
        setenv("QAREP_KERNEL", "fastest", 1)
        XCTAssertThrowsError(try Session(model: model, kernel: .auto)) { error in
            XCTAssertEqual((error as? QARepError)?.code, .invalidArgument)
            XCTAssertTrue("\(error)".contains("QAREP_KERNEL=\"fastest\""))
        }
        // An explicit kernel wins over the environment.
        XCTAssertEqual(try Session(model: model, kernel: .scalar).kernel, .scalar)
        for kernel in Kernel.all where !kernel.isSupported {
            setenv("QAREP_KERNEL", kernel.name, 1)
            XCTAssertThrowsError(try Session(model: model)) { XCTAssertEqual(($0 as? QARepError)?.code, .unsupportedKernel) }
        }
    }

    /// One model shared by sessions created and run concurrently: packing races must not corrupt anything.
    func testSharedModelAcrossThreads() throws {
        let description = makeRandomModel(seed: 21, height: 16, width: 16,
                                          layers: [LayerSpec(out: 16, stride: 2), LayerSpec(out: 32, stride: 2)], numClasses: 7)
        let model = try Model(description: description)
        let images = randomImages(description, batch: 1, seed: 2)
        let expected = try Session(model: try Model(description: description), threads: 1, kernel: .scalar).run(images: images, batch: 1)
        let kernels = Kernel.all.filter(\.isSupported)
        let results = LockedList<[Float]>()
        DispatchQueue.concurrentPerform(iterations: 8) { i in
            let logits = try? Session(model: model, threads: 1, kernel: kernels[i % kernels.count]).run(images: images, batch: 1)
            results.append(logits ?? [])
        }
        XCTAssertEqual(results.all, Array(repeating: expected, count: 8))
    }
}

/// What concurrent closures gather, behind an NSLock: a pthread mutex ThreadSanitizer sees. Under TSan,
/// Synchronization.Mutex (a bare futex on Linux) left the appends looking like a race (CI, 2026-12-03).
final class LockedList<Element>: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [Element] = []

    func append(_ item: Element) {
        lock.lock()
        items.append(item)
        lock.unlock()
    }

    var all: [Element] {
        lock.lock()
        defer { lock.unlock() }
        return items
    }
}

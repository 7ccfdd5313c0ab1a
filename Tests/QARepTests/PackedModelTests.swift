// A Model keeps its weights only packed for its default path: these tests check that nothing is lost on the
// way (description rebuilt exactly), that other paths are packed from it exactly, and that loading a file
// tensor by tensor accepts and rejects exactly what loading the same bytes from memory does.
import CQARepKernels
import Foundation
import RepVGGArchitectures
import XCTest
@testable import QARep

final class PackedModelTests: XCTestCase {
    /// The 3-channel dense stem, odd channel counts (partial chunks and blocks), groups, and more classes
    /// than one block holds.
    func descriptions() -> [QuantizedModelDescription] {
        [
            smallModel(),
            makeRandomModel(seed: 31, height: 13, width: 10,
                            layers: [LayerSpec(out: 18, stride: 2), LayerSpec(out: 36, stride: 1, groups: 2),
                                     LayerSpec(out: 51, stride: 2, groups: 3), LayerSpec(out: 70, stride: 1)],
                            numClasses: 37),
            makeRandomModel(seed: 32, height: 8, width: 8,
                            layers: [LayerSpec(out: 48, stride: 2), LayerSpec(out: 48, stride: 1, groups: 4)],
                            numClasses: 3),
        ]
    }

    func temporaryFile(_ bytes: [UInt8], _ name: String) throws -> String {
        let path = NSTemporaryDirectory() + "qarep-packed-\(getpid())-\(name).qarep"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// With every path as the default one (QAREP_KERNEL picks it), so every path's unpacking is exercised.
    func testDescriptionIsRebuiltExactlyFromPackedWeights() throws {
        defer { unsetenv("QAREP_KERNEL") }
        for kernel in Kernel.all where kernel.isSupported {
            setenv("QAREP_KERNEL", kernel.name, 1)
            for (i, description) in descriptions().enumerated() {
                let model = try Model(description: description)
                XCTAssertEqual(model.primary.path, kernel.path)
                XCTAssertEqual(try model.description, description, "\(kernel) model \(i)")
                let bytes = try description.serialized()
                XCTAssertEqual(try Model(bytes: bytes).description, description, "\(kernel) model \(i) from memory")
                let path = try temporaryFile(bytes, "\(i)")
                defer { unlink(path) }
                XCTAssertEqual(try Model(contentsOfFile: path).description, description, "\(kernel) model \(i) from a file")
            }
        }
    }

    /// Every other path is packed from the default path's weights; they must unpack to the original
    /// weights exactly (packing is a function of the weights, so the packed bytes are those of a direct pack).
    func testOtherPathsArePackedExactlyFromTheDefaultPath() throws {
        for description in descriptions() {
            let model = try Model(description: description)
            for kernel in Kernel.all where kernel.isSupported {
                let path = try XCTUnwrap(kernel.path)
                let packed = try model.network(for: kernel)
                XCTAssertEqual(packed.path, path)
                for (i, layer) in model.arithmetic.layers.enumerated() {
                    XCTAssertEqual(try packed.convWeight(i, layer: layer), description.convs[i].weight, "\(kernel) conv \(i)")
                }
                XCTAssertEqual(try packed.fcWeight(inChannels: model.arithmetic.fcInChannels, classes: model.numClasses),
                               description.fcWeight, "\(kernel) fc")
            }
        }
    }

    /// The model packs for what Kernel.auto resolves to, QAREP_KERNEL included, and an auto session shares
    /// that copy; an unusable QAREP_KERNEL still loads (the session reports it).
    func testDefaultPathFollowsKernelEnvironmentVariable() throws {
        defer { unsetenv("QAREP_KERNEL") }
        unsetenv("QAREP_KERNEL")
        let best = try Model(description: smallModel())
        XCTAssertEqual(best.primary.path, qk_best_path())
        XCTAssertTrue(try best.network(for: Kernel.auto.resolved()) === best.primary)

        setenv("QAREP_KERNEL", "scalar", 1)
        let scalar = try Model(description: smallModel())
        XCTAssertEqual(scalar.primary.path, QK_PATH_SCALAR)
        XCTAssertTrue(try scalar.network(for: Kernel.scalar) === scalar.primary)
        XCTAssertEqual(try scalar.description, smallModel())

        setenv("QAREP_KERNEL", "fastest", 1)
        let fallback = try Model(description: smallModel())
        XCTAssertEqual(fallback.primary.path, qk_best_path())
        XCTAssertThrowsError(try Session(model: fallback)) { XCTAssertEqual(($0 as? QARepError)?.code, .invalidArgument) }
    }

    /// Sessions on every path of one model give the same logits as a model packed for scalar from the start.
    func testSessionsOnEveryPathOfOneModelAgree() throws {
        for description in descriptions() {
            let model = try Model(description: description)
            var rng = SeededGenerator(seed: 3)
            let images = rng.bytes(2 * description.inputHeight * description.inputWidth * 3)
            var expected: [UInt32]? = nil
            for kernel in Kernel.all where kernel.isSupported {
                let logits = try Session(model: model, threads: 2, maxBatch: 2, kernel: kernel).run(images: images, batch: 2)
                if let expected { XCTAssertEqual(logits.map(\.bitPattern), expected, "\(kernel)") }
                expected = logits.map(\.bitPattern)
            }
        }
    }

    /// Layers large enough for the cost model to pick F(4x4,3x3), F(2x2,3x3) and stride 2 on the int16 paths.
    func winogradModel() -> QuantizedModelDescription {
        makeRandomModel(seed: 41, height: 24, width: 24,
                        layers: [LayerSpec(out: 32, stride: 1), LayerSpec(out: 64, stride: 1), LayerSpec(out: 64, stride: 1),
                                 LayerSpec(out: 96, stride: 2), LayerSpec(out: 96, stride: 1)],
                        numClasses: 10)
    }

    /// Each packing option gives the same logit bits on every path, runs no layer the way it rules out, holds
    /// no more packed weights than the option before it, unpacks to the same weights, and is kept by the
    /// copies sessions on other paths make.
    func testPackingOptionsKeepTheResultsAndGiveUpWinograd() throws {
        let description = winogradModel()
        let bytes = try description.serialized()
        var rng = SeededGenerator(seed: 5)
        let images = rng.bytes(2 * description.inputHeight * description.inputWidth * 3)
        let expected = try Session(model: Model(description: description), maxBatch: 2, kernel: .scalar)
            .run(images: images, batch: 2).map(\.bitPattern)
        var previousBytes = Int.max
        var algorithmsOfAuto: Set<String> = []
        let best = try Kernel.auto.resolved()
        for options: Model.PackingOptions in [[], .noWinograd4x4, .noWinograd, [.noWinograd4x4, .noWinograd]] {
            let model = try Model(bytes: bytes, packing: options)
            XCTAssertEqual(try model.description, description, "\(options)")
            XCTAssertLessThanOrEqual(model.packedWeightBytes, previousBytes, "\(options)")
            previousBytes = model.packedWeightBytes
            for kernel in Kernel.all where kernel.isSupported {
                let session = try Session(model: model, threads: 2, maxBatch: 2, kernel: kernel)
                XCTAssertEqual(try session.run(images: images, batch: 2).map(\.bitPattern), expected, "\(kernel) \(options)")
                let algorithms = Set(session.layers.compactMap(\.algorithm))
                if options.contains(.noWinograd) {
                    XCTAssertFalse(algorithms.contains { $0.hasPrefix("winograd") }, "\(kernel) \(options): \(algorithms)")
                } else if options.contains(.noWinograd4x4) {
                    XCTAssertFalse(algorithms.contains("winograd-4x4"), "\(kernel) \(options): \(algorithms)")
                    // On the default path, F(2x2,3x3) and stride 2 still run where Winograd ran without a limit.
                    if kernel == best, algorithmsOfAuto.contains(where: { $0.hasPrefix("winograd") }) {
                        XCTAssertTrue(algorithms.contains("winograd"), "\(kernel) \(options): \(algorithms)")
                    }
                } else if kernel == best {
                    algorithmsOfAuto = algorithms
                }
                XCTAssertEqual(session.layers.compactMap(\.packedWeightBytes).count, description.convs.count)
            }
        }
        // Where the best path has F(4x4,3x3) kernels the model is large enough to use them unasked.
        if let path = best.path, qk_testing_path_has_winograd_4x4(path) != 0 { XCTAssertTrue(algorithmsOfAuto.contains("winograd-4x4"), "\(best): \(algorithmsOfAuto)") }
        print("packing options compared on: \(Kernel.all.filter(\.isSupported).map(\.name)); default-path algorithms: \(algorithmsOfAuto.sorted())")
    }

    /// By default Winograd is given up, F(4x4,3x3) first, while the packed weights would take more than the
    /// machine's memory share; a smaller share of memory steps down further.
    func testWinogradUseStepsDownWhenMemoryIsShort() throws {
        let description = winogradModel()
        let path = qk_best_path()
        let model = try Model(description: description)
        var shapes = model.arithmetic.layers.map { $0.kernelShape }
        let classes = description.numClasses
        func size(_ use: qk_winograd_use) -> Int { qk_network_packed_size(path, use, Int32(shapes.count), &shapes, Int32(classes)) }
        let memory = try XCTUnwrap(Platform.physicalMemoryBytes())
        func use(_ options: Model.PackingOptions, share: Int) -> qk_winograd_use {
            PackedNetwork.winogradUse(path: path, shapes: shapes, classes: classes, options: options, memoryShare: share)
        }
        XCTAssertEqual(use([], share: 1), QK_WINOGRAD_USE_ANY)
        XCTAssertEqual(use(.noWinograd4x4, share: 1), QK_WINOGRAD_USE_NO_4X4)
        XCTAssertEqual(use(.noWinograd, share: 1), QK_WINOGRAD_USE_NONE)
        XCTAssertEqual(use([], share: memory), QK_WINOGRAD_USE_NONE, "1 byte of memory")
        XCTAssertEqual(model.primary.packedBytes, size(QK_WINOGRAD_USE_ANY))
        if size(QK_WINOGRAD_USE_ANY) > size(QK_WINOGRAD_USE_NO_4X4) {
            // A share whose bytes lie between the two sizes.
            XCTAssertEqual(use([], share: memory / size(QK_WINOGRAD_USE_NO_4X4)), QK_WINOGRAD_USE_NO_4X4)
        }
    }

    /// Reading a file at offsets must refuse and accept exactly what the in-memory loader does, with the same
    /// error: truncations and corruptions of every region (header length, header, each tensor). Only the
    /// codes are compared for truncations: when several tensors lie past the end, which one the message
    /// names follows the header dictionary's order, which varies even between two loads of the same bytes.
    func testFileLoaderMatchesMemoryLoader() throws {
        let valid = try smallModel().serialized()
        let step = max(1, valid.count / 150)
        var variants: [(bytes: [UInt8], sameMessage: Bool)] = []
        for position in stride(from: 0, to: valid.count, by: step) {
            variants.append((Array(valid.prefix(position)), false))
            var flipped = valid
            flipped[position] ^= 0x80
            variants.append((flipped, true))
        }
        let path = NSTemporaryDirectory() + "qarep-packed-\(getpid())-variant.qarep"
        defer { unlink(path) }
        var rejected = 0
        for (i, (bytes, sameMessage)) in variants.enumerated() {
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            func outcome(_ load: () throws -> Model) -> String {
                do {
                    return "loaded \(try load().description == QuantizedModelDescription(fileBytes: bytes))"
                } catch let error as QARepError {
                    return sameMessage ? "\(error.code): \(error.message)" : "\(error.code)"
                } catch {
                    return "unexpected \(error)"
                }
            }
            let fromMemory = outcome { try Model(bytes: bytes) }
            XCTAssertEqual(outcome { try Model(contentsOfFile: path) }, fromMemory, "variant \(i)")
            if !fromMemory.hasPrefix("loaded") { rejected += 1 }
            XCTAssertNotEqual(fromMemory, "loaded false", "variant \(i)")
        }
        XCTAssertGreaterThan(rejected, variants.count / 2)
    }
}

import QARep
import XCTest

/// IntegerLayers, the runtime's kernels one layer at a time for bias correction, against a whole-network
/// Session. The model makes the pool and the FC transparent: the last conv outputs 1x1, the pool multiplier is
/// 1, and the FC is 127 times the identity with multiplier about 1, so each logit is 127 times a pooled byte.
final class IntegerLayersTests: XCTestCase {
    private func transparentHeadModel(seed: UInt64) -> QuantizedModelDescription {
        var rng = CalibRandom(seed: seed)
        let plan = [(out: 32, stride: 2, groups: 1), (out: 96, stride: 1, groups: 2), (out: 96, stride: 2, groups: 1)]
        var convs: [QuantizedConvLayer] = []
        var channels = 3, inputScale: Float = 1.0 / 255
        for layer in plan {
            let inPerGroup = channels / layer.groups
            let weight = (0..<(layer.out * inPerGroup * 9)).map { _ in Int8(Int(rng.next() % 255) - 127) }
            let weightScale = (0..<layer.out).map { _ in Float(0.002 + 0.01 * rng.unit()) }
            let bias = (0..<layer.out).map { _ in Int32(Int(rng.next() % 60000) - 20000) }
            // Typical outputs of a few tens: away from both clamps, so the arithmetic is exercised.
            let multiplier = 40.0 / (Double(9 * inPerGroup).squareRoot() * 100 * 73)
            let outputScale = Float(Double(inputScale) * 0.007 / multiplier)
            convs.append(QuantizedConvLayer(inChannels: channels, outChannels: layer.out, stride: layer.stride,
                                            groups: layer.groups, weight: weight, weightScale: weightScale, bias: bias,
                                            outputScale: outputScale))
            channels = layer.out
            inputScale = outputScale
        }
        var fcWeight = [Int8](repeating: 0, count: channels * channels)
        for k in 0..<channels { fcWeight[k * channels + k] = 127 }
        return QuantizedModelDescription(
            inputHeight: 4, inputWidth: 4, preprocessing: Preprocessing(), inputScale: 1.0 / 255,
            inputZeroPoint: [124, 116, 104], convs: convs, poolOutputScale: inputScale, numClasses: channels,
            fcWeight: fcWeight, fcWeightScale: [Float](repeating: 1 / inputScale, count: channels),
            fcBias: [Int32](repeating: 0, count: channels), labels: (0..<channels).map { "c\($0)" }, extraMetadata: [:])
    }

    private func sessionPooled(_ description: QuantizedModelDescription, _ pixels: [UInt8], batch: Int) throws -> [UInt8] {
        let session = try Session(model: try Model(description: description), threads: 1, maxBatch: batch)
        return try session.run(images: pixels, batch: batch).map { UInt8((Double($0) / 127).rounded()) }
    }

    private func layersPooled(_ layers: IntegerLayers, biases: [[Int32]], _ pixels: [UInt8], batch: Int) throws -> [UInt8] {
        var activation = pixels
        for index in 0..<layers.convCount {
            activation = try layers.conv(index, bias: biases[index], input: activation, batch: batch)
        }
        return try layers.pool(activation, batch: batch)
    }

    /// `batch` random 4x4 RGB images.
    private func randomPixels(batch: Int, seed: UInt64) -> [UInt8] {
        var rng = CalibRandom(seed: seed)
        return (0..<(batch * 4 * 4 * 3)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
    }

    func testLayersGiveTheSessionsBytes() throws {
        let description = transparentHeadModel(seed: 81)
        let batch = 7
        let pixels = randomPixels(batch: batch, seed: 82)
        let layers = try IntegerLayers(description, threads: 2)
        XCTAssertEqual(layers.padValues(conv: 0), description.inputZeroPoint)
        XCTAssertEqual(layers.padValues(conv: 1), [UInt8](repeating: 0, count: 32))
        XCTAssertEqual(layers.outputSize(conv: 2).height, 1)
        let biases = (0..<layers.convCount).map { layers.accumulatorBias(conv: $0) }
        let pooled = try layersPooled(layers, biases: biases, pixels, batch: batch)
        XCTAssertEqual(pooled, try sessionPooled(description, pixels, batch: batch))
        XCTAssertGreaterThan(Set(pooled).count, 8, "the fixture must not saturate")
    }

    /// Changing B by some amount is changing the file's bias by the same amount (layer 0 included, where B
    /// holds the zero-point term): bias correction relies on it.
    func testAChangeOfTheAccumulatorBiasIsTheSameChangeOfTheFilesBias() throws {
        let description = transparentHeadModel(seed: 83)
        let batch = 3
        let pixels = randomPixels(batch: batch, seed: 84)
        let layers = try IntegerLayers(description, threads: 1)
        var biases = (0..<layers.convCount).map { layers.accumulatorBias(conv: $0) }
        var changed = description
        for (index, change) in [(0, Int32(-3000)), (2, Int32(1500))] {
            for channel in biases[index].indices {
                biases[index][channel] += change
                changed.convs[index].bias[channel] += change
            }
        }
        XCTAssertEqual(try layersPooled(layers, biases: biases, pixels, batch: batch),
                       try sessionPooled(changed, pixels, batch: batch))
    }

    func testMisfitArgumentsThrow() throws {
        let layers = try IntegerLayers(transparentHeadModel(seed: 85), threads: 1)
        let bias = layers.accumulatorBias(conv: 0)
        XCTAssertThrowsError(try layers.conv(0, bias: bias, input: [UInt8](repeating: 0, count: 47), batch: 1))
        XCTAssertThrowsError(try layers.conv(0, bias: Array(bias.dropLast()), input: [UInt8](repeating: 0, count: 48), batch: 1))
        XCTAssertThrowsError(try layers.conv(3, bias: bias, input: [UInt8](repeating: 0, count: 48), batch: 1))
        XCTAssertThrowsError(try layers.pool([1, 2], batch: 1))
        XCTAssertThrowsError(try IntegerLayers(transparentHeadModel(seed: 85), threads: 0))
    }
}

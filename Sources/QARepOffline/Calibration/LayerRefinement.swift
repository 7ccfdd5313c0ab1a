// Layer-by-layer refinement inside the bias correction's pass (BiasCorrection.swift walks the INT8 network one
// layer at a time on the runtime's kernels; this adds two steps to each layer, each seeing the real INT8 input
// that the already-refined layers before it produce):
// - weight rounding (GPTQ, Frantar et al. 2022; OBQ's column-by-column rounding): the layer's int8 weights are
//   rounded one input column at a time, each rounding error compensated on the columns not yet rounded through
//   the inverse of H = E[x x^T] of the layer's INT8 input, minimizing E|W x - Q x|^2 instead of |W - Q|^2;
// - clipping search: the layer's output threshold T minimizing the squared error of its uint8 output (given its
//   INT8 input, weights and corrected bias) against the FP32 network's output of the same layer, instead of an
//   error model of the FP32 activation alone (ncnn's and TensorRT's per-layer searches work on one layer's
//   FP32 distribution; this one sees the error the quantized layers before it leave).
import COpenBLAS
#if canImport(FoundationEssentials)
// FoundationEssentials, not Foundation: linked statically, Foundation's internationalization brings ICU's
// data (tens of MB) into the CLI. Glibc gives the math and stdio that Foundation re-exported.
import FoundationEssentials
import Glibc
#else
import Foundation
#endif
import QARep

public enum WeightRounding: String, Sendable, CaseIterable, Codable {
    /// Round half to even, each weight on its own.
    case nearest
    /// GPTQ: column by column, compensating each rounding error with the layer's input statistics.
    case gptq
}

/// Columns (output positions) of a layer's input that H is estimated from; bounds time, not tuned.
let roundingColumnBudget = 65536
/// Input pixels per FP32 / simulated chunk (8 images at 224x224, 400 at 32x32), so the im2col buffers stay small
/// and small inputs still make wide GEMMs.
let refinementChunkPixels = 8 * 224 * 224
/// Elements of a layer's output the clipping search evaluates (evenly strided beyond that).
let clippingSearchSamples = 1 << 18
/// Images the clipping search evaluates on: this many input pixels' worth (256 images at 32x32), at least
/// `clippingSearchMinimumImages`; bounds time, not tuned.
let clippingSearchPixels = 256 * 32 * 32
let clippingSearchMinimumImages = 8
/// Candidate thresholds of the clipping search: k/128 of the largest simulated output, k = 16...128, plus the
/// calibration method's own.
let clippingSearchSteps = 128

/// What the refinement did to one layer.
public struct LayerRefinementReport: Sendable, Codable, Equatable {
    /// Threshold from the calibration method, and the one the clipping search chose (equal without search).
    public var methodThreshold: Double
    public var chosenThreshold: Double
    /// Squared output error of the layer (against FP32, on the refinement images) with the method's threshold
    /// and with the chosen one; nil without search.
    public var methodOutputError: Double?
    public var chosenOutputError: Double?
    /// E|W x - Q x|^2 / E|W x|^2 of the layer's pre-activation on its INT8 input, with nearest rounding and with
    /// GPTQ's; nil without weight rounding.
    public var nearestRoundingError: Double?
    public var optimizedRoundingError: Double?
    /// Share of weights GPTQ rounded differently from nearest.
    public var changedWeights: Double?
}

final class LayerRefiner {
    let forward: FP32Forward
    let count: Int
    let rounding: WeightRounding
    let searchesThresholds: Bool
    let poolMaximum: Double
    private let workspace = FP32ForwardWorkspace()
    /// The FP32 network's current layer input on the refinement images, chunks of `chunkSize` images.
    private var fp32Input: [[Float]] = []
    private var fp32Output: [[Float]] = []
    var reports: [LayerRefinementReport] = []
    private var chunkSize = 1
    private var searchChunks: [(start: Int, count: Int)] = []

    init(forward: FP32Forward, data: CalibrationData, rounding: WeightRounding, searchesThresholds: Bool, poolMaximum: Double) {
        self.forward = forward
        count = data.count
        self.rounding = rounding
        self.searchesThresholds = searchesThresholds
        self.poolMaximum = poolMaximum
        reports = forward.network.convs.map { _ in LayerRefinementReport(methodThreshold: 0, chosenThreshold: 0) }
        chunkSize = max(1, refinementChunkPixels / (forward.network.inputHeight * forward.network.inputWidth))
        // The search needs a sample of each layer's outputs, not all of them: its images are bounded in pixels.
        let plane = forward.network.inputHeight * forward.network.inputWidth
        let searchImages = min(data.count, max(clippingSearchMinimumImages, clippingSearchPixels / plane))
        searchChunks = stride(from: 0, to: searchImages, by: chunkSize).map { ($0, min(chunkSize, searchImages - $0)) }
        if searchesThresholds {
            for (start, n) in searchChunks {
                fp32Input.append(data.pixels.withUnsafeBufferPointer {
                    forward.normalizedInput(UnsafeBufferPointer(rebasing: $0[(start * data.imageBytes)..<((start + n) * data.imageBytes)]), count: n)
                })
            }
        }
    }

    private var chunks: [(start: Int, count: Int)] {
        stride(from: 0, to: count, by: chunkSize).map { ($0, min(chunkSize, count - $0)) }
    }

    /// Channel-major floats of images [start, start + n) of an NHWC uint8 activation, minus the pad value (so that
    /// the zero padding of the float convolution reads what the kernel's border reads).
    private func centered(_ activation: [UInt8], start: Int, n: Int, channels: Int, plane: Int, pad: [UInt8]) -> [Float] {
        let bytes = plane * channels
        return channelMajor(activation[(start * bytes)..<((start + n) * bytes)], channels: channels, count: n, plane: plane) {
            channel, value in Float(Int(value) - Int(pad[channel]))
        }
    }

    // MARK: weight rounding

    /// Re-rounds conv `index`'s int8 weights with GPTQ on its INT8 input `activation` (NHWC, all images).
    func roundWeights(_ index: Int, description: inout QuantizedModelDescription, weights: [Float], activation: [UInt8],
                      pad: [UInt8]) {
        let conv = forward.network.convs[index]
        var layer = description.convs[index]
        let inPerGroup = conv.inChannels / conv.groups, outPerGroup = conv.outChannels / conv.groups
        let depth = inPerGroup * 9
        let (height, width) = forward.inputSize(conv: index)
        let outPlane = forward.layerHeights[index] * forward.layerWidths[index]
        let images = min(count, max(1, roundingColumnBudget / outPlane))
        let workers = calibrationWorkers()
        // H per group, from the first `images` images (the refinement images are already evenly spaced).
        var hessians = [[Float]](repeating: [Float](repeating: 0, count: depth * depth), count: conv.groups)
        var columnsSeen = 0
        for (start, n) in chunks where start < images {
            let input = centered(activation, start: start, n: n, channels: conv.inChannels, plane: height * width, pad: pad)
            let spatial = n * outPlane
            let columns = workspace.buffer(2, count: depth * spatial)
            input.withUnsafeBufferPointer { source in
                guard let base = source.baseAddress, let target = columns.baseAddress else { return }
                for group in 0..<conv.groups {
                    fillColumns(ColumnShape(channelOffset: group * inPerGroup, rows: depth, count: n, height: height,
                                            width: width, outHeight: forward.layerHeights[index],
                                            outWidth: forward.layerWidths[index], stride: conv.stride),
                                source: SendablePointer(base), target: SendableMutablePointer(target))
                    hessians[group].withUnsafeMutableBufferPointer {
                        guard let hessian = $0.baseAddress else { return }
                        addGram(target, rows: depth, columns: spatial, into: hessian, workers: workers)
                    }
                }
            }
            columnsSeen += spatial
        }
        guard columnsSeen > 0 else { return }
        var nearestError = 0.0, optimizedError = 0.0, signal = 0.0, changed = 0
        for group in 0..<conv.groups {
            // H = E[x x^T], both triangles: the factorization reads it reversed, the quadratic forms by rows.
            var h = [Float](repeating: 0, count: depth * depth)
            hessians[group].withUnsafeBufferPointer { upper in
                h.withUnsafeMutableBufferPointer {
                    guard let upperBase = upper.baseAddress, let hBase = $0.baseAddress else { return }
                    symmetricFromUpper(upperBase, size: depth, dividedBy: Float(columnsSeen), into: hBase, workers: workers)
                }
            }
            guard let inverse = h.withUnsafeBufferPointer({ hessian in
                hessian.baseAddress.flatMap { inverseCholeskyUpper($0, size: depth, workers: workers) }
            }) else { continue }
            // All of the group's rows, in int8 units (weight / scale), rounded by GPTQ (gptqRound).
            let rows = outPerGroup, first = group * outPerGroup
            var target = [Double](repeating: 0, count: rows * depth)
            for r in 0..<rows {
                let scale = Double(layer.weightScale[first + r])
                for j in 0..<depth { target[r * depth + j] = Double(weights[(first + r) * depth + j]) / scale }
            }
            let original = target
            var rounded = [Double](repeating: 0, count: rows * depth)
            inverse.withUnsafeBufferPointer { u in
                target.withUnsafeMutableBufferPointer { t in
                    rounded.withUnsafeMutableBufferPointer { q in
                        guard let uBase = u.baseAddress, let tBase = t.baseAddress, let qBase = q.baseAddress else { return }
                        gptqRound(tBase, into: qBase, rows: rows, depth: depth, inverse: uBase, workers: workers)
                    }
                }
            }
            let nearest = original.map { min(max($0.rounded(.toNearestOrEven), -Double(weightLevels)), Double(weightLevels)) }
            func forms(_ v: [Double]) -> [Double] {
                v.map(Float.init).withUnsafeBufferPointer { vectors in
                    h.withUnsafeBufferPointer { hessian in
                        guard let vBase = vectors.baseAddress, let hBase = hessian.baseAddress else { return [Double](repeating: 0, count: rows) }
                        return rowQuadraticForms(vBase, hBase, rows: rows, size: depth, workers: workers)
                    }
                }
            }
            let errorNearest = forms(zip(original, nearest).map { $0 - $1 })
            let errorOptimized = forms(zip(original, rounded).map { $0 - $1 })
            let energy = forms(original)
            for r in 0..<rows {
                let output = first + r, row = output * depth
                let scale2 = Double(layer.weightScale[output]) * Double(layer.weightScale[output])
                // Keep the new rounding only where it lowers this row's output error on the same statistics.
                let keeps = errorOptimized[r] < errorNearest[r]
                signal += energy[r] * scale2
                nearestError += errorNearest[r] * scale2
                optimizedError += min(errorOptimized[r], errorNearest[r]) * scale2
                let chosen = (0..<depth).map { Int8(keeps ? rounded[r * depth + $0] : nearest[r * depth + $0]) }
                for j in 0..<depth where chosen[j] != layer.weight[row + j] { changed += 1 }
                if index == 0 {
                    // Layer 0's file bias holds sum(w * zero point) beside B (docs/model-format.md); B stays.
                    var difference: Int64 = 0
                    for j in 0..<depth {
                        difference += (Int64(chosen[j]) - Int64(layer.weight[row + j])) * Int64(pad[group * inPerGroup + j / 9])
                    }
                    layer.bias[output] = Int32(clamping: Int64(layer.bias[output]) + difference)
                }
                for j in 0..<depth { layer.weight[row + j] = chosen[j] }
            }
        }
        description.convs[index] = layer
        reports[index].nearestRoundingError = signal > 0 ? nearestError / signal : 0
        reports[index].optimizedRoundingError = signal > 0 ? optimizedError / signal : 0
        reports[index].changedWeights = Double(changed) / Double(max(layer.weight.count, 1))
    }

    // MARK: clipping search

    /// The output threshold of conv `index` minimizing its uint8 output's squared error against FP32, given its
    /// INT8 input `activation`, int8 weights and (corrected) bias in `description`. Advances the FP32 reference.
    func chooseThreshold(_ index: Int, description: QuantizedModelDescription, inputScale: Float, activation: [UInt8],
                         pad: [UInt8], methodThreshold: Double) -> Double {
        let conv = forward.network.convs[index]
        let layer = description.convs[index]
        let (height, width) = forward.inputSize(conv: index)
        // The kernel's pre-activation, (acc + B) * input_scale * weight_scale, as a float convolution of the
        // centered input with the int8 weights and the file's bias (B + sum(w * pad)).
        var simulated = FusedConv(inChannels: conv.inChannels, outChannels: conv.outChannels, stride: conv.stride,
                                  groups: conv.groups, weight: layer.weight.map(Float.init), bias: [])
        let rowLength = conv.inChannels / conv.groups * 9
        var unit = [Float](repeating: 0, count: conv.outChannels)
        for output in 0..<conv.outChannels {
            unit[output] = Float(Double(inputScale) * Double(layer.weightScale[output]))
            for j in 0..<rowLength { simulated.weight[output * rowLength + j] *= unit[output] }
        }
        simulated.bias = (0..<conv.outChannels).map { Float(Double(layer.bias[$0]) * Double(unit[$0])) }
        var quantizedSide: [Float] = []
        var reference: [Float] = []
        fp32Output = []
        let total = (searchChunks.last.map { $0.start + $0.count } ?? 0) * conv.outChannels * forward.layerHeights[index] * forward.layerWidths[index]
        let step = max(1, total / clippingSearchSamples)
        var position = 0
        for (chunkIndex, (start, n)) in searchChunks.enumerated() {
            let input = centered(activation, start: start, n: n, channels: conv.inChannels, plane: height * width, pad: pad)
            let y = input.withUnsafeBufferPointer { forward.layer(index, conv: simulated, input: $0, count: n, workspace: workspace) }
            let z = fp32Input[chunkIndex].withUnsafeBufferPointer {
                forward.layer(index, conv: conv, input: $0, count: n, workspace: workspace)
            }
            // Every step-th element over the whole layer (chunks are consecutive in this count).
            var local = (step - position % step) % step
            while local < y.count {
                quantizedSide.append(y[local])
                reference.append(z[local])
                local += step
            }
            position += y.count
            fp32Output.append(z)
        }
        let highest = Double(quantizedSide.max() ?? 0)
        guard highest > 0 else { return methodThreshold }
        func error(_ threshold: Double) -> Double {
            let scale = Float(activationScale(threshold: threshold))
            var sum = 0.0
            for (y, z) in zip(quantizedSide, reference) {
                let q = min(max((y / scale).rounded(.toNearestOrEven), 0), 255) * scale
                sum += Double((q - z) * (q - z))
            }
            return sum * Double(step)
        }
        var best = methodThreshold, bestError = error(methodThreshold)
        reports[index].methodOutputError = bestError
        for k in (clippingSearchSteps / 8)...clippingSearchSteps {
            let candidate = highest * Double(k) / Double(clippingSearchSteps)
            let e = error(candidate)
            if e < bestError {
                bestError = e
                best = candidate
            }
        }
        reports[index].chosenOutputError = bestError
        return best
    }

    /// Moves the FP32 reference one layer on (its output becomes the next layer's input).
    func advance(_ index: Int) {
        guard searchesThresholds else { return }
        if fp32Output.count == fp32Input.count {
            fp32Input = fp32Output
        } else {
            fp32Input = fp32Input.enumerated().map { chunk, input in
                input.withUnsafeBufferPointer {
                    forward.layer(index, conv: forward.network.convs[index], input: $0, count: searchChunks[chunk].count, workspace: workspace)
                }
            }
        }
        fp32Output = []
    }
}

/// GPTQ's rounding of `target` (rows x depth, int8 units, overwritten) into `rounded`, U the upper Cholesky
/// factor of H^-1 (depth x depth): column j is rounded, and its rounding error, divided by U[j][j], is taken off
/// the later columns along U's row j. In blocks of columns (GPTQ's lazy batch updates): within a block the
/// updates are rank-1, the later columns receive the whole block's errors in one matrix product. Rows are
/// independent, so tiles of 16 rows (3-48 of a layer's 48-768 output channels) and of 512 later columns run on the
/// workers, all reading one block of U's rows while it is in cache; any fixed tiling gives the same bytes.
func gptqRound(_ target: UnsafeMutablePointer<Double>, into rounded: UnsafeMutablePointer<Double>, rows: Int, depth: Int,
               inverse u: UnsafePointer<Double>, workers: Int) {
    let columnBlock = 128
    let rowTiles = tiles(rows, 16)
    let targets = SendableMutablePointer(target), results = SendableMutablePointer(rounded), factor = SendablePointer(u)
    let errorBuffer = UnsafeMutablePointer<Double>.allocate(capacity: rows * columnBlock)
    defer { errorBuffer.deallocate() }
    let errors = SendableMutablePointer(errorBuffer)
    for start in stride(from: 0, to: depth, by: columnBlock) {
        let end = min(start + columnBlock, depth), width = end - start
        forEachTile(rowTiles.count, workers: workers) { item in
            let tile = rowTiles[item]
            let t = targets.base + tile.start * depth, q = results.base + tile.start * depth, e = errors.base + tile.start * width
            for j in start..<end {
                for r in 0..<tile.size {
                    let value = t[r * depth + j]
                    let level = min(max(value.rounded(.toNearestOrEven), -Double(weightLevels)), Double(weightLevels))
                    q[r * depth + j] = level
                    e[r * width + j - start] = (value - level) / factor.base[j * depth + j]
                }
                if j + 1 < end {
                    cblas_dger(CblasRowMajor, Int32(tile.size), Int32(end - j - 1), -1, e + (j - start), Int32(width),
                               factor.base + j * depth + j + 1, 1, t + j + 1, Int32(depth))
                }
            }
        }
        let columnTiles = tiles(depth - end, 512)
        // Consecutive items share their columns of U.
        forEachTile(rowTiles.count * columnTiles.count, workers: workers) { item in
            let tile = rowTiles[item % rowTiles.count], columns = columnTiles[item / rowTiles.count]
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(tile.size), Int32(columns.size), Int32(width), -1,
                        errors.base + tile.start * width, Int32(width), factor.base + start * depth + end + columns.start, Int32(depth),
                        1, targets.base + tile.start * depth + end + columns.start, Int32(depth))
        }
    }
}

/// The upper Cholesky factor U of H^-1 (H^-1 = U^T U), row-major, GPTQ's form, for H symmetric (both triangles)
/// n x n; H is damped by 1% of its mean diagonal (GPTQ's default), more if it is still not positive definite. nil
/// if that fails too. One factorization and one triangular inverse: with P the reversal of rows and columns and
/// P H P = L L^T, H^-1 = P L^-T L^-1 P = U^T U for U = P L^-1 P, which is upper since L^-1 is lower.
func inverseCholeskyUpper(_ h: UnsafePointer<Float>, size n: Int, workers: Int) -> [Double]? {
    var meanDiagonal = 0.0
    for i in 0..<n { meanDiagonal += Double(h[i * n + i]) }
    meanDiagonal /= Double(n)
    guard n > 0, meanDiagonal > 0, meanDiagonal.isFinite else { return nil }
    // Single precision: the damped H is well conditioned, and the factorizations are most of GPTQ's time.
    let a = UnsafeMutablePointer<Float>.allocate(capacity: n * n), x = UnsafeMutablePointer<Float>.allocate(capacity: n * n)
    defer {
        a.deallocate()
        x.deallocate()
    }
    var damping = 0.01
    for _ in 0..<4 {
        for i in 0..<n {
            let reversed = h + (n - 1 - i) * n + (n - 1)
            for j in 0...i { a[i * n + j] = reversed[-j] }
            // An input that was always zero has no say: make its column independent of the others.
            if a[i * n + i] <= 0 { a[i * n + i] = 1 }
            a[i * n + i] += Float(damping * meanDiagonal)
        }
        if choleskyLower(a, size: n, workers: workers) {
            lowerInverse(a, size: n, into: x, workers: workers)
            var result = [Double](repeating: 0, count: n * n)
            for i in 0..<n {
                let reversed = x + (n - 1 - i) * n + (n - 1)
                for j in i..<n { result[i * n + j] = Double(reversed[-j]) }
            }
            if result.allSatisfy(\.isFinite) { return result }
        }
        damping *= 10
    }
    return nil
}

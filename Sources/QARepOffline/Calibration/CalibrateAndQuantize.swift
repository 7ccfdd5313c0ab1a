// The offline pipeline after import: observe activations of the FP32 network on calibration images, choose
// scales, quantize, then check the INT8 model on the real runtime against FP32 on held-aside images.
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

public struct CalibrationOptions: Sendable {
    public var method: ActivationCalibrationMethod = .mse
    /// For `.percentile`: percentile of all activation values (zeros included) used as the threshold.
    public var percentile: Double = 99.99
    public var weightMethod: WeightCalibrationMethod = .maxabs
    /// Empirical bias correction after the scales are chosen (see BiasCorrection.swift), on at most
    /// `biasCorrectionPixelBudget` pixels' worth of the calibration images. On by default: it raised the
    /// INT8-vs-FP32 agreement for every method in docs/calibration.md's measurements.
    public var biasCorrection: Bool = true
    /// Cross-layer equalization of the FP32 network before calibration (CrossLayerEqualization.swift). On by
    /// default: with GPTQ rounding it took plain RepVGG from 96.17% to 98.42% agreement and left QARepVGG's
    /// within noise (docs/calibration.md).
    public var equalization: Bool = true
    /// How each layer's int8 weights are rounded (LayerRefinement.swift); `.gptq` runs on the bias correction's
    /// images. GPTQ by default: it raised agreement on both shared models (docs/calibration.md).
    public var weightRounding: WeightRounding = .gptq
    /// Per layer, the output threshold minimizing that layer's output error in the INT8 network (starting from and
    /// competing with `method`'s), on the bias correction's images. Off by default: after equalization and GPTQ it
    /// changed agreement by -0.01 and +0.09 points on the two shared models, and it costs calibration time.
    public var clippingSearch: Bool = false
    /// Use at most this many images (calibration + hold-out); nil: all.
    public var count: Int? = nil
    /// Fraction of the images held aside (never calibrated on) to compare INT8 with FP32; 0 skips the check.
    public var holdoutFraction: Double = 0.2
    /// Threads for the FP32 forward, GPTQ's linear algebra, the bias correction's INT8 layers and the runtime
    /// session; 0: all online CPUs. The model written is the same for every count.
    public var threads: Int = 0
    /// Passed to `CalibrationData.load` by callers that load through it.
    public var skipBadImages: Bool = false
    /// Images per FP32 forward batch.
    public var batchSize: Int = 8
    /// Written to the model's `producer` metadata.
    public var producer: String = "qarep calibrate"

    public init() {}
}

public struct CalibrationError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Indices held aside for the INT8-vs-FP32 check: every image whose position crosses a multiple of 1/fraction,
/// so the hold-out spreads over the whole (often class-sorted) set instead of being its last class.
func holdoutIndices(count: Int, fraction: Double) -> [Int] {
    guard fraction > 0, count > 1 else { return [] }
    let f = min(fraction, 0.9)
    return (0..<count).filter { index in
        (Double(index + 1) * f).rounded(.down) > (Double(index) * f).rounded(.down)
    }
}

/// Calibrates `network` on `calibration` and returns the quantized model (valid per docs/model-format.md: it is
/// loaded by the runtime before being returned) and a report. `progress(done, total)` counts work in images
/// through the FP32 forward: the observed images, then the bias correction's pass layer by layer at its
/// estimated cost (`correctionProgress`), then the hold-out images through the runtime.
public func calibrateAndQuantize(network: FusedNetwork, calibration: CalibrationData, options: CalibrationOptions,
                                 progress: ((Int, Int) -> Void)? = nil) throws -> (QuantizedModelDescription, CalibrationReport) {
    let result = try calibrate(network: network, calibration: calibration, options: options, progress: progress)
    return (result.description, result.report)
}

/// What calibration produced, with what the analysis needs beside the model and its report.
struct CalibrationResult {
    var description: QuantizedModelDescription
    var report: CalibrationReport
    /// The conv outputs' histograms (of `network`).
    var histograms: [ActivationHistogram]
    /// The network that was quantized: the input one, or its equalized form.
    var network: FusedNetwork
    var seconds: Double
}

func calibrate(network: FusedNetwork, calibration: CalibrationData, options: CalibrationOptions, cache: ObservationCache? = nil,
               progress: ((Int, Int) -> Void)? = nil) throws -> CalibrationResult {
    let callStarted = Date()
    guard calibration.inputHeight == network.inputHeight, calibration.inputWidth == network.inputWidth else {
        throw CalibrationError("calibration images are \(calibration.inputWidth)x\(calibration.inputHeight), the network input is \(network.inputWidth)x\(network.inputHeight)")
    }
    guard options.batchSize >= 1, options.threads >= 0, options.holdoutFraction >= 0, options.holdoutFraction < 1,
          options.percentile > 0, options.percentile <= 100 else {
        throw CalibrationError("invalid options: batch size >= 1, threads >= 0, hold-out fraction in [0, 1), percentile in (0, 100]")
    }
    var data = calibration
    if let limit = options.count {
        guard limit >= 1 else { throw CalibrationError("image count \(limit) must be at least 1") }
        if limit < data.count { data = try data.subset(evenlySpaced(Array(0..<data.count), count: limit)) }
    }
    let heldAside = holdoutIndices(count: data.count, fraction: options.holdoutFraction)
    let heldSet = Set(heldAside)
    let calibrationSet = try data.subset((0..<data.count).filter { !heldSet.contains($0) })
    let holdoutSet = try data.subset(heldAside)
    guard calibrationSet.count > 0 else { throw CalibrationError("no calibration images left after the hold-out") }
    let threads = options.threads == 0 ? ProcessInfo.processInfo.activeProcessorCount : options.threads
    // OpenBLAS's own threads wait for each other by spinning on sched_yield: on a loaded machine one descheduled
    // thread stalled GPTQ's ssyrk for minutes (docs/calibration.md, "Calibration time"). The FP32 forward threads
    // over its blocks itself; the rest of the BLAS work runs on the calling thread.
    openblas_set_num_threads(1)
    fp32ForwardThreads.store(threads, ordering: .relaxed)

    // Bias correction measures FP32 and INT8 means on the same images: an evenly spaced subset, observed first
    // so its FP32 means come out of the same pass that fills the histograms.
    let refines = options.weightRounding != .nearest || options.clippingSearch
    let correctionIndices = options.biasCorrection || refines || options.equalization
        ? evenlySpaced(Array(0..<calibrationSet.count),
                       count: max(1, biasCorrectionPixelBudget / (network.inputHeight * network.inputWidth)))
        : []
    let correctionSet = try calibrationSet.subset(correctionIndices)
    let correctionMembers = Set(correctionIndices)
    let remainingSet = try calibrationSet.subset((0..<calibrationSet.count).filter { !correctionMembers.contains($0) })
    // Progress in FP32-forward images, so that the CLI's rate and ETA hold from one pass to the next: a B3's
    // GPTQ pass on 32 images takes three times its first pass on 80.
    let correctionSteps = correctionSet.count > 0 && (options.biasCorrection || refines)
        ? correctionProgress(try FP32Forward(network: network), images: correctionSet.count,
                             gptq: options.weightRounding == .gptq)
        : [0]
    let correctionUnits = correctionSteps.last ?? 0
    let total = calibrationSet.count + correctionUnits + holdoutSet.count

    let started = Date()
    let key = "\(options.equalization) \(correctionSet.count) \(options.batchSize)"
    let observation: Observation
    if let cached = cache?.entries[key] {
        observation = cached
        progress?(calibrationSet.count, total)
    } else {
        observation = try observe(network: network, correctionSet: correctionSet, remainingSet: remainingSet,
                                  options: options) { progress?($0, total) }
        cache?.entries[key] = observation
    }
    let network = observation.network, histograms = observation.histograms, poolHistogram = observation.poolHistogram
    let fp32Means = observation.fp32Means, equalization = observation.equalization
    let forward = try FP32Forward(network: network)
    var thresholds = histograms.map { activationThreshold($0, method: options.method, percentile: options.percentile) }
    // The pooled vector averages the last layer's clipped uint8 values, so it never exceeds that layer's range.
    let poolThreshold = min(Double(poolHistogram.maxValue), thresholds[thresholds.count - 1])
    let calibrationSeconds = Date().timeIntervalSince(started)

    var settings = "method=\(options.method.rawValue)"
    if options.method == .percentile { settings += " percentile=\(options.percentile)" }
    if options.equalization { settings += " equalization" }
    if options.clippingSearch { settings += " clipping_search" }
    if options.weightRounding != .nearest { settings += " rounding=\(options.weightRounding.rawValue)" }
    settings += " weights=\(options.weightMethod.rawValue) images=\(calibrationSet.count)"
    if options.biasCorrection { settings += " bias_correction_images=\(correctionSet.count)" }
    var quantized = try quantizeNetwork(network, convThresholds: thresholds, poolThreshold: poolThreshold,
                                        weightMethod: options.weightMethod,
                                        metadata: ["producer": options.producer, "calibration": settings])
    let correctionStarted = Date()
    var biasShifts: [Double]? = nil
    var refinement: [LayerRefinementReport]? = nil
    if correctionSet.count > 0 && (options.biasCorrection || refines) {
        let refiner = refines ? LayerRefiner(forward: forward, data: correctionSet, rounding: options.weightRounding,
                                             searchesThresholds: options.clippingSearch,
                                             poolMaximum: Double(poolHistogram.maxValue)) : nil
        let correction = try correctBiases(&quantized.description, forward: forward, data: correctionSet,
                                           reference: fp32Means, threads: threads, refiner: refiner,
                                           correcting: options.biasCorrection, thresholds: &thresholds) { layersDone in
            progress?(calibrationSet.count + correctionSteps[min(layersDone, correctionSteps.count - 1)], total)
        }
        if options.biasCorrection { biasShifts = correction.shifts }
        refinement = refiner?.reports
        // Report each bias the accumulator bound clamped once, whether at export or after correction.
        for name in correction.clamped where !quantized.clampedBiases.contains(name) { quantized.clampedBiases.append(name) }
    }
    let correctionSeconds = Date().timeIntervalSince(correctionStarted)
    let model: Model
    do {
        model = try Model(description: quantized.description)
    } catch {
        throw CalibrationError("the quantized model does not pass the runtime's validation: \(error)")
    }

    var holdout: HoldoutReport? = nil
    let holdoutStarted = Date()
    if holdoutSet.count > 0 {
        holdout = try compareWithRuntime(model: model, forward: forward, data: holdoutSet, threads: threads,
                                         batchSize: options.batchSize) { done in
            progress?(calibrationSet.count + correctionUnits + done, total)
        }
    }
    var layers: [LayerReport] = []
    for (index, conv) in network.convs.enumerated() {
        layers.append(LayerReport(name: "conv.\(index)", inChannels: conv.inChannels, outChannels: conv.outChannels,
                                  stride: conv.stride, groups: conv.groups, weight: quantized.convWeightStatistics[index],
                                  activation: activationStatistics(histograms[index], threshold: thresholds[index]),
                                  biasCorrectionShift: biasShifts?[index]))
    }
    let report = CalibrationReport(
        method: options.method.rawValue, percentile: options.method == .percentile ? options.percentile : nil,
        weightMethod: options.weightMethod.rawValue, calibrationImages: calibrationSet.count,
        biasCorrectionImages: options.biasCorrection ? correctionSet.count : 0, fcBiasCorrectionShift: biasShifts?.last,
        skippedImages: calibration.skipped.map(\.description), layers: layers,
        pool: activationStatistics(poolHistogram, threshold: min(Double(poolHistogram.maxValue), thresholds[thresholds.count - 1])),
        fc: quantized.fcWeightStatistics, equalization: equalization, refinement: refinement,
        clampedBiases: quantized.clampedBiases, holdout: holdout, calibrationSeconds: calibrationSeconds,
        biasCorrectionSeconds: correctionSeconds,
        holdoutSeconds: Date().timeIntervalSince(holdoutStarted))
    return CalibrationResult(description: quantized.description, report: report, histograms: histograms, network: network,
                             seconds: Date().timeIntervalSince(callStarted))
}

/// Calls `body(pixels, count, imagesDoneAfterThisBatch)` for consecutive batches of at most `size` images.
func forEachBatch(_ data: CalibrationData, size: Int,
                  _ body: (UnsafeBufferPointer<UInt8>, Int, Int) throws -> Void) throws {
    let imageBytes = data.imageBytes
    var start = 0
    while start < data.count {
        let count = min(size, data.count - start)
        try data.pixels.withUnsafeBufferPointer { all in
            try body(UnsafeBufferPointer(rebasing: all[(start * imageBytes)..<((start + count) * imageBytes)]), count, start + count)
        }
        start += count
    }
}

/// INT8 logits from the runtime against FP32 logits on the same pixels.
func compareWithRuntime(model: Model, forward: FP32Forward, data: CalibrationData, threads: Int, batchSize: Int,
                        progress: (Int) -> Void) throws -> HoldoutReport {
    let session: Session
    do {
        session = try Session(model: model, threads: threads, maxBatch: batchSize)
    } catch {
        throw CalibrationError("cannot create a runtime session for the hold-out check: \(error)")
    }
    let classes = model.numClasses
    var agreeing = 0
    var cosineSum = 0.0, cosineMin = 1.0
    let workspace = FP32ForwardWorkspace()
    try forEachBatch(data, size: batchSize) { pixels, count, done in
        let reference = try forward.logits(pixels: pixels, count: count, workspace: workspace)
        let quantized: [Float]
        do {
            quantized = try session.run(unsafeImages: pixels, batch: count)
        } catch {
            throw CalibrationError("runtime failed on the hold-out images: \(error)")
        }
        for image in 0..<count {
            let a = reference[(image * classes)..<((image + 1) * classes)]
            let b = quantized[(image * classes)..<((image + 1) * classes)]
            if argmax(a) == argmax(b) { agreeing += 1 }
            let similarity = cosine(a, b)
            cosineSum += similarity
            cosineMin = min(cosineMin, similarity)
        }
        progress(done)
    }
    return HoldoutReport(images: data.count, top1Agreement: Double(agreeing) / Double(data.count),
                         meanLogitCosine: cosineSum / Double(data.count), minLogitCosine: cosineMin,
                         kernel: "\(session.kernel)")
}

/// Index of the first maximum (relative to the slice start).
func argmax(_ values: ArraySlice<Float>) -> Int {
    var best = values.startIndex
    for index in values.indices where values[index] > values[best] { best = index }
    return best - values.startIndex
}

func cosine(_ a: ArraySlice<Float>, _ b: ArraySlice<Float>) -> Double {
    var dot = 0.0, normA = 0.0, normB = 0.0
    for (x, y) in zip(a, b) {
        dot += Double(x) * Double(y)
        normA += Double(x) * Double(x)
        normB += Double(y) * Double(y)
    }
    guard normA > 0, normB > 0 else { return normA == normB ? 1 : 0 }
    return dot / (normA.squareRoot() * normB.squareRoot())
}

/// Expected squared quantization error of the histogram's positive values with clipping value `threshold`
/// (same model as the mse method: clipping error above T, step^2 / 12 below).
func expectedQuantizationError(_ histogram: ActivationHistogram, threshold: Double) -> Double {
    let step = threshold / Double(activationLevels - 1)
    var error = 0.0
    for index in 0..<histogram.occupiedBins where histogram.counts[index] > 0 {
        let x = histogram.center(index)
        error += x > threshold ? histogram.counts[index] * (x - threshold) * (x - threshold)
                               : histogram.counts[index] * step * step / 12
    }
    return error
}

func activationStatistics(_ histogram: ActivationHistogram, threshold: Double) -> ActivationStatistics {
    let total = max(histogram.totalCount, 1)
    let mean = histogram.sum / total
    let variance = max(histogram.sumOfSquares / total - mean * mean, 0)
    var clipped = 0.0
    for index in 0..<histogram.occupiedBins where histogram.center(index) > threshold { clipped += histogram.counts[index] }
    let noise = expectedQuantizationError(histogram, threshold: threshold)
    let sqnr = noise > 0 && histogram.sumOfSquares > 0 ? 10 * log10(histogram.sumOfSquares / noise) : 999
    return ActivationStatistics(max: histogram.maxValue, mean: mean, std: variance.squareRoot(),
                                zeroFraction: histogram.zeroCount / total, threshold: threshold,
                                scale: activationScale(threshold: threshold),
                                clippedFraction: histogram.positiveCount > 0 ? clipped / histogram.positiveCount : 0,
                                estimatedSQNR: sqnr)
}

/// The FP32 side of calibration, the same for every activation method: the (possibly equalized) network, the
/// activation histograms and the bias correction's FP32 means.
struct Observation {
    var network: FusedNetwork
    var equalization: [EqualizationScales]?
    var histograms: [ActivationHistogram]
    var poolHistogram: ActivationHistogram
    var fp32Means: FP32MeanStatistics
}

/// Observations shared between calibrations of the same network and images that differ only in the activation
/// method (the analysis calibrates once per method).
final class ObservationCache {
    var entries: [String: Observation] = [:]
}

private func observe(network: FusedNetwork, correctionSet: CalibrationData, remainingSet: CalibrationData,
                     options: CalibrationOptions, progress: (Int) -> Void) throws -> Observation {
    var network = network
    var equalization: [EqualizationScales]? = nil
    if options.equalization {
        // The per-channel ranges come from an extra FP32 pass over some of the correction images (a maximum per
        // channel needs few).
        var maxima = ChannelMaxima(network: network)
        let unequalized = try FP32Forward(network: network)
        let workspace = FP32ForwardWorkspace()
        let rangeImages = min(correctionSet.count, max(1, equalizationPixels / (network.inputHeight * network.inputWidth)))
        try forEachBatch(try correctionSet.subset(Array(0..<rangeImages)), size: options.batchSize) { pixels, count, _ in
            _ = try unequalized.logits(pixels: pixels, count: count, workspace: workspace) { site, values in
                maxima.observe(site, values)
            }
        }
        let result = equalizeCrossLayer(network, maxima: maxima)
        network = result.0
        equalization = result.1
    }
    let forward = try FP32Forward(network: network)

    // One pass: every conv output and the pooled vector go into an adaptive histogram.
    var histograms = [ActivationHistogram](repeating: ActivationHistogram(), count: network.convs.count)
    var poolHistogram = ActivationHistogram()
    var fp32Means = FP32MeanStatistics(forward: forward)
    let workspace = FP32ForwardWorkspace()
    for (set, gathersMeans, offset) in [(correctionSet, true, 0), (remainingSet, false, correctionSet.count)] where set.count > 0 {
        try forEachBatch(set, size: options.batchSize) { pixels, count, done in
            if gathersMeans { fp32Means.addInput(pixels: pixels, count: count) }
            _ = try forward.logits(pixels: pixels, count: count, workspace: workspace) { site, values in
                switch site {
                case .conv(let index): histograms[index].add(values)
                case .pool: poolHistogram.add(values)
                }
                if gathersMeans { fp32Means.observe(site, values, count: count) }
            }
            progress(offset + done)
        }
    }
    if let broken = histograms.firstIndex(where: { $0.nonFiniteCount > 0 }) {
        throw CalibrationError("conv \(broken) produced non-finite activations on the calibration images; the network weights are broken")
    }
    return Observation(network: network, equalization: equalization, histograms: histograms, poolHistogram: poolHistogram,
                       fp32Means: fp32Means)
}

/// The bias correction pass's progress after each conv layer (index 0: none done; the FC adds nothing), in
/// FP32-forward images of the whole network: the layer's work on `images` images, plus with GPTQ its algebra per
/// group (Gram matrix, factor and inverse, rounding in double, the three quadratic forms), which on B-size layers
/// outweighs the layer itself many times.
func correctionProgress(_ forward: FP32Forward, images: Int, gptq: Bool) -> [Int] {
    let convs = forward.network.convs
    var layerMACs: [Double] = []
    for (index, conv) in convs.enumerated() {
        let pixels = Double(forward.layerHeights[index] * forward.layerWidths[index])
        layerMACs.append(pixels * Double(conv.outChannels) * Double(conv.inChannels / conv.groups * 9))
    }
    let perImage = max(layerMACs.reduce(0, +), 1)
    var steps = [0], done = 0.0
    for (index, conv) in convs.enumerated() {
        var work = Double(images) * layerMACs[index]
        if gptq {
            let depth = Double(conv.inChannels / conv.groups * 9), rows = Double(conv.outChannels / conv.groups)
            let plane = forward.layerHeights[index] * forward.layerWidths[index]
            let columns = Double(min(images, max(1, roundingColumnBudget / plane)) * plane)
            work += Double(conv.groups) * (depth * depth * columns / 2 + depth * depth * depth / 3 + 5 * rows * depth * depth)
        }
        done += work / perImage
        steps.append(Int(done.rounded()))
    }
    steps.append(steps[steps.count - 1])
    return steps
}

// `qarep analyze`: why a checkpoint quantizes the way it does, per layer, in the terms of the QARepVGG paper:
// C1 (the fused weights' distribution and the branch BN gains behind it), C2 (the activations' distribution and
// each calibration method's threshold), each layer's sensitivity when it alone is INT8, and the error the fully
// INT8 network accumulates layer by layer. Every INT8 figure of the full network comes from the runtime's own
// kernels (Session, IntegerLayers); only the one-layer sensitivity simulates its layer in float (the rest of that
// network is FP32, which the runtime cannot run).
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

/// Images with their class indices (an ImageFolder set).
public struct LabelledImages: Sendable {
    public var data: CalibrationData
    public var labels: [Int]
    public init(data: CalibrationData, labels: [Int]) {
        self.data = data
        self.labels = labels
    }
}

public struct AnalysisOptions: Sendable {
    /// The configuration analyzed layer by layer (and written by `quantize` with the same options).
    public var calibration = CalibrationOptions()
    /// Methods compared side by side, each with `calibration`'s other settings.
    public var methods: [ActivationCalibrationMethod] = ActivationCalibrationMethod.allCases
    /// Also calibrate `calibration.method` with bias correction only (no equalization, search or rounding), to
    /// show what the refinements did.
    public var compareBaseline = true
    public init() {}
}

/// The fused weights of one layer (C1).
public struct WeightAnalysis: Sendable, Codable, Equatable {
    public var min: Float
    public var max: Float
    public var std: Double
    /// Excess kurtosis of all the layer's weights (0 for a Gaussian; outliers make it large).
    public var kurtosis: Double
    /// max |w| / std over the layer.
    public var maxOverStd: Double
    /// w / std at the 0, 1, 25, 50, 75, 99 and 100th percentiles (the box plot).
    public var quantiles: [Double]
    /// Per output channel, RMS(q) / 127 of the channel's int8 weights: how much of the int8 range its typical
    /// weight uses (a channel whose maximum is an outlier uses little).
    public var channelRangeShare: [Double]
    public var rangeShareMedian: Double
    public var rangeShareMin: Double
    public var rangeShareMinChannel: Int
    /// Per output channel max |w|.
    public var channelMaxAbs: [Float]
    /// Of the layer as quantized (after equalization and rounding), from `quantize`'s report.
    public var quantizationSQNR: Double
}

public struct BranchGainSummary: Sendable, Codable, Equatable {
    public var branch: String
    public var min: Double
    public var median: Double
    public var max: Double
}

public struct ThresholdChoice: Sendable, Codable, Equatable {
    /// A calibration method, or "search" for the clipping search's choice in the analyzed configuration.
    public var method: String
    public var threshold: Double
    /// Share of positive values above the threshold.
    public var clippedShare: Double
}

/// One activation (C2), as the analyzed configuration sees it (after equalization, when on).
public struct ActivationAnalysis: Sendable, Codable, Equatable {
    public var max: Double
    public var zeroShare: Double
    /// Counts of positive values in `histogram.count` equal bins over [0, max].
    public var histogram: [Double]
    public var thresholds: [ThresholdChoice]
    /// Threshold used by the analyzed configuration.
    public var threshold: Double
    /// Largest per-channel maximum over the median one, on the hold-out images.
    public var channelSpread: Double
    public var estimatedSQNR: Double
}

public struct LayerAnalysis: Sendable, Codable, Equatable {
    public var index: Int
    /// Block name in the checkpoint ("stage3.4"), or conv.N.
    public var name: String
    public var inChannels: Int
    public var outChannels: Int
    public var stride: Int
    public var groups: Int
    public var branches: [String]
    public var weights: WeightAnalysis
    public var branchGains: [BranchGainSummary]
    public var activation: ActivationAnalysis
    /// Logit SQNR (dB) and top-1 agreement with FP32 on the hold-out images when only this layer is INT8.
    public var sensitivitySQNR: Double
    public var sensitivityAgreement: Double
    /// SQNR (dB) of this layer's output in the fully INT8 network (runtime kernels) against FP32: the analyzed
    /// configuration, and the baseline (nil without one).
    public var cumulativeSQNR: Double
    public var baselineCumulativeSQNR: Double?
    public var biasCorrectionShift: Double?
    public var equalization: EqualizationScales?
    public var refinement: LayerRefinementReport?
}

public struct MethodResult: Sendable, Codable, Equatable {
    public var name: String
    public var settings: String
    public var isDefault: Bool
    public var holdoutAgreement: Double
    public var holdoutCosine: Double
    /// On the labelled images (nil without them).
    public var top1: Double?
    public var agreement: Double?
    public var calibrationSeconds: Double
}

public struct AnalysisReport: Sendable, Codable, Equatable {
    public var checkpoint: String
    public var inputHeight: Int
    public var inputWidth: Int
    public var numClasses: Int
    public var trainingForm: Bool
    public var calibrationImages: Int
    public var holdoutImages: Int
    public var evaluationImages: Int
    public var fp32Top1: Double?
    public var analyzed: String
    public var methods: [MethodResult]
    public var layers: [LayerAnalysis]
    public var logitSQNR: Double
    public var conclusions: [String]
    public var seconds: Double

    public func jsonString() throws -> String { try reportJSON(self) }
}

/// Bins of the activation histograms in the report.
let reportHistogramBins = 48

/// Runs the analysis. `progress(step, done, total)` reports each long step.
public func analyzeQuantization(network: FusedNetwork, importReport: ImportReport?, calibration: CalibrationData,
                                evaluation: LabelledImages?, options: AnalysisOptions, checkpoint: String,
                                progress: @escaping (String, Int, Int) -> Void = { _, _, _ in }) throws -> AnalysisReport {
    let started = Date()
    let base = options.calibration
    guard base.holdoutFraction > 0 else { throw CalibrationError("analyze needs held-aside images: --holdout must be above 0") }
    if let evaluation {
        guard evaluation.data.inputHeight == network.inputHeight, evaluation.data.inputWidth == network.inputWidth,
              evaluation.labels.count == evaluation.data.count else {
            throw CalibrationError("the evaluation images do not match the network input or their labels")
        }
    }

    // Configurations: each method with the analyzed settings, and the baseline.
    var configurations: [(name: String, options: CalibrationOptions, isDefault: Bool)] = []
    var methods = options.methods
    if !methods.contains(base.method) { methods.insert(base.method, at: 0) }
    for method in methods {
        var o = base
        o.method = method
        configurations.append((method.rawValue + refinementSuffix(o), o, method == base.method))
    }
    let refined = base.equalization || base.clippingSearch || base.weightRounding != .nearest
    if options.compareBaseline && refined {
        var o = base
        o.equalization = false
        o.clippingSearch = false
        o.weightRounding = .nearest
        configurations.append((base.method.rawValue + refinementSuffix(o) + " (no refinement)", o, false))
    }

    var results: [CalibrationResult] = []
    let cache = ObservationCache()
    for (number, configuration) in configurations.enumerated() {
        let label = "calibrating \(number + 1)/\(configurations.count) (\(configuration.name))"
        results.append(try calibrate(network: network, calibration: calibration, options: configuration.options, cache: cache) {
            progress(label, $0, $1)
        })
    }
    guard let analyzedIndex = configurations.firstIndex(where: \.isDefault) else {
        throw CalibrationError("the analyzed configuration was not calibrated")
    }
    let analyzed = results[analyzedIndex]
    let baseline = options.compareBaseline && refined ? results.last : nil

    // The hold-out images, as calibrateAndQuantize split them.
    var data = calibration
    if let limit = base.count, limit < data.count { data = try data.subset(evenlySpaced(Array(0..<data.count), count: limit)) }
    let holdout = try data.subset(holdoutIndices(count: data.count, fraction: base.holdoutFraction))
    guard holdout.count > 0 else { throw CalibrationError("no hold-out images: use more calibration images") }

    // FP32 outputs of every layer on the hold-out (channel-major), with the analyzed (possibly equalized) network.
    let forward = try FP32Forward(network: analyzed.network)
    let workspace = FP32ForwardWorkspace()
    var fp32Layers: [[Float]] = []
    var input = holdout.pixels.withUnsafeBufferPointer { forward.normalizedInput($0, count: holdout.count) }
    for (index, conv) in analyzed.network.convs.enumerated() {
        input = input.withUnsafeBufferPointer { forward.layer(index, conv: conv, input: $0, count: holdout.count, workspace: workspace) }
        fp32Layers.append(input)
    }
    let fp32Logits = input.withUnsafeBufferPointer { forward.head($0, count: holdout.count) }

    // Sensitivity: layer i alone INT8 (its input quantized at its input scale, int8 weights, file bias, output
    // quantized), everything else FP32.
    var sensitivity: [(sqnr: Double, agreement: Double)] = []
    let description = analyzed.description
    for (index, conv) in analyzed.network.convs.enumerated() {
        progress("sensitivity (one layer INT8 at a time)", index, analyzed.network.convs.count)
        let centered: [Float]
        if index == 0 {
            let plane = network.inputHeight * network.inputWidth
            centered = channelMajor(ArraySlice(holdout.pixels), channels: 3, count: holdout.count, plane: plane) { channel, value in
                Float(Int(value) - Int(description.inputZeroPoint[channel]))
            }
        } else {
            let scale = description.convs[index - 1].outputScale
            centered = fp32Layers[index - 1].map { min(max(($0 / scale).rounded(.toNearestOrEven), 0), 255) }
        }
        let inputScale = index == 0 ? description.inputScale : description.convs[index - 1].outputScale
        let simulated = simulatedConv(conv, layer: description.convs[index], inputScale: inputScale)
        var output = centered.withUnsafeBufferPointer {
            forward.layer(index, conv: simulated, input: $0, count: holdout.count, workspace: workspace)
        }
        let outScale = description.convs[index].outputScale
        for position in output.indices {
            output[position] = min(max((output[position] / outScale).rounded(.toNearestOrEven), 0), 255) * outScale
        }
        for later in (index + 1)..<analyzed.network.convs.count {
            output = output.withUnsafeBufferPointer {
                forward.layer(later, conv: analyzed.network.convs[later], input: $0, count: holdout.count, workspace: workspace)
            }
        }
        let logits = output.withUnsafeBufferPointer { forward.head($0, count: holdout.count) }
        sensitivity.append((sqnr(reference: fp32Logits, test: logits), agreement(fp32Logits, logits, classes: network.numClasses)))
    }
    progress("sensitivity (one layer INT8 at a time)", analyzed.network.convs.count, analyzed.network.convs.count)

    // Accumulated error: every layer's output of the fully INT8 network (the runtime's kernels) against FP32.
    let cumulative = try cumulativeSQNR(analyzed.description, holdout: holdout, fp32Layers: fp32Layers)
    var baselineCumulative: [Double]? = nil
    if let baseline {
        // The baseline's FP32 network is the unequalized one; its layer outputs differ per channel by the
        // equalization scales, so its reference is computed again.
        let reference = try fp32LayerOutputs(baseline.network, holdout: holdout)
        baselineCumulative = try cumulativeSQNR(baseline.description, holdout: holdout, fp32Layers: reference)
    }
    let int8Logits = try runtimeLogits(analyzed.description, data: holdout)
    let logitSQNR = sqnr(reference: fp32Logits, test: int8Logits)

    // Whole model on the labelled images.
    var fp32Top1: Double? = nil
    var evaluated: [(top1: Double, agreement: Double)?] = Array(repeating: nil, count: results.count)
    if let evaluation {
        let images = evaluation.data
        let reference = try FP32Forward(network: network)
        var fp32Classes: [Int] = []
        fp32Classes.reserveCapacity(images.count)
        try forEachBatch(images, size: 64) { pixels, count, done in
            let logits = try reference.logits(pixels: pixels, count: count, workspace: workspace)
            for image in 0..<count { fp32Classes.append(argmax(logits[(image * network.numClasses)..<((image + 1) * network.numClasses)])) }
            progress("FP32 on the labelled images", done, images.count)
        }
        fp32Top1 = Double(zip(fp32Classes, evaluation.labels).filter { $0 == $1 }.count) / Double(images.count)
        for (number, result) in results.enumerated() {
            let model = try Model(description: result.description)
            let session = try Session(model: model, threads: base.threads, maxBatch: 64)
            var correct = 0, agreeing = 0, position = 0
            try forEachBatch(images, size: 64) { pixels, count, done in
                let logits = try session.run(unsafeImages: pixels, batch: count)
                for image in 0..<count {
                    let predicted = argmax(logits[(image * network.numClasses)..<((image + 1) * network.numClasses)])
                    if predicted == evaluation.labels[position] { correct += 1 }
                    if predicted == fp32Classes[position] { agreeing += 1 }
                    position += 1
                }
                progress("INT8 on the labelled images (\(number + 1)/\(results.count))", done, images.count)
            }
            evaluated[number] = (Double(correct) / Double(images.count), Double(agreeing) / Double(images.count))
        }
    }

    // Per-layer C1 and C2.
    var maxima = ChannelMaxima(network: analyzed.network)
    for (index, values) in fp32Layers.enumerated() { values.withUnsafeBufferPointer { maxima.observe(.conv(index), $0) } }
    var layers: [LayerAnalysis] = []
    for (index, conv) in network.convs.enumerated() {
        let block = importReport?.blocks.indices.contains(index) == true ? importReport?.blocks[index] : nil
        let histogram = analyzed.histograms[index]
        var thresholds: [ThresholdChoice] = ActivationCalibrationMethod.allCases.map { method in
            let t = activationThreshold(histogram, method: method, percentile: base.percentile)
            return ThresholdChoice(method: method.rawValue, threshold: t, clippedShare: clippedShare(histogram, threshold: t))
        }
        let used = analyzed.report.layers[index].activation.threshold
        if base.clippingSearch {
            thresholds.append(ThresholdChoice(method: "search", threshold: used, clippedShare: clippedShare(histogram, threshold: used)))
        }
        let channelMaxima = maxima.values[index].map(Double.init).sorted()
        let medianMaximum = channelMaxima[channelMaxima.count / 2]
        layers.append(LayerAnalysis(
            index: index, name: block?.name ?? "conv.\(index)", inChannels: conv.inChannels, outChannels: conv.outChannels,
            stride: conv.stride, groups: conv.groups, branches: block?.branches ?? [],
            weights: weightAnalysis(conv, quantizationSQNR: analyzed.report.layers[index].weight.quantizationSQNR),
            branchGains: (block?.branchGains ?? []).map(summary),
            activation: ActivationAnalysis(max: Double(histogram.maxValue), zeroShare: histogram.zeroCount / max(histogram.totalCount, 1),
                                           histogram: coarseHistogram(histogram), thresholds: thresholds, threshold: used,
                                           channelSpread: medianMaximum > 0 ? (channelMaxima.last ?? 0) / medianMaximum : 0,
                                           estimatedSQNR: analyzed.report.layers[index].activation.estimatedSQNR),
            sensitivitySQNR: sensitivity[index].sqnr, sensitivityAgreement: sensitivity[index].agreement,
            cumulativeSQNR: cumulative[index], baselineCumulativeSQNR: baselineCumulative?[index],
            biasCorrectionShift: analyzed.report.layers[index].biasCorrectionShift,
            equalization: analyzed.report.equalization?[index], refinement: analyzed.report.refinement?[index]))
    }

    let methodResults = configurations.indices.map { number in
        MethodResult(name: configurations[number].name, settings: results[number].description.extraMetadata["calibration"] ?? "",
                     isDefault: configurations[number].isDefault,
                     holdoutAgreement: results[number].report.holdout?.top1Agreement ?? 0,
                     holdoutCosine: results[number].report.holdout?.meanLogitCosine ?? 0,
                     top1: evaluated[number]?.top1, agreement: evaluated[number]?.agreement,
                     calibrationSeconds: results[number].seconds)
    }
    var report = AnalysisReport(
        checkpoint: checkpoint, inputHeight: network.inputHeight, inputWidth: network.inputWidth, numClasses: network.numClasses,
        trainingForm: importReport?.blocks.contains { !$0.branchGains.isEmpty } ?? false,
        calibrationImages: analyzed.report.calibrationImages, holdoutImages: holdout.count,
        evaluationImages: evaluation?.data.count ?? 0, fp32Top1: fp32Top1, analyzed: configurations[analyzedIndex].name,
        methods: methodResults, layers: layers, logitSQNR: logitSQNR, conclusions: [],
        seconds: 0)
    report.conclusions = conclusions(report)
    report.seconds = Date().timeIntervalSince(started)
    return report
}

private func refinementSuffix(_ o: CalibrationOptions) -> String {
    var parts: [String] = []
    if o.equalization { parts.append("CLE") }
    if o.clippingSearch { parts.append("search") }
    if o.weightRounding != .nearest { parts.append(o.weightRounding.rawValue) }
    if o.biasCorrection { parts.append("BC") }
    return parts.isEmpty ? "" : " + " + parts.joined(separator: " + ")
}

/// A layer with int8 weights and bias dequantized, taking the centered uint8 input (value minus pad) as float:
/// the kernel's (acc + B) * input_scale * weight_scale, then ReLU.
func simulatedConv(_ conv: FusedConv, layer: QuantizedConvLayer, inputScale: Float) -> FusedConv {
    let rowLength = conv.inChannels / conv.groups * 9
    var weight = layer.weight.map(Float.init)
    var bias = [Float](repeating: 0, count: conv.outChannels)
    for output in 0..<conv.outChannels {
        let unit = Float(Double(inputScale) * Double(layer.weightScale[output]))
        for j in 0..<rowLength { weight[output * rowLength + j] *= unit }
        bias[output] = Float(Double(layer.bias[output]) * Double(unit))
    }
    return FusedConv(inChannels: conv.inChannels, outChannels: conv.outChannels, stride: conv.stride, groups: conv.groups,
                     weight: weight, bias: bias)
}

func fp32LayerOutputs(_ network: FusedNetwork, holdout: CalibrationData) throws -> [[Float]] {
    let forward = try FP32Forward(network: network)
    let workspace = FP32ForwardWorkspace()
    var input = holdout.pixels.withUnsafeBufferPointer { forward.normalizedInput($0, count: holdout.count) }
    var outputs: [[Float]] = []
    for (index, conv) in network.convs.enumerated() {
        input = input.withUnsafeBufferPointer { forward.layer(index, conv: conv, input: $0, count: holdout.count, workspace: workspace) }
        outputs.append(input)
    }
    return outputs
}

/// Per conv layer, 10 log10(sum fp^2 / sum (fp - int8)^2) of the runtime's dequantized uint8 output.
func cumulativeSQNR(_ description: QuantizedModelDescription, holdout: CalibrationData, fp32Layers: [[Float]]) throws -> [Double] {
    let runtime = try IntegerLayers(description, threads: max(1, ProcessInfo.processInfo.activeProcessorCount))
    var activation = holdout.pixels
    var result: [Double] = []
    for index in 0..<runtime.convCount {
        activation = try runtime.conv(index, bias: runtime.accumulatorBias(conv: index), input: activation, batch: holdout.count)
        let channels = description.convs[index].outChannels
        let (height, width) = runtime.outputSize(conv: index)
        let plane = height * width
        let scale = Double(description.convs[index].outputScale)
        var signal = 0.0, noise = 0.0
        let reference = fp32Layers[index]
        for channel in 0..<channels {
            for image in 0..<holdout.count {
                let from = (channel * holdout.count + image) * plane
                let to = image * plane * channels + channel
                for pixel in 0..<plane {
                    let z = Double(reference[from + pixel])
                    let q = Double(activation[to + pixel * channels]) * scale
                    signal += z * z
                    noise += (z - q) * (z - q)
                }
            }
        }
        result.append(decibels(signal, noise))
    }
    return result
}

func runtimeLogits(_ description: QuantizedModelDescription, data: CalibrationData) throws -> [Float] {
    let session = try Session(model: try Model(description: description), threads: 0, maxBatch: 64)
    var logits: [Float] = []
    try forEachBatch(data, size: 64) { pixels, count, _ in logits += try session.run(unsafeImages: pixels, batch: count) }
    return logits
}

func decibels(_ signal: Double, _ noise: Double) -> Double {
    noise > 0 ? 10 * log10(signal / noise) : 99
}

func sqnr(reference: [Float], test: [Float]) -> Double {
    var signal = 0.0, noise = 0.0
    for (z, q) in zip(reference, test) {
        signal += Double(z) * Double(z)
        noise += Double(z - q) * Double(z - q)
    }
    return decibels(signal, noise)
}

func agreement(_ a: [Float], _ b: [Float], classes: Int) -> Double {
    let images = a.count / classes
    guard images > 0 else { return 0 }
    var same = 0
    for image in 0..<images where argmax(a[(image * classes)..<((image + 1) * classes)]) == argmax(b[(image * classes)..<((image + 1) * classes)]) {
        same += 1
    }
    return Double(same) / Double(images)
}

func clippedShare(_ histogram: ActivationHistogram, threshold: Double) -> Double {
    guard histogram.positiveCount > 0 else { return 0 }
    var clipped = 0.0
    for index in 0..<histogram.occupiedBins where histogram.center(index) > threshold { clipped += histogram.counts[index] }
    return clipped / histogram.positiveCount
}

/// The positive values' histogram on `reportHistogramBins` bins over [0, max].
func coarseHistogram(_ histogram: ActivationHistogram) -> [Double] {
    var bins = [Double](repeating: 0, count: reportHistogramBins)
    let top = Double(histogram.maxValue)
    guard top > 0 else { return bins }
    for index in 0..<histogram.occupiedBins where histogram.counts[index] > 0 {
        bins[min(Int(histogram.center(index) / top * Double(reportHistogramBins)), reportHistogramBins - 1)] += histogram.counts[index]
    }
    return bins
}

private func summary(_ gain: BranchGain) -> BranchGainSummary {
    let sorted = gain.values.sorted()
    return BranchGainSummary(branch: gain.branch, min: sorted.first ?? 0, median: sorted.isEmpty ? 0 : sorted[sorted.count / 2],
                             max: sorted.last ?? 0)
}

func weightAnalysis(_ conv: FusedConv, quantizationSQNR: Double) -> WeightAnalysis {
    let values = conv.weight.map(Double.init)
    let n = Double(max(values.count, 1))
    let mean = values.reduce(0, +) / n
    var m2 = 0.0, m4 = 0.0
    for v in values {
        let d = (v - mean) * (v - mean)
        m2 += d
        m4 += d * d
    }
    m2 /= n
    m4 /= n
    let std = m2.squareRoot()
    let kurtosis = m2 > 0 ? m4 / (m2 * m2) - 3 : 0
    let sorted = values.sorted()
    func quantile(_ q: Double) -> Double {
        guard !sorted.isEmpty, std > 0 else { return 0 }
        return sorted[min(sorted.count - 1, Int(q * Double(sorted.count - 1)))] / std
    }
    let rowLength = conv.inChannels / conv.groups * 9
    var shares: [Double] = [], maxAbs: [Float] = []
    for output in 0..<conv.outChannels {
        let row = conv.weight[(output * rowLength)..<((output + 1) * rowLength)]
        let high = row.map { abs($0) }.max() ?? 0
        maxAbs.append(high)
        guard high > 0 else { shares.append(0); continue }
        let scale = high / weightLevels
        var squares = 0.0
        for w in row {
            let q = Double(quantizeWeight(w, scale: scale))
            squares += q * q
        }
        shares.append((squares / Double(rowLength)).squareRoot() / Double(weightLevels))
    }
    let sortedShares = shares.sorted()
    let minimum = shares.indices.min { shares[$0] < shares[$1] } ?? 0
    let largest = values.map { abs($0) }.max() ?? 0
    return WeightAnalysis(min: conv.weight.min() ?? 0, max: conv.weight.max() ?? 0, std: std, kurtosis: kurtosis,
                          maxOverStd: std > 0 ? largest / std : 0,
                          quantiles: [0, 0.01, 0.25, 0.5, 0.75, 0.99, 1].map(quantile),
                          channelRangeShare: shares, rangeShareMedian: sortedShares.isEmpty ? 0 : sortedShares[sortedShares.count / 2],
                          rangeShareMin: sortedShares.first ?? 0, rangeShareMinChannel: minimum, channelMaxAbs: maxAbs,
                          quantizationSQNR: quantizationSQNR)
}

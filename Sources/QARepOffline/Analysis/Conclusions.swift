// The report's conclusions in words: which layers limit accuracy, the measured reason, and what helped. Every
// sentence restates figures of the report; nothing here is a threshold tuned to a model.

func conclusions(_ r: AnalysisReport) -> [String] {
    var lines: [String] = []
    let analyzed = r.methods.first { $0.isDefault }
    if let analyzed, let agreement = analyzed.agreement, let top1 = analyzed.top1, let fp32 = r.fp32Top1 {
        lines.append("\(r.analyzed): INT8 top-1 \(percent(top1)) against FP32 \(percent(fp32)) (\(signed((top1 - fp32) * 100, 2)) pt); INT8 and FP32 agree on \(percent(agreement)) of \(r.evaluationImages) images.")
    } else if let analyzed {
        lines.append("\(r.analyzed): INT8 and FP32 agree on \(percent(analyzed.holdoutAgreement)) of the \(r.holdoutImages) hold-out images (logit SQNR \(fixed(r.logitSQNR, 1)) dB).")
    }
    let ranked = r.methods.filter { $0.agreement != nil }.sorted { ($0.agreement ?? 0) > ($1.agreement ?? 0) }
    if let best = ranked.first, let worst = ranked.last, ranked.count > 1 {
        lines.append("Across configurations agreement ranges from \(percent(worst.agreement ?? 0)) (\(worst.name)) to \(percent(best.agreement ?? 0)) (\(best.name)).")
    }
    if let baseline = r.methods.last, !baseline.isDefault, baseline.name.hasSuffix("(no refinement)"), let analyzed {
        let before = baseline.agreement ?? baseline.holdoutAgreement, after = analyzed.agreement ?? analyzed.holdoutAgreement
        lines.append("The refinements raise agreement from \(percent(before)) without them to \(percent(after)) (\(signed((after - before) * 100, 2)) pt).")
    }

    // The limiting layers: lowest logit SQNR when alone INT8.
    let limiting = r.layers.sorted { $0.sensitivitySQNR < $1.sensitivitySQNR }.prefix(3)
    let medianSensitivity = r.layers.map(\.sensitivitySQNR).sorted()[r.layers.count / 2]
    for layer in limiting {
        var sentence = "Layer \(layer.index) (\(layer.name)) limits accuracy: alone INT8 it leaves a logit SQNR of \(fixed(layer.sensitivitySQNR, 1)) dB (median layer \(fixed(medianSensitivity, 1)) dB, agreement \(percent(layer.sensitivityAgreement, digits: 1)))."
        let w = layer.weights, a = layer.activation
        let weightLimited = w.quantizationSQNR < a.estimatedSQNR
        if weightLimited {
            sentence += " The reason is its weights: int8 weight SQNR \(fixed(w.quantizationSQNR, 1)) dB against \(fixed(a.estimatedSQNR, 1)) dB for its activation; max|w| is \(fixed(w.maxOverStd, 0)) std, so the median channel's typical weight uses \(percent(w.rangeShareMedian, digits: 1)) of the int8 range and channel \(w.rangeShareMinChannel) only \(percent(w.rangeShareMin, digits: 1))."
        } else {
            sentence += " The reason is its activation: estimated activation SQNR \(fixed(a.estimatedSQNR, 1)) dB against \(fixed(w.quantizationSQNR, 1)) dB for its weights; its range reaches \(fixed(a.max, 1)) with one channel \(fixed(a.channelSpread, 1))x the median channel's maximum, all sharing one uint8 scale."
        }
        let gains = layer.branchGains
        if let dense = gains.first(where: { $0.branch == "3x3" }),
           let other = gains.filter({ $0.branch == "identity" || $0.branch == "1x1" }).max(by: { $0.max < $1.max }), other.max > dense.median {
            sentence += " Its \(other.branch) branch's BN gain reaches \(fixed(other.max, 2)) against a median of \(fixed(dense.median, 3)) on the 3x3 branch: summed into one kernel, that branch sets the channel's scale (the paper's C1)."
        }
        var helped: [String] = []
        if let f = layer.refinement {
            if let before = f.nearestRoundingError, let after = f.optimizedRoundingError, before > 0, after < 0.99 * before {
                helped.append("GPTQ rounding cuts its pre-activation error by \(fixed((1 - after / before) * 100, 0))%")
            }
            if let before = f.methodOutputError, let after = f.chosenOutputError, before > 0, after < 0.99 * before {
                helped.append("the clipping search moves T from \(fixed(f.methodThreshold, 2)) to \(fixed(f.chosenThreshold, 2)), \(fixed((1 - after / before) * 100, 0))% less output error")
            }
        }
        if let e = layer.equalization, e.channelRangeSpreadBefore > e.channelRangeSpreadAfter * 1.05 {
            helped.append("equalization narrows its channels' range spread from \(fixed(e.channelRangeSpreadBefore, 1))x to \(fixed(e.channelRangeSpreadAfter, 1))x")
        }
        if let base = layer.baselineCumulativeSQNR {
            helped.append("in the full INT8 network its output SQNR is \(fixed(layer.cumulativeSQNR, 1)) dB with the refinements against \(fixed(base, 1)) dB without")
        }
        if !helped.isEmpty { sentence += " What helps: " + helped.joined(separator: "; ") + "." }
        lines.append(sentence)
    }

    // Where the accumulated error grows.
    var largestDrop = 0.0, dropLayer = -1
    for index in 1..<max(r.layers.count, 1) {
        let drop = r.layers[index - 1].cumulativeSQNR - r.layers[index].cumulativeSQNR
        if drop > largestDrop { largestDrop = drop; dropLayer = index }
    }
    if let first = r.layers.first, let last = r.layers.last {
        var sentence = "In the full INT8 network the output SQNR falls from \(fixed(first.cumulativeSQNR, 1)) dB after layer 0 to \(fixed(last.cumulativeSQNR, 1)) dB after layer \(last.index)"
        if dropLayer >= 0 { sentence += "; the largest single drop, \(fixed(largestDrop, 1)) dB, is at layer \(dropLayer) (\(r.layers[dropLayer].name))" }
        lines.append(sentence + ".")
    }

    // The network's conditioning as a whole (C1 and C2), comparable between models.
    let ratios = r.layers.map(\.weights.maxOverStd).sorted()
    let shares = r.layers.map(\.weights.rangeShareMedian).sorted()
    let weightSQNR = r.layers.map(\.weights.quantizationSQNR).sorted()
    lines.append("C1 over all layers: max|w| / std median \(fixed(ratios[ratios.count / 2], 0)) (up to \(fixed(ratios.last ?? 0, 0))), the typical weight uses \(percent(shares[shares.count / 2], digits: 1)) of the int8 range in the median layer, int8 weight SQNR \(fixed(weightSQNR.first ?? 0, 1))-\(fixed(weightSQNR.last ?? 0, 1)) dB.")
    let activationSQNR = r.layers.map(\.activation.estimatedSQNR).sorted()
    let spreads = r.layers.map(\.activation.channelSpread).sorted()
    lines.append("C2 over all layers: estimated activation SQNR \(fixed(activationSQNR.first ?? 0, 1))-\(fixed(activationSQNR.last ?? 0, 1)) dB, largest channel maximum \(fixed(spreads[spreads.count / 2], 1))x the median channel's in the median layer (up to \(fixed(spreads.last ?? 0, 1))x).")
    return lines
}

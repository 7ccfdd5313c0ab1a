// The analysis as one self-contained HTML page: inline SVG charts, inline CSS, no script, no external resource,
// so it opens offline, prints, and survives being mailed around. Chart widths come from the layer count, so a
// 22-layer A0 and a 28-layer B-family model both fit one page width.
#if canImport(FoundationEssentials)
import FoundationEssentials
import Glibc
#else
import Foundation
#endif

extension AnalysisReport {
    public func html() -> String {
        var page = HTMLPage()
        page.render(self)
        return page.text
    }
}

/// Colors of the calibration methods' threshold lines, in ActivationCalibrationMethod order, then "search".
private let methodColors = ["minmax": "#7f7f7f", "percentile": "#9467bd", "mse": "#1f77b4", "entropy": "#2ca02c", "search": "#d62728"]
private let chartWidth = 960.0

private struct HTMLPage {
    var text = ""

    mutating func add(_ s: String) { text += s; text += "\n" }

    mutating func render(_ r: AnalysisReport) {
        add("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">")
        add("<title>Quantization report: \(escape(r.checkpoint))</title>")
        add("<style>\(style)</style></head><body>")
        add("<header><h1>Quantization report</h1><p class=\"sub\">\(escape(r.checkpoint)) &middot; \(r.layers.count) conv layers &middot; input \(r.inputWidth)&times;\(r.inputHeight) &middot; \(r.numClasses) classes &middot; \(r.trainingForm ? "training-form checkpoint" : "fused checkpoint")</p>")
        add("<p class=\"sub\">Calibrated on \(r.calibrationImages) images, \(r.holdoutImages) held aside for the per-layer figures\(r.evaluationImages > 0 ? ", \(r.evaluationImages) labelled images for accuracy" : ""). Analyzed configuration: <b>\(escape(r.analyzed))</b>.</p></header>")
        summaryCards(r)
        add("<section><h2>Conclusions</h2><ul class=\"conclusions\">")
        for line in r.conclusions { add("<li>\(escape(line))</li>") }
        add("</ul></section>")
        methodsTable(r)
        add("<section class=\"chart\"><h2>Accumulated error: SQNR of each layer's output in the INT8 network</h2>")
        add("<p class=\"note\">Every layer's uint8 output from the runtime's kernels against the FP32 network's, on the hold-out images (the paper's cumulative-error figure). Higher is better; a drop marks the layer that adds the error.</p>")
        cumulativeChart(r)
        add("</section><section class=\"chart\"><h2>Sensitivity: only this layer INT8</h2>")
        add("<p class=\"note\">Logit SQNR against FP32 when this layer alone is quantized (its input, weights and output), the rest FP32; the label is the top-1 agreement on the hold-out images. Short bars are the layers that limit accuracy.</p>")
        sensitivityChart(r)
        add("</section><section class=\"chart\"><h2>C1: fused weights per layer</h2>")
        add("<p class=\"note\">Box: 25&ndash;75th percentile of w / std(layer); whiskers: 1st&ndash;99th; dots: min and max. The label is max|w| / std: int8 spreads 127 levels over max|w| of each output channel, so a large ratio leaves few levels for the typical weight.</p>")
        weightChart(r)
        rangeShareChart(r)
        if r.layers.contains(where: { !$0.branchGains.isEmpty }) {
            add("<h3>BatchNorm gain &gamma;/&radic;(var+&epsilon;) of each branch</h3>")
            add("<p class=\"note\">Range over channels (bar) and median (dot), log scale. The branches are summed before quantization; a large identity or 1&times;1 gain next to a small 3&times;3 one is what widens the fused weights (the paper's C1).</p>")
            branchChart(r)
        }
        add("</section><section><h2>C2: activation histograms and thresholds</h2>")
        add("<p class=\"note\">Positive values of each conv output (after ReLU) on the calibration images, log count; exact zeros are left out (their share is shown). Vertical lines: each method's clipping threshold; the label gives the analyzed threshold and the share of values it clips.</p>")
        legend()
        add("<div class=\"grid\">")
        for layer in r.layers { histogram(layer) }
        add("</div></section>")
        layerTable(r)
        add("<footer>qarep analyze &middot; \(fixed(r.seconds, 0)) s &middot; figures also in the JSON report</footer></body></html>")
    }

    mutating func summaryCards(_ r: AnalysisReport) {
        let analyzed = r.methods.first { $0.isDefault }
        add("<section class=\"cards\">")
        if let top1 = r.fp32Top1 { card("FP32 top-1", percent(top1), "\(r.evaluationImages) images") }
        if let top1 = analyzed?.top1 { card("INT8 top-1", percent(top1), signed((top1 - (r.fp32Top1 ?? top1)) * 100, 2) + " pt") }
        if let agreement = analyzed?.agreement {
            card("INT8 = FP32 top-1", percent(agreement), "agreement, \(r.evaluationImages) images")
        } else if let analyzed {
            card("INT8 = FP32 top-1", percent(analyzed.holdoutAgreement), "agreement, \(r.holdoutImages) hold-out images")
        }
        card("Logit SQNR", fixed(r.logitSQNR, 1) + " dB", "INT8 vs FP32, hold-out")
        if let worst = r.layers.min(by: { $0.sensitivitySQNR < $1.sensitivitySQNR }) {
            card("Most sensitive layer", "\(worst.index)", escape(worst.name) + ", " + fixed(worst.sensitivitySQNR, 1) + " dB alone")
        }
        add("</section>")
    }

    mutating func card(_ title: String, _ value: String, _ detail: String) {
        add("<div class=\"card\"><div class=\"card-title\">\(title)</div><div class=\"card-value\">\(value)</div><div class=\"card-detail\">\(detail)</div></div>")
    }

    mutating func methodsTable(_ r: AnalysisReport) {
        add("<section><h2>Calibration methods side by side</h2><table class=\"methods\"><thead><tr><th>configuration</th>")
        if r.evaluationImages > 0 { add("<th>INT8 top-1</th><th>&Delta; vs FP32</th><th>agreement</th>") }
        add("<th>hold-out agreement</th><th>hold-out logit cosine</th><th>calibration time</th></tr></thead><tbody>")
        let best = r.methods.compactMap(\.agreement).max()
        for m in r.methods {
            var row = "<tr\(m.isDefault ? " class=\"default\"" : "")><td>\(escape(m.name))\(m.isDefault ? " <span class=\"tag\">analyzed</span>" : "")</td>"
            if let top1 = m.top1, let agreement = m.agreement {
                row += "<td>\(percent(top1))</td><td>\(signed((top1 - (r.fp32Top1 ?? top1)) * 100, 2)) pt</td>"
                row += "<td>\(agreement == best ? "<b>" : "")\(percent(agreement))\(agreement == best ? "</b>" : "")</td>"
            } else if r.evaluationImages > 0 {
                row += "<td></td><td></td><td></td>"
            }
            row += "<td>\(percent(m.holdoutAgreement))</td><td>\(fixed(m.holdoutCosine, 5))</td><td>\(fixed(m.calibrationSeconds, 1)) s</td></tr>"
            add(row)
        }
        add("</tbody></table><p class=\"note\">Calibration time: the first configuration's includes the FP32 observation pass the others share.</p></section>")
    }

    // MARK: charts

    /// Horizontal position of layer band `index` of `count` inside a chart with left margin `left`.
    func band(_ index: Int, _ count: Int, left: Double, right: Double = 16) -> (x: Double, width: Double) {
        let width = (chartWidth - left - right) / Double(max(count, 1))
        return (left + Double(index) * width, width)
    }

    mutating func axisY(_ ticks: [Double], y: (Double) -> Double, left: Double, label: String, format: (Double) -> String) {
        for t in ticks {
            let py = y(t)
            add("<line class=\"grid-line\" x1=\"\(left)\" x2=\"\(chartWidth - 16)\" y1=\"\(fixed(py, 1))\" y2=\"\(fixed(py, 1))\"/>")
            add("<text class=\"tick\" x=\"\(left - 6)\" y=\"\(fixed(py + 4, 1))\" text-anchor=\"end\">\(format(t))</text>")
        }
        add("<text class=\"axis-label\" transform=\"rotate(-90)\" x=\"\(fixed(-(y(ticks.first ?? 0) + y(ticks.last ?? 0)) / 2, 1))\" y=\"14\" text-anchor=\"middle\">\(label)</text>")
    }

    mutating func axisX(_ r: AnalysisReport, left: Double, y: Double) {
        for layer in r.layers {
            let b = band(layer.index, r.layers.count, left: left)
            add("<text class=\"tick\" x=\"\(fixed(b.x + b.width / 2, 1))\" y=\"\(fixed(y + 14, 1))\" text-anchor=\"middle\">\(layer.index)</text>")
        }
        add("<text class=\"axis-label\" x=\"\(fixed((left + chartWidth) / 2, 1))\" y=\"\(fixed(y + 30, 1))\" text-anchor=\"middle\">conv layer</text>")
    }

    func niceTicks(_ low: Double, _ high: Double, count: Int = 5) -> [Double] {
        guard high > low else { return [low] }
        let raw = (high - low) / Double(count)
        let magnitude = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 2.5, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? raw
        var ticks: [Double] = []
        var t = (low / step).rounded(.down) * step
        while t <= high + step * 1e-9 {
            if t >= low - step * 1e-9 { ticks.append(t) }
            t += step
        }
        return ticks
    }

    mutating func cumulativeChart(_ r: AnalysisReport) {
        let height = 300.0, left = 56.0, top = 16.0, bottom = 260.0
        var values = r.layers.map(\.cumulativeSQNR)
        values += r.layers.compactMap(\.baselineCumulativeSQNR)
        let low = max(0, (values.min() ?? 0) - 3).rounded(.down), high = ((values.max() ?? 40) + 3).rounded(.up)
        let y = { (v: Double) in bottom - (v - low) / max(high - low, 1) * (bottom - top) }
        add("<svg class=\"plot\" id=\"cumulative-sqnr\" viewBox=\"0 0 \(chartWidth) \(height)\" role=\"img\" aria-label=\"cumulative SQNR per layer\">")
        axisY(niceTicks(low, high), y: y, left: left, label: "SQNR (dB)") { fixed($0, 0) }
        axisX(r, left: left, y: bottom)
        func line(_ series: [Double], color: String, dashed: Bool) {
            let points = series.enumerated().map { index, v -> String in
                let b = band(index, r.layers.count, left: left)
                return "\(fixed(b.x + b.width / 2, 1)),\(fixed(y(v), 1))"
            }
            add("<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2.5\"\(dashed ? " stroke-dasharray=\"6 4\"" : "") points=\"\(points.joined(separator: " "))\"/>")
            for p in points {
                let xy = p.split(separator: ",")
                add("<circle cx=\"\(xy[0])\" cy=\"\(xy[1])\" r=\"3.2\" fill=\"\(color)\"/>")
            }
        }
        let baseline = r.layers.compactMap(\.baselineCumulativeSQNR)
        if baseline.count == r.layers.count { line(baseline, color: "#999999", dashed: true) }
        line(r.layers.map(\.cumulativeSQNR), color: "#1f77b4", dashed: false)
        let analyzedName = escape(r.analyzed)
        add("<g class=\"legend\"><line x1=\"\(chartWidth - 330)\" x2=\"\(chartWidth - 306)\" y1=\"24\" y2=\"24\" stroke=\"#1f77b4\" stroke-width=\"2.5\"/><text x=\"\(chartWidth - 300)\" y=\"28\">\(analyzedName)</text>")
        if baseline.count == r.layers.count, let name = r.methods.last?.name {
            add("<line x1=\"\(chartWidth - 330)\" x2=\"\(chartWidth - 306)\" y1=\"42\" y2=\"42\" stroke=\"#999\" stroke-width=\"2.5\" stroke-dasharray=\"6 4\"/><text x=\"\(chartWidth - 300)\" y=\"46\">\(escape(name))</text>")
        }
        add("</g></svg>")
    }

    mutating func sensitivityChart(_ r: AnalysisReport) {
        let height = 280.0, left = 56.0, top = 20.0, bottom = 240.0
        let values = r.layers.map(\.sensitivitySQNR)
        let high = ((values.max() ?? 40) + 5).rounded(.up)
        let y = { (v: Double) in bottom - max(v, 0) / max(high, 1) * (bottom - top) }
        let worst = Set(r.layers.sorted { $0.sensitivitySQNR < $1.sensitivitySQNR }.prefix(3).map(\.index))
        add("<svg class=\"plot\" id=\"sensitivity\" viewBox=\"0 0 \(chartWidth) \(height)\" role=\"img\" aria-label=\"per-layer sensitivity\">")
        axisY(niceTicks(0, high), y: y, left: left, label: "logit SQNR (dB)") { fixed($0, 0) }
        axisX(r, left: left, y: bottom)
        for layer in r.layers {
            let b = band(layer.index, r.layers.count, left: left)
            let top = y(layer.sensitivitySQNR)
            add("<rect x=\"\(fixed(b.x + b.width * 0.15, 1))\" y=\"\(fixed(top, 1))\" width=\"\(fixed(b.width * 0.7, 1))\" height=\"\(fixed(bottom - top, 1))\" fill=\"\(worst.contains(layer.index) ? "#d62728" : "#4c78a8")\"><title>\(escape(layer.name)): \(fixed(layer.sensitivitySQNR, 1)) dB, agreement \(percent(layer.sensitivityAgreement))</title></rect>")
            add("<text class=\"bar-label\" x=\"\(fixed(b.x + b.width / 2, 1))\" y=\"\(fixed(top - 4, 1))\" text-anchor=\"middle\">\(fixed(layer.sensitivityAgreement * 100, 0))</text>")
        }
        add("</svg>")
    }

    mutating func weightChart(_ r: AnalysisReport) {
        let height = 300.0, left = 56.0, top = 22.0, bottom = 260.0
        let high = (r.layers.map { max(abs($0.weights.quantiles.first ?? 0), abs($0.weights.quantiles.last ?? 0)) }.max() ?? 10)
        // w / std spans a few units in the box and tens to hundreds at the extremes: a signed log scale shows both.
        let scale = { (v: Double) in (v < 0 ? -1 : 1) * log10(1 + abs(v)) }
        let extent = scale(high) * 1.05
        let y = { (v: Double) in (top + bottom) / 2 - scale(v) / extent * (bottom - top) / 2 }
        add("<svg class=\"plot\" id=\"weights\" viewBox=\"0 0 \(chartWidth) \(height)\" role=\"img\" aria-label=\"weight distribution per layer\">")
        let ticks = [-100.0, -30, -10, -3, -1, 0, 1, 3, 10, 30, 100].filter { abs($0) <= high * 1.05 }
        axisY(ticks, y: y, left: left, label: "w / std (signed log scale)") { fixed($0, 0) }
        axisX(r, left: left, y: bottom)
        for layer in r.layers {
            let b = band(layer.index, r.layers.count, left: left)
            let q = layer.weights.quantiles
            guard q.count == 7 else { continue }
            let cx = b.x + b.width / 2, w = b.width * 0.5
            add("<line x1=\"\(fixed(cx, 1))\" x2=\"\(fixed(cx, 1))\" y1=\"\(fixed(y(q[1]), 1))\" y2=\"\(fixed(y(q[5]), 1))\" stroke=\"#4c78a8\" stroke-width=\"1.5\"/>")
            add("<rect x=\"\(fixed(cx - w / 2, 1))\" y=\"\(fixed(y(q[4]), 1))\" width=\"\(fixed(w, 1))\" height=\"\(fixed(max(1, y(q[2]) - y(q[4])), 1))\" fill=\"#9ecae1\" stroke=\"#4c78a8\"/>")
            add("<line x1=\"\(fixed(cx - w / 2, 1))\" x2=\"\(fixed(cx + w / 2, 1))\" y1=\"\(fixed(y(q[3]), 1))\" y2=\"\(fixed(y(q[3]), 1))\" stroke=\"#08306b\" stroke-width=\"1.5\"/>")
            for extreme in [q[0], q[6]] {
                add("<circle cx=\"\(fixed(cx, 1))\" cy=\"\(fixed(y(extreme), 1))\" r=\"3\" fill=\"#d62728\"><title>\(escape(layer.name)): \(fixed(extreme, 1)) std</title></circle>")
            }
            add("<text class=\"bar-label\" x=\"\(fixed(cx, 1))\" y=\"\(fixed(top - 6, 1))\" text-anchor=\"middle\">\(fixed(layer.weights.maxOverStd, 0))</text>")
        }
        add("</svg>")
    }

    mutating func rangeShareChart(_ r: AnalysisReport) {
        let height = 200.0, left = 56.0, top = 14.0, bottom = 160.0
        let high = max(0.05, (r.layers.map(\.weights.rangeShareMedian).max() ?? 0.3) * 1.15)
        let y = { (v: Double) in bottom - v / high * (bottom - top) }
        add("<h3>Share of the int8 range used by the typical weight</h3>")
        add("<p class=\"note\">RMS of each output channel's int8 weights / 127: bar = median channel, red tick = worst channel. A Gaussian channel uses about 25%; an outlier that sets the channel's scale pushes the rest into a few levels.</p>")
        add("<svg class=\"plot\" id=\"range-share\" viewBox=\"0 0 \(chartWidth) \(height)\" role=\"img\" aria-label=\"int8 range share\">")
        axisY(niceTicks(0, high, count: 4), y: y, left: left, label: "RMS(q) / 127") { fixed($0 * 100, 0) + "%" }
        axisX(r, left: left, y: bottom)
        for layer in r.layers {
            let b = band(layer.index, r.layers.count, left: left)
            let top = y(layer.weights.rangeShareMedian)
            add("<rect x=\"\(fixed(b.x + b.width * 0.2, 1))\" y=\"\(fixed(top, 1))\" width=\"\(fixed(b.width * 0.6, 1))\" height=\"\(fixed(bottom - top, 1))\" fill=\"#72b7b2\"/>")
            let low = y(layer.weights.rangeShareMin)
            add("<line x1=\"\(fixed(b.x + b.width * 0.1, 1))\" x2=\"\(fixed(b.x + b.width * 0.9, 1))\" y1=\"\(fixed(low, 1))\" y2=\"\(fixed(low, 1))\" stroke=\"#d62728\" stroke-width=\"2\"><title>\(escape(layer.name)): channel \(layer.weights.rangeShareMinChannel) uses \(percent(layer.weights.rangeShareMin))</title></line>")
        }
        add("</svg>")
    }

    mutating func branchChart(_ r: AnalysisReport) {
        let height = 250.0, left = 56.0, top = 32.0, bottom = 210.0
        let branches = ["3x3", "1x1", "identity", "post"]
        let colors = ["3x3": "#4c78a8", "1x1": "#f58518", "identity": "#e45756", "post": "#54a24b"]
        let all = r.layers.flatMap { $0.branchGains.flatMap { [$0.min, $0.max] } }.filter { $0 > 0 }
        let low = log10(all.min() ?? 0.01).rounded(.down), high = log10(all.max() ?? 10).rounded(.up)
        let y = { (v: Double) in bottom - (log10(max(v, 1e-12)) - low) / max(high - low, 1) * (bottom - top) }
        add("<svg class=\"plot\" id=\"branch-gains\" viewBox=\"0 0 \(chartWidth) \(height)\" role=\"img\" aria-label=\"BN gains per branch\">")
        axisY(stride(from: low, through: high, by: 1).map { pow(10, $0) }, y: y, left: left, label: "gamma / sqrt(var + eps)") { v in
            v >= 1 ? fixed(v, 0) : fixed(v, Int(-log10(v).rounded()))
        }
        axisX(r, left: left, y: bottom)
        for layer in r.layers {
            let b = band(layer.index, r.layers.count, left: left)
            let present = branches.filter { name in layer.branchGains.contains { $0.branch == name } }
            for (slot, name) in present.enumerated() {
                guard let gain = layer.branchGains.first(where: { $0.branch == name }) else { continue }
                let x = b.x + b.width * (Double(slot) + 1) / Double(present.count + 1)
                let color = colors[name] ?? "#333"
                add("<line x1=\"\(fixed(x, 1))\" x2=\"\(fixed(x, 1))\" y1=\"\(fixed(y(gain.min), 1))\" y2=\"\(fixed(y(gain.max), 1))\" stroke=\"\(color)\" stroke-width=\"3\" stroke-linecap=\"round\"/>")
                add("<circle cx=\"\(fixed(x, 1))\" cy=\"\(fixed(y(gain.median), 1))\" r=\"2.6\" fill=\"white\" stroke=\"\(color)\" stroke-width=\"1.5\"><title>\(escape(layer.name)) \(name): \(fixed(gain.min, 3))..\(fixed(gain.max, 3)), median \(fixed(gain.median, 3))</title></circle>")
            }
        }
        var x = chartWidth - 330
        add("<g class=\"legend\">")
        for name in branches where r.layers.contains(where: { $0.branchGains.contains { $0.branch == name } }) {
            add("<rect x=\"\(x)\" y=\"4\" width=\"12\" height=\"12\" fill=\"\(colors[name] ?? "#333")\"/><text x=\"\(x + 16)\" y=\"14\">\(name)</text>")
            x += 78
        }
        add("</g></svg>")
    }

    mutating func legend() {
        add("<p class=\"legend-row\">")
        for name in ["minmax", "percentile", "mse", "entropy", "search"] {
            add("<span><svg width=\"22\" height=\"10\"><line x1=\"0\" x2=\"22\" y1=\"5\" y2=\"5\" stroke=\"\(methodColors[name] ?? "#333")\" stroke-width=\"3\"/></svg> \(name)</span>")
        }
        add("</p>")
    }

    mutating func histogram(_ layer: LayerAnalysis) {
        let width = 230.0, height = 120.0, left = 6.0, right = 6.0, top = 8.0, bottom = 96.0
        let a = layer.activation
        let maxCount = log10(1 + (a.histogram.max() ?? 1))
        let binWidth = (width - left - right) / Double(max(a.histogram.count, 1))
        let x = { (v: Double) in left + (a.max > 0 ? v / a.max : 0) * (width - left - right) }
        add("<figure class=\"hist\"><svg class=\"plot small\" viewBox=\"0 0 \(width) \(height)\" role=\"img\" aria-label=\"activation histogram of layer \(layer.index)\">")
        for (index, count) in a.histogram.enumerated() where count > 0 {
            let h = log10(1 + count) / max(maxCount, 1e-9) * (bottom - top)
            add("<rect x=\"\(fixed(left + Double(index) * binWidth, 2))\" y=\"\(fixed(bottom - h, 2))\" width=\"\(fixed(max(binWidth - 0.6, 0.5), 2))\" height=\"\(fixed(h, 2))\" fill=\"#c6dbef\"/>")
        }
        add("<line x1=\"\(left)\" x2=\"\(width - right)\" y1=\"\(bottom)\" y2=\"\(bottom)\" stroke=\"#666\"/>")
        for choice in a.thresholds {
            let px = x(min(choice.threshold, a.max))
            add("<line x1=\"\(fixed(px, 1))\" x2=\"\(fixed(px, 1))\" y1=\"\(top)\" y2=\"\(bottom)\" stroke=\"\(methodColors[choice.method] ?? "#333")\" stroke-width=\"\(choice.method == "search" ? 2.2 : 1.6)\"\(choice.method == "search" ? "" : " stroke-dasharray=\"3 2\"")><title>\(choice.method): T = \(fixed(choice.threshold, 3)), clips \(percent(choice.clippedShare, digits: 3))</title></line>")
        }
        add("<text class=\"tick\" x=\"\(left)\" y=\"\(bottom + 12)\">0</text><text class=\"tick\" x=\"\(width - right)\" y=\"\(bottom + 12)\" text-anchor=\"end\">\(fixed(a.max, a.max < 10 ? 2 : 1))</text>")
        let clipped = a.thresholds.first { $0.method == "search" } ?? a.thresholds.first { abs($0.threshold - a.threshold) < 1e-9 }
        add("<text class=\"hist-label\" x=\"\(width / 2)\" y=\"\(bottom + 22)\" text-anchor=\"middle\">T \(fixed(a.threshold, 2)) &middot; clips \(percent(clipped?.clippedShare ?? 0, digits: 3)) &middot; zeros \(fixed(a.zeroShare * 100, 0))%</text>")
        add("</svg><figcaption>\(layer.index): \(escape(layer.name)) <span class=\"dim\">\(layer.inChannels)&rarr;\(layer.outChannels)\(layer.stride == 2 ? " /2" : "")\(layer.groups > 1 ? " g\(layer.groups)" : "")</span></figcaption></figure>")
    }

    mutating func layerTable(_ r: AnalysisReport) {
        add("<section><h2>Per layer</h2><table class=\"layers\"><thead><tr><th>#</th><th>block</th><th>shape</th><th>branches</th>")
        add("<th>w range</th><th>max/std</th><th>kurtosis</th><th>int8 share median / min</th><th>w SQNR</th><th>act. max / T</th><th>ch. spread</th><th>alone: SQNR, agr.</th><th>INT8 net SQNR</th><th>refinement</th></tr></thead><tbody>")
        let worst = Set(r.layers.sorted { $0.sensitivitySQNR < $1.sensitivitySQNR }.prefix(3).map(\.index))
        for l in r.layers {
            var refinement: [String] = []
            if let e = l.equalization, e.channelRangeSpreadBefore > 0 {
                refinement.append("CLE spread \(fixed(e.channelRangeSpreadBefore, 0))&rarr;\(fixed(e.channelRangeSpreadAfter, 0))")
            }
            if let f = l.refinement {
                if let before = f.methodOutputError, let after = f.chosenOutputError, before > 0 {
                    refinement.append("search T \(fixed(f.methodThreshold, 2))&rarr;\(fixed(f.chosenThreshold, 2)) (err &minus;\(fixed((1 - after / before) * 100, 0))%)")
                }
                if let before = f.nearestRoundingError, let after = f.optimizedRoundingError, before > 0 {
                    refinement.append("gptq err &minus;\(fixed((1 - after / before) * 100, 0))%")
                }
            }
            if let shift = l.biasCorrectionShift { refinement.append("BC \(fixed(shift, 2)) steps") }
            let baseline = l.baselineCumulativeSQNR.map { " <span class=\"dim\">(\(fixed($0, 1)))</span>" } ?? ""
            add("<tr\(worst.contains(l.index) ? " class=\"worst\"" : "")><td>\(l.index)</td><td>\(escape(l.name))</td><td>\(l.inChannels)&rarr;\(l.outChannels)\(l.stride == 2 ? " /2" : "")\(l.groups > 1 ? " g\(l.groups)" : "")</td><td class=\"small\">\(escape(l.branches.joined(separator: ", ")))</td><td>\(fixed(Double(l.weights.min), 2))..\(fixed(Double(l.weights.max), 2))</td><td>\(fixed(l.weights.maxOverStd, 0))</td><td>\(fixed(l.weights.kurtosis, 1))</td><td>\(percent(l.weights.rangeShareMedian, digits: 0)) / \(percent(l.weights.rangeShareMin, digits: 1))</td><td>\(fixed(l.weights.quantizationSQNR, 1))</td><td>\(fixed(l.activation.max, 1)) / \(fixed(l.activation.threshold, 1))</td><td>\(fixed(l.activation.channelSpread, 1))</td><td>\(fixed(l.sensitivitySQNR, 1)) dB, \(percent(l.sensitivityAgreement, digits: 0))</td><td>\(fixed(l.cumulativeSQNR, 1))\(baseline)</td><td class=\"small\">\(refinement.joined(separator: "; "))</td></tr>")
        }
        add("</tbody></table><p class=\"note\">INT8 net SQNR in dB for the analyzed configuration (grey: without refinement). Red rows: the three most sensitive layers.</p></section>")
    }
}

private let style = """
body{font-family:"DejaVu Sans",Helvetica,Arial,sans-serif;color:#222;max-width:1000px;margin:24px auto;padding:0 20px;line-height:1.4}
h1{font-size:26px;margin:0 0 4px}h2{font-size:19px;margin:28px 0 6px;border-bottom:1px solid #ddd;padding-bottom:4px}h3{font-size:15px;margin:18px 0 4px}
.sub{color:#555;margin:2px 0;font-size:14px}.note{color:#555;font-size:13px;margin:4px 0 8px}.dim{color:#888}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:18px 0}.card{flex:1 1 160px;border:1px solid #ddd;border-radius:8px;padding:10px 14px;background:#fafbfc}
.card-title{font-size:12px;color:#666;text-transform:uppercase;letter-spacing:.04em}.card-value{font-size:26px;font-weight:bold;margin:2px 0}.card-detail{font-size:12px;color:#666}
ul.conclusions li{margin:4px 0}
table{border-collapse:collapse;font-size:13px;width:100%}th,td{border-bottom:1px solid #e4e4e4;padding:4px 6px;text-align:right;vertical-align:top}
th{background:#f3f5f7;font-weight:600}td:first-child,th:first-child,table.layers td:nth-child(2){text-align:left}
table.layers td,table.layers th{font-size:11.5px;padding:3px 4px}td.small{font-size:10.5px;text-align:left;color:#444}
tr.default td{background:#eef5fc}tr.worst td{background:#fdecea}.tag{font-size:10px;background:#1f77b4;color:#fff;border-radius:3px;padding:1px 4px}
svg.plot{width:100%;height:auto;display:block}svg text{font-family:"DejaVu Sans",Helvetica,Arial,sans-serif}
.tick{font-size:11px;fill:#555}.axis-label{font-size:12px;fill:#333}.bar-label{font-size:9.5px;fill:#333}.legend text{font-size:12px;fill:#333}
.grid-line{stroke:#e6e6e6;stroke-width:1}.hist-label{font-size:9.5px;fill:#333}
.grid{display:grid;grid-template-columns:repeat(4,1fr);gap:6px 10px}figure.hist{margin:0;border:1px solid #eee;border-radius:6px;padding:4px}
figcaption{font-size:11.5px;text-align:center}.legend-row span{margin-right:14px;font-size:13px}
footer{margin:30px 0 10px;color:#888;font-size:12px}
@media print{body{max-width:none;margin:0}section,figure,svg{break-inside:avoid}.grid{grid-template-columns:repeat(4,1fr)}}
"""

func escape(_ text: String) -> String {
    var out = ""
    for c in text {
        switch c {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        default: out.append(c)
        }
    }
    return out
}

/// `value` with `digits` decimals (no locale, no printf: the report's numbers look the same everywhere).
func fixed(_ value: Double, _ digits: Int) -> String {
    guard value.isFinite else { return value.isNaN ? "nan" : (value > 0 ? "inf" : "-inf") }
    guard abs(value) < 1e15 else { return "\(value)" }
    let power = pow(10, Double(digits))
    let scaled = (abs(value) * power).rounded()
    let whole = Int64(scaled / power)
    let fraction = Int64(scaled - Double(whole) * power)
    let sign = value < 0 && scaled > 0 ? "-" : ""
    guard digits > 0 else { return sign + "\(whole)" }
    let digitsText = String(fraction)
    return sign + "\(whole)." + String(repeating: "0", count: max(0, digits - digitsText.count)) + digitsText
}

func percent(_ share: Double, digits: Int = 2) -> String { fixed(share * 100, digits) + "%" }

func signed(_ value: Double, _ digits: Int) -> String { (value >= 0 ? "+" : "") + fixed(value, digits) }

// Cross-layer equalization (Nagel et al. 2019, "Data-Free Quantization"; AIMET's CLE): ReLU(x / s) = ReLU(x) / s
// for s > 0, so conv i's output channel c can be divided by s_c (its weight row and bias) and every weight of the
// next layer reading channel c multiplied by s_c, and the FP32 network computes exactly the same function.
// The freedom is spent on the two per-tensor / per-column ranges int8 sees: conv i's activation channel c
// (range a_c, quantized with one scale for the whole tensor) and the next layer's weight column c (range r_c,
// sharing each output channel's scale with the other columns). Per-output-channel weight scales make the
// original, weight-only criterion (row range of conv i) irrelevant, so the activation's measured range stands in
// for it: s_c = sqrt(a_c / r_c) makes both a_c / s_c and r_c * s_c equal to sqrt(a_c r_c).
#if canImport(FoundationEssentials)
import FoundationEssentials
import Glibc
#else
import Foundation
#endif

/// Per-channel maxima of every conv output (after ReLU) over some calibration images.
struct ChannelMaxima {
    var values: [[Float]]

    init(network: FusedNetwork) { values = network.convs.map { [Float](repeating: 0, count: $0.outChannels) } }

    /// An observed conv output, channel-major ([channel][image][y][x]).
    mutating func observe(_ site: ActivationSite, _ buffer: UnsafeBufferPointer<Float>) {
        guard case .conv(let index) = site, values.indices.contains(index) else { return }
        let channels = values[index].count
        let length = buffer.count / max(channels, 1)
        for channel in 0..<channels {
            var high = values[index][channel]
            for value in buffer[(channel * length)..<((channel + 1) * length)] where value > high { high = value }
            values[index][channel] = high
        }
    }
}

/// What equalization did to one conv layer's output channels.
public struct EqualizationScales: Sendable, Codable, Equatable {
    /// Each output channel was divided by this (1 = unchanged).
    public var scales: [Double]
    /// Largest over smallest per-channel activation maximum, before and after (dead channels left out).
    public var channelRangeSpreadBefore: Double
    public var channelRangeSpreadAfter: Double
}

/// Input pixels of the images whose per-channel maxima drive equalization (16 images at 224x224, 784 at 32x32);
/// bounds time, not tuned.
let equalizationPixels = 16 * 224 * 224

/// Most sweeps over the layer pairs; each pair's scales depend on its neighbours', and a few sweeps settle them.
let equalizationSweeps = 8

/// `network` with every conv's output channels rescaled against the next layer (the next conv, or the FC for the
/// last conv; pooling is linear). `maxima`: the per-channel activation maxima of `network` itself.
func equalizeCrossLayer(_ network: FusedNetwork, maxima: ChannelMaxima) -> (FusedNetwork, [EqualizationScales]) {
    var net = network
    var ranges = maxima.values.map { $0.map(Double.init) }
    var total = network.convs.map { [Double](repeating: 1, count: $0.outChannels) }
    for _ in 0..<equalizationSweeps {
        var largestChange = 0.0
        for index in net.convs.indices {
            let channels = net.convs[index].outChannels
            let columns = nextLayerColumnRanges(net, after: index)
            var scales = [Double](repeating: 1, count: channels)
            var logSum = 0.0, used = 0
            for c in 0..<channels where ranges[index][c] > 0 && columns[c] > 0 {
                scales[c] = (ranges[index][c] / columns[c]).squareRoot()
                logSum += log(scales[c])
                used += 1
            }
            guard used > 0 else { continue }
            // Only ratios between channels matter (the layer's scales absorb a common factor); keeping their
            // geometric mean at 1 keeps the numbers where they were.
            let common = exp(logSum / Double(used))
            for c in 0..<channels where scales[c] != 1 || (ranges[index][c] > 0 && columns[c] > 0) {
                scales[c] /= common
                largestChange = max(largestChange, abs(log(scales[c])))
            }
            apply(&net, layer: index, scales: scales)
            for c in 0..<channels {
                ranges[index][c] /= scales[c]
                total[index][c] *= scales[c]
            }
        }
        if largestChange < 1e-3 { break }
    }
    let report = net.convs.indices.map { index in
        EqualizationScales(scales: total[index], channelRangeSpreadBefore: spread(maxima.values[index].map(Double.init)),
                           channelRangeSpreadAfter: spread(ranges[index]))
    }
    return (net, report)
}

private func spread(_ values: [Double]) -> Double {
    let live = values.filter { $0 > 0 }
    guard let low = live.min(), let high = live.max() else { return 1 }
    return high / low
}

/// Per input channel c of the layer after conv `index`: the largest |weight| reading c.
private func nextLayerColumnRanges(_ network: FusedNetwork, after index: Int) -> [Double] {
    let channels = network.convs[index].outChannels
    var ranges = [Double](repeating: 0, count: channels)
    if index + 1 < network.convs.count {
        let next = network.convs[index + 1]
        let inPerGroup = next.inChannels / next.groups, outPerGroup = next.outChannels / next.groups
        next.weight.withUnsafeBufferPointer { weight in
            for output in 0..<next.outChannels {
                let group = output / outPerGroup
                for local in 0..<inPerGroup {
                    let base = (output * inPerGroup + local) * 9
                    var high = ranges[group * inPerGroup + local]
                    for tap in 0..<9 { high = max(high, Double(abs(weight[base + tap]))) }
                    ranges[group * inPerGroup + local] = high
                }
            }
        }
    } else {
        for k in 0..<network.numClasses {
            for c in 0..<channels { ranges[c] = max(ranges[c], Double(abs(network.fcWeight[k * channels + c]))) }
        }
    }
    return ranges
}

/// Divides conv `layer`'s output channel c by scales[c] and multiplies the next layer's reads of c by it. The
/// weights are changed in place: B3's 110 M of them, element by element through the network's array of layers,
/// took a fifth of its calibration's first pass.
private func apply(_ network: inout FusedNetwork, layer index: Int, scales: [Double]) {
    let rowLength = network.convs[index].inChannels / network.convs[index].groups * 9
    network.convs[index].weight.withUnsafeMutableBufferPointer { weight in
        for c in scales.indices where scales[c] != 1 {
            let factor = Float(1 / scales[c])
            for position in (c * rowLength)..<((c + 1) * rowLength) { weight[position] *= factor }
        }
    }
    for c in scales.indices where scales[c] != 1 { network.convs[index].bias[c] *= Float(1 / scales[c]) }
    if index + 1 < network.convs.count {
        let groups = network.convs[index + 1].groups, outChannels = network.convs[index + 1].outChannels
        let inPerGroup = network.convs[index + 1].inChannels / groups, outPerGroup = outChannels / groups
        network.convs[index + 1].weight.withUnsafeMutableBufferPointer { weight in
            for output in 0..<outChannels {
                let group = output / outPerGroup
                for local in 0..<inPerGroup where scales[group * inPerGroup + local] != 1 {
                    let factor = Float(scales[group * inPerGroup + local])
                    let base = (output * inPerGroup + local) * 9
                    for tap in 0..<9 { weight[base + tap] *= factor }
                }
            }
        }
    } else {
        let channels = scales.count
        for k in 0..<network.numClasses {
            for c in 0..<channels where scales[c] != 1 { network.fcWeight[k * channels + c] *= Float(scales[c]) }
        }
    }
}

// An independent, deliberately naive Swift statement of docs/model-format.md "Quantization arithmetic",
// written from the spec and not from the C code, so the C scalar oracle is checked against something
// other than itself.
import CQARepKernels

struct ConvCase: CustomStringConvertible {
    var inH: Int, inW: Int, inC: Int, outC: Int, stride: Int, groups: Int, batch: Int

    var outH: Int { (inH - 1) / stride + 1 }
    var outW: Int { (inW - 1) / stride + 1 }
    var inPerGroup: Int { inC / groups }
    var outPerGroup: Int { outC / groups }
    var inputCount: Int { batch * inH * inW * inC }
    var outputCount: Int { batch * outH * outW * outC }
    var weightCount: Int { outC * inPerGroup * 9 }
    var shape: qk_conv_shape {
        qk_conv_shape(in_h: Int32(inH), in_w: Int32(inW), in_c: Int32(inC), out_c: Int32(outC),
                      stride: Int32(stride), groups: Int32(groups))
    }
    var description: String {
        "batch \(batch) \(inH)x\(inW)x\(inC) -> \(outC) stride \(stride) groups \(groups)"
    }
}

/// Tallies what the outputs exercised, so the suite can prove it reached saturation and ties.
struct RequantizeCoverage {
    var zeros = 0, saturated = 0, between = 0, ties = 0

    mutating func add(_ coverage: RequantizeCoverage) {
        zeros += coverage.zeros
        saturated += coverage.saturated
        between += coverage.between
        ties += coverage.ties
    }
}

enum NaiveReference {
    static func requantize(_ accPlusBias: Int32, _ multiplier: Float, _ coverage: inout RequantizeCoverage) -> UInt8 {
        var t = Float(accPlusBias)
        t = t * multiplier
        if t - t.rounded(.down) == 0.5 && t > 0 && t < 255 { coverage.ties += 1 }
        t = min(max(t, 0), 255)
        let y = UInt8(t.rounded(.toNearestOrEven))
        switch y {
        case 0: coverage.zeros += 1
        case 255: coverage.saturated += 1
        default: coverage.between += 1
        }
        return y
    }

    static func conv(_ c: ConvCase, weightsOIHW w: [Int8], bias: [Int32], multiplier: [Float], pad: [UInt8],
                     input: [UInt8], coverage: inout RequantizeCoverage) -> [UInt8] {
        var output = [UInt8](repeating: 0, count: c.outputCount)
        for n in 0..<c.batch {
            for oy in 0..<c.outH {
                for ox in 0..<c.outW {
                    for o in 0..<c.outC {
                        let g = o / c.outPerGroup
                        var acc: Int64 = 0
                        for ci in 0..<c.inPerGroup {
                            let channel = g * c.inPerGroup + ci
                            for ky in 0..<3 {
                                for kx in 0..<3 {
                                    let iy = oy * c.stride + ky - 1, ix = ox * c.stride + kx - 1
                                    let x: UInt8
                                    if iy >= 0 && iy < c.inH && ix >= 0 && ix < c.inW {
                                        x = input[((n * c.inH + iy) * c.inW + ix) * c.inC + channel]
                                    } else {
                                        x = pad[channel]
                                    }
                                    acc += Int64(x) * Int64(w[((o * c.inPerGroup + ci) * 3 + ky) * 3 + kx])
                                }
                            }
                        }
                        let index = ((n * c.outH + oy) * c.outW + ox) * c.outC + o
                        output[index] = requantize(Int32(acc + Int64(bias[o])), multiplier[o], &coverage)
                    }
                }
            }
        }
        return output
    }

    static func avgpool(batch: Int, pixels: Int, channels: Int, input: [UInt8], multiplier: Float,
                        coverage: inout RequantizeCoverage) -> [UInt8] {
        var output = [UInt8](repeating: 0, count: batch * channels)
        for n in 0..<batch {
            for c in 0..<channels {
                var sum: Int32 = 0
                for p in 0..<pixels { sum += Int32(input[(n * pixels + p) * channels + c]) }
                output[n * channels + c] = requantize(sum, multiplier, &coverage)
            }
        }
        return output
    }

    static func fc(batch: Int, inC: Int, outC: Int, weight: [Int8], bias: [Int32], multiplier: [Float],
                   input: [UInt8]) -> [Float] {
        var logits = [Float](repeating: 0, count: batch * outC)
        for n in 0..<batch {
            for k in 0..<outC {
                var acc: Int64 = 0
                for c in 0..<inC { acc += Int64(input[n * inC + c]) * Int64(weight[k * inC + c]) }
                logits[n * outC + k] = Float(Int32(acc + Int64(bias[k]))) * multiplier[k]
            }
        }
        return logits
    }
}

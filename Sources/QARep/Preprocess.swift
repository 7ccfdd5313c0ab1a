// Resize + center crop (docs/model-format.md, "Preprocessing"). The offline module calls this same function
// for calibration so that the quantization ranges are measured on exactly the pixels the runtime produces.

package enum PreprocessLimits {
    package static let maxSourceSide = 1 << 16
}

/// Filter taps of one axis: output pixel j reads source pixels start[j] ..< start[j] + count[j] with weights
/// weights[j * maxTaps ..< j * maxTaps + count[j]].
private struct AxisFilter {
    var start: [Int] = []
    var count: [Int] = []
    var weights: [Float] = []
    var maxTaps = 0

    /// No taps (a resize that is the identity needs none).
    init() {}

    /// Output pixels first ..< first + outputCount of a resize from inSize to resizedSize: triangle filter
    /// with half-pixel centers, widened to the scale factor when shrinking (as PIL's BILINEAR does).
    init(inSize: Int, resizedSize: Int, first: Int, outputCount: Int) {
        let scale = Float(inSize) / Float(resizedSize)
        let filterScale = max(scale, 1)
        let support = filterScale
        maxTaps = Int((support * 2).rounded(.up)) + 2
        weights = [Float](repeating: 0, count: outputCount * maxTaps)
        for j in 0..<outputCount {
            let center = (Float(first + j) + 0.5) * scale
            // Clamped so that float rounding at extreme scales can never produce an empty or inverted window.
            let lo = min(max(Int((center - support + 0.5).rounded(.down)), 0), inSize - 1)
            let hi = max(min(Int((center + support + 0.5).rounded(.down)), inSize, lo + maxTaps), lo + 1)
            var sum: Float = 0
            for i in lo..<hi {
                let t = (Float(i) - center + 0.5) / filterScale
                let w = max(0, 1 - abs(t))
                weights[j * maxTaps + i - lo] = w
                sum += w
            }
            if sum > 0 {
                for i in 0..<(hi - lo) { weights[j * maxTaps + i] /= sum }
            } else {
                weights[j * maxTaps] = 1
            }
            start.append(lo)
            count.append(hi - lo)
        }
    }
}

@inline(__always)
private func roundToPixel(_ value: Float) -> UInt8 {
    var t = value
    if !(t > 0) { t = 0 }
    if t > 255 { t = 255 }
    // Round half to even by adding 2^23 (exact for 0...255 in the default rounding mode): the integer is then
    // the low mantissa bits. The baseline x86-64 target has no roundss (rounded(.toNearestOrEven) was a call to
    // rintf per value), and a checked Float-to-UInt8 conversion kept the loops from vectorizing.
    return UInt8(truncatingIfNeeded: (t + 0x1p23).bitPattern)
}

/// The size an image of width x height is resized to before the center crop (docs/model-format.md,
/// "Preprocessing"): the output size itself for cropRatio 1, else max(W, round(w * f)) x max(H, round(h * f))
/// with f = max(W / (w * cropRatio), H / (h * cropRatio)) computed in double, rounded half away from zero.
/// Decoders that can shrink while decoding (JPEG's DCT scaling) use it to choose the smallest scale whose
/// output still covers this size, so that the resize that follows only shrinks.
package func resizedSize(width: Int, height: Int, outputWidth: Int, outputHeight: Int, cropRatio: Float) -> (width: Int, height: Int) {
    guard cropRatio != 1 else { return (outputWidth, outputHeight) }
    let f = max(Double(outputWidth) / (Double(width) * Double(cropRatio)),
                Double(outputHeight) / (Double(height) * Double(cropRatio)))
    // f <= 4096 / (1 * tiny crop) could be huge; clamp the product before converting to Int.
    let rw = min((Double(width) * f).rounded(.toNearestOrAwayFromZero), Double(1 << 30))
    let rh = min((Double(height) * f).rounded(.toNearestOrAwayFromZero), Double(1 << 30))
    return (max(outputWidth, Int(rw)), max(outputHeight, Int(rh)))
}

/// Resize + center crop fed one source row at a time: the only statement of the preprocessing arithmetic
/// (`resizeAndCrop` feeds it a whole image). Rows come in order, 0 ..< height; each row the vertical pass
/// reads (`rowsNeeded`) goes through the horizontal pass at once and only its outputWidth-wide result is kept,
/// so a decoder that hands out rows never needs the whole image: `heldBytes` is all this holds. `finish` runs
/// the vertical pass. Separable, horizontal pass first, each pass computed in float32 and rounded half to even
/// to uint8 (like PIL, which also stores the intermediate image as 8-bit).
package struct StreamingResize {
    package let width: Int, height: Int, outputWidth: Int, outputHeight: Int
    /// The source rows the output depends on; other rows may be skipped (or pushed and ignored).
    package let rowsNeeded: Range<Int>
    /// The next row `push` expects.
    package private(set) var nextRow = 0
    private let horizontal: AxisFilter
    private let vertical: AxisFilter
    private var intermediate: [UInt8]
    /// One source row as floats, width * 3 + 1 (push's scratch).
    private var rowPixels: [Float]
    /// Same size, no crop: every output pixel's filter is weight 1 on its own source pixel and 0 on the next, so
    /// the passes would return their input bit for bit; the rows are copied instead (30-37 us per 32x32 image).
    private let isIdentity: Bool

    /// Checks the sizes; throws before allocating anything for sizes outside the limits.
    package init(width: Int, height: Int, outputWidth: Int, outputHeight: Int, cropRatio: Float) throws(QARepError) {
        guard (1...PreprocessLimits.maxSourceSide).contains(width), (1...PreprocessLimits.maxSourceSide).contains(height) else {
            throw .invalidArgument("image size \(width)x\(height) outside 1...\(PreprocessLimits.maxSourceSide)")
        }
        guard (1...ModelFormat.maxInputSide).contains(outputWidth), (1...ModelFormat.maxInputSide).contains(outputHeight) else {
            throw .invalidArgument("output size \(outputWidth)x\(outputHeight) outside 1...\(ModelFormat.maxInputSide)")
        }
        guard cropRatio.isFinite, cropRatio > 0, cropRatio <= 1 else {
            throw .invalidArgument("crop ratio \(cropRatio) outside (0, 1]")
        }
        self.width = width
        self.height = height
        self.outputWidth = outputWidth
        self.outputHeight = outputHeight
        let (resizedWidth, resizedHeight) = resizedSize(width: width, height: height, outputWidth: outputWidth,
                                                        outputHeight: outputHeight, cropRatio: cropRatio)
        isIdentity = resizedWidth == width && resizedHeight == height && width == outputWidth && height == outputHeight
        if isIdentity {
            horizontal = AxisFilter()
            vertical = AxisFilter()
            rowsNeeded = 0..<height
            intermediate = [UInt8](repeating: 0, count: height * width * 3)
            rowPixels = []
            return
        }
        let offsetX = (resizedWidth - outputWidth) / 2, offsetY = (resizedHeight - outputHeight) / 2
        horizontal = AxisFilter(inSize: width, resizedSize: resizedWidth, first: offsetX, outputCount: outputWidth)
        vertical = AxisFilter(inSize: height, resizedSize: resizedHeight, first: offsetY, outputCount: outputHeight)
        let firstRow = vertical.start.first ?? 0
        let lastRow = zip(vertical.start, vertical.count).map { $0 + $1 }.max() ?? 0
        rowsNeeded = firstRow..<max(lastRow, firstRow)
        intermediate = [UInt8](repeating: 0, count: rowsNeeded.count * outputWidth * 3)
        rowPixels = [Float](repeating: 0, count: width * 3 + 1)
    }

    /// Bytes held between rows: the horizontally resized rows the vertical pass reads, and one source row as floats.
    package var heldBytes: Int { intermediate.count + rowPixels.count * MemoryLayout<Float>.stride }

    /// Source row `nextRow` (width * 3 bytes, RGB); rows outside `rowsNeeded` are only counted.
    package mutating func push(row: UnsafePointer<UInt8>) {
        let index = nextRow
        nextRow += 1
        guard rowsNeeded.contains(index) else { return }
        let r = index - rowsNeeded.lowerBound
        let outputWidth = self.outputWidth, width = self.width
        if isIdentity {
            intermediate.withUnsafeMutableBufferPointer { rows in
                guard let base = rows.baseAddress else { return }
                (base + r * width * 3).update(from: row, count: width * 3)
            }
            return
        }
        let horizontal = self.horizontal
        // The row as floats, converted once (a loop the compiler vectorizes) instead of once per tap that reads
        // it; each output pixel then sums its taps as one 4-lane multiply and add over (r, g, b, next pixel's
        // r), the same float operations per channel in the same order as three scalar sums (no FMA: Swift does
        // not contract). The fourth lane is ignored; one float of padding keeps the last pixel's load inside.
        rowPixels.withUnsafeMutableBufferPointer { pixels in
            for i in 0..<(width * 3) { pixels[i] = Float(row[i]) }
        }
        intermediate.withUnsafeMutableBufferPointer { intermediate in
            rowPixels.withUnsafeBufferPointer { pixels in
                horizontal.weights.withUnsafeBufferPointer { weights in
                    horizontal.start.withUnsafeBufferPointer { starts in
                        horizontal.count.withUnsafeBufferPointer { counts in
                            guard let first = pixels.baseAddress else { return }
                            let floats = UnsafeRawPointer(first)
                            for j in 0..<outputWidth {
                                let base = j * horizontal.maxTaps
                                var acc = SIMD4<Float>()
                                let start = starts[j]
                                for t in 0..<counts[j] {
                                    let p = floats.loadUnaligned(fromByteOffset: (start + t) * 12, as: SIMD4<Float>.self)
                                    acc += p * weights[base + t]
                                }
                                let o = (r * outputWidth + j) * 3
                                intermediate[o] = roundToPixel(acc[0])
                                intermediate[o + 1] = roundToPixel(acc[1])
                                intermediate[o + 2] = roundToPixel(acc[2])
                            }
                        }
                    }
                }
            }
        }
    }

    /// Skips source rows the output does not read (a decoder may still have to decode them); throws rather
    /// than skip rows it reads.
    package mutating func skipRows(upTo row: Int) throws(QARepError) {
        guard row <= max(nextRow, rowsNeeded.lowerBound) || nextRow >= rowsNeeded.upperBound else {
            throw .invalidArgument("resize asked to skip to source row \(row), past row \(max(nextRow, rowsNeeded.lowerBound)) that it reads next")
        }
        nextRow = max(nextRow, row)
    }

    /// The vertical pass: outputHeight * outputWidth * 3 bytes, HWC. Throws if rows the output reads are missing.
    package func finish() throws(QARepError) -> [UInt8] {
        guard nextRow >= rowsNeeded.upperBound else {
            throw .invalidArgument("resize got \(nextRow) of the \(rowsNeeded.upperBound) source rows it needs")
        }
        if isIdentity { return intermediate }
        let rowBytes = outputWidth * 3
        var output = [UInt8](repeating: 0, count: outputHeight * rowBytes)
        let firstRow = rowsNeeded.lowerBound
        let vertical = self.vertical
        // Taps outer, pixels inner (so the inner loop vectorizes); each pixel still sums its taps from 0 in
        // tap order, the same float operations as one pixel at a time.
        var acc = [Float](repeating: 0, count: rowBytes)
        output.withUnsafeMutableBufferPointer { output in
            intermediate.withUnsafeBufferPointer { intermediate in
                vertical.weights.withUnsafeBufferPointer { weights in
                    acc.withUnsafeMutableBufferPointer { acc in
                        for i in 0..<outputHeight {
                            let base = i * vertical.maxTaps
                            let rowBase = (vertical.start[i] - firstRow) * rowBytes
                            for x in 0..<rowBytes { acc[x] = 0 }
                            for t in 0..<vertical.count[i] {
                                let w = weights[base + t]
                                let source = rowBase + t * rowBytes
                                // Wrapping index arithmetic (it cannot overflow: the buffers exist) lets these loops vectorize.
                                for x in 0..<rowBytes { acc[x] += Float(intermediate[source &+ x]) * w }
                            }
                            let target = i * rowBytes
                            for x in 0..<rowBytes { output[target &+ x] = roundToPixel(acc[x]) }
                        }
                    }
                }
            }
        }
        return output
    }
}

/// Resizes an RGB image (rows of width * 3 bytes, rowStride bytes apart) and center-crops it to
/// outputWidth x outputHeight; returns outputHeight * outputWidth * 3 bytes, HWC. The arithmetic is
/// `StreamingResize`'s (see `resizedSize` for the resized size; crop offset ((rw - W) / 2, (rh - H) / 2)),
/// fed only the rows the output reads.
package func resizeAndCrop(rgb: UnsafeBufferPointer<UInt8>, width: Int, height: Int, rowStride: Int,
                          outputWidth: Int, outputHeight: Int, cropRatio: Float) throws(QARepError) -> [UInt8] {
    guard (1...PreprocessLimits.maxSourceSide).contains(width), (1...PreprocessLimits.maxSourceSide).contains(height) else {
        throw .invalidArgument("image size \(width)x\(height) outside 1...\(PreprocessLimits.maxSourceSide)")
    }
    guard rowStride >= width * 3 else { throw .invalidArgument("row stride \(rowStride) is less than width * 3 = \(width * 3)") }
    let (rowsBytes, overflow) = (height - 1).multipliedReportingOverflow(by: rowStride)
    guard !overflow, rgb.count >= rowsBytes + width * 3, let source = rgb.baseAddress else {
        throw QARepError(.bufferSize, "image buffer holds \(rgb.count) bytes, too few for \(height) rows of stride \(rowStride)")
    }
    var resize = try StreamingResize(width: width, height: height, outputWidth: outputWidth, outputHeight: outputHeight,
                                     cropRatio: cropRatio)
    try resize.skipRows(upTo: resize.rowsNeeded.lowerBound)
    for row in resize.rowsNeeded { resize.push(row: source + row * rowStride) }
    return try resize.finish()
}

/// Normalized NCHW floats (x = (pixel / 255 - mean) / std) back to HWC pixels, as docs/model-format.md
/// states for float input: t = x * std + mean, t = t * 255, clamp to [0, 255] (NaN to 0), round half to even.
/// `input` holds images x 3 x height x width values.
package func pixelsFromNormalized(_ input: UnsafeBufferPointer<Float>, images: Int, height: Int, width: Int,
                                  preprocessing: Preprocessing) -> [UInt8] {
    [UInt8](unsafeUninitializedCapacity: images * height * width * 3) { buffer, count in
        if let base = buffer.baseAddress {
            pixelsFromNormalized(input, images: images, height: height, width: width, preprocessing: preprocessing, into: base)
        }
        count = buffer.count
    }
}

/// The same into `pixels` (images x height x width x 3 bytes), so that a session converts straight into its
/// own input buffer and a run allocates nothing.
package func pixelsFromNormalized(_ input: UnsafeBufferPointer<Float>, images: Int, height: Int, width: Int,
                                  preprocessing: Preprocessing, into pixels: UnsafeMutablePointer<UInt8>) {
    let plane = height * width
    let mean = preprocessing.mean, std = preprocessing.std
    for n in 0..<images {
        for c in 0..<3 {
            let planeStart = (n * 3 + c) * plane
            for p in 0..<plane {
                var t = input[planeStart + p] * std[c]
                t = t + mean[c]
                t = t * 255
                // Written so that NaN clamps to 0 like C's fmaxf.
                if !(t > 0) { t = 0 }
                if t > 255 { t = 255 }
                pixels[(n * plane + p) * 3 + c] = UInt8(t.rounded(.toNearestOrEven))
            }
        }
    }
}

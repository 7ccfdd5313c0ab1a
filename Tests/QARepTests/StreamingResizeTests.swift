// The preprocessing arithmetic now lives in StreamingResize, which resizeAndCrop feeds; the whole-image function
// as it was before (copied verbatim below, renamed) is the oracle both must match byte for byte.
import RepVGGArchitectures
import XCTest
@testable import QARep

final class StreamingResizeTests: XCTestCase {
    func testStreamingAndResizeAndCropEqualTheOldWholeImageFunction() throws {
        var rng = SeededGenerator(seed: 77)
        let crops: [Float] = [1, 0.875, 0.5, 0.95]
        for trial in 0..<120 {
            let width = 1 + Int(rng.next() % (trial < 60 ? 40 : 700))
            let height = 1 + Int(rng.next() % (trial < 60 ? 40 : 500))
            let outWidth = 1 + Int(rng.next() % 64), outHeight = 1 + Int(rng.next() % 64)
            let crop = crops[trial % crops.count]
            let stride = width * 3 + Int(rng.next() % 5)
            let image = rng.bytes(stride * height)
            let (oracle, whole) = try oracleAndWhole(image, width: width, height: height, stride: stride,
                                                     outWidth: outWidth, outHeight: outHeight, crop: crop)
            let label = "\(width)x\(height) -> \(outWidth)x\(outHeight) crop \(crop)"
            XCTAssertEqual(whole, oracle, label)
            // Every row pushed, in order, as a decoder hands them out.
            var stream = try StreamingResize(width: width, height: height, outputWidth: outWidth, outputHeight: outHeight,
                                             cropRatio: crop)
            XCTAssertLessThanOrEqual(stream.heldBytes, stream.rowsNeeded.count * outWidth * 3 + width * 12 + 4)
            image.withUnsafeBufferPointer { buffer in
                for y in 0..<height { stream.push(row: buffer.baseAddress! + y * stride) }
            }
            XCTAssertEqual(try stream.finish(), oracle, label)
        }
    }

    // Same size and no crop is copied row by row: still the oracle's bytes, as streamed and whole.
    func testSameSizeMatchesTheOracle() throws {
        var rng = SeededGenerator(seed: 78)
        for (side, crop) in [(1, Float(1)), (2, 1), (32, 1), (33, 1), (224, 1), (32, 0.875), (57, 0.95)] {
            let width = side, height = side + (side > 2 ? 3 : 0)
            let stride = width * 3 + 2
            let image = rng.bytes(stride * height)
            let (oracle, whole) = try oracleAndWhole(image, width: width, height: height, stride: stride,
                                                     outWidth: width, outHeight: height, crop: crop)
            XCTAssertEqual(whole, oracle, "\(width)x\(height) crop \(crop)")
            if crop == 1 { XCTAssertEqual(whole.count, width * height * 3) }
        }
    }

    /// The oracle's output and resizeAndCrop's for the same image.
    private func oracleAndWhole(_ image: [UInt8], width: Int, height: Int, stride: Int, outWidth: Int, outHeight: Int,
                                crop: Float) throws -> (oracle: [UInt8], whole: [UInt8]) {
        try image.withUnsafeBufferPointer { rgb in
            (try oracleResizeAndCrop(rgb: rgb, width: width, height: height, rowStride: stride, outputWidth: outWidth,
                                     outputHeight: outHeight, cropRatio: crop),
             try resizeAndCrop(rgb: rgb, width: width, height: height, rowStride: stride, outputWidth: outWidth,
                               outputHeight: outHeight, cropRatio: crop))
        }
    }

    func testFinishRefusesMissingRows() throws {
        var stream = try StreamingResize(width: 10, height: 10, outputWidth: 4, outputHeight: 4, cropRatio: 1)
        let row = [UInt8](repeating: 9, count: 30)
        row.withUnsafeBufferPointer { stream.push(row: $0.baseAddress!) }
        XCTAssertThrowsError(try stream.finish())
    }

    func testSkippingRowsTheOutputReadsThrows() throws {
        // 100 rows cropped to the middle half: rows 0..<25 or so are skippable, the middle ones are not.
        var stream = try StreamingResize(width: 100, height: 100, outputWidth: 10, outputHeight: 10, cropRatio: 0.5)
        let needed = stream.rowsNeeded
        XCTAssertGreaterThan(needed.lowerBound, 0)
        XCTAssertThrowsError(try stream.skipRows(upTo: needed.lowerBound + 1))
        XCTAssertNoThrow(try stream.skipRows(upTo: needed.lowerBound))
        // Once rows are pushed, skipping to where it already is does nothing; past it, it refuses.
        let row = [UInt8](repeating: 9, count: 300)
        row.withUnsafeBufferPointer { stream.push(row: $0.baseAddress!) }
        XCTAssertNoThrow(try stream.skipRows(upTo: needed.lowerBound + 1))
        XCTAssertThrowsError(try stream.skipRows(upTo: needed.lowerBound + 2))
        // With every row it reads pushed, skipping the rest is allowed.
        for _ in (needed.lowerBound + 1)..<needed.upperBound { row.withUnsafeBufferPointer { stream.push(row: $0.baseAddress!) } }
        XCTAssertNoThrow(try stream.skipRows(upTo: 100))
        XCTAssertNoThrow(try stream.finish())
    }

    func testResizedSizeIsTheDocumentedOne() {
        let photo = resizedSize(width: 4000, height: 3000, outputWidth: 224, outputHeight: 224, cropRatio: 0.875)
        XCTAssertEqual(photo.width, 341)
        XCTAssertEqual(photo.height, 256)
        XCTAssertEqual(resizedSize(width: 77, height: 13, outputWidth: 32, outputHeight: 30, cropRatio: 1).width, 32)
    }
}

// ---- the old whole-image function, verbatim but for its names ----

/// Filter taps of one axis: output pixel j reads source pixels start[j] ..< start[j] + count[j] with weights
/// weights[j * maxTaps ..< j * maxTaps + count[j]].
private struct OracleAxisFilter {
    var start: [Int] = []
    var count: [Int] = []
    var weights: [Float] = []
    var maxTaps = 0

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
private func oracleRoundToPixel(_ value: Float) -> UInt8 {
    var t = value
    if !(t > 0) { t = 0 }
    if t > 255 { t = 255 }
    return UInt8(t.rounded(.toNearestOrEven))
}

/// Resizes an RGB image (rows of width * 3 bytes, rowStride bytes apart) and center-crops it to
/// outputWidth x outputHeight; returns outputHeight * outputWidth * 3 bytes, HWC.
///
/// cropRatio 1 resizes straight to the output size; otherwise the scale factor is
/// max(W / (w * cropRatio), H / (h * cropRatio)) (computed in double), the resized size
/// max(W, round(w * f)) x max(H, round(h * f)) (half away from zero), and the crop offset
/// ((rw - W) / 2, (rh - H) / 2). Resizing is separable, horizontal pass first, each pass computed in float32
/// and rounded half to even to uint8 (like PIL, which also stores the intermediate image as 8-bit).
func oracleResizeAndCrop(rgb: UnsafeBufferPointer<UInt8>, width: Int, height: Int, rowStride: Int,
                          outputWidth: Int, outputHeight: Int, cropRatio: Float) throws(QARepError) -> [UInt8] {
    guard (1...PreprocessLimits.maxSourceSide).contains(width), (1...PreprocessLimits.maxSourceSide).contains(height) else {
        throw .invalidArgument("image size \(width)x\(height) outside 1...\(PreprocessLimits.maxSourceSide)")
    }
    guard (1...ModelFormat.maxInputSide).contains(outputWidth), (1...ModelFormat.maxInputSide).contains(outputHeight) else {
        throw .invalidArgument("output size \(outputWidth)x\(outputHeight) outside 1...\(ModelFormat.maxInputSide)")
    }
    guard rowStride >= width * 3 else { throw .invalidArgument("row stride \(rowStride) is less than width * 3 = \(width * 3)") }
    let (rowsBytes, overflow) = (height - 1).multipliedReportingOverflow(by: rowStride)
    guard !overflow, rgb.count >= rowsBytes + width * 3, let source = rgb.baseAddress else {
        throw QARepError(.bufferSize, "image buffer holds \(rgb.count) bytes, too few for \(height) rows of stride \(rowStride)")
    }
    guard cropRatio.isFinite, cropRatio > 0, cropRatio <= 1 else {
        throw .invalidArgument("crop ratio \(cropRatio) outside (0, 1]")
    }

    var resizedWidth = outputWidth, resizedHeight = outputHeight
    if cropRatio != 1 {
        let f = max(Double(outputWidth) / (Double(width) * Double(cropRatio)),
                    Double(outputHeight) / (Double(height) * Double(cropRatio)))
        // f <= 4096 / (1 * tiny crop) could be huge; clamp the product before converting to Int.
        let rw = min((Double(width) * f).rounded(.toNearestOrAwayFromZero), Double(1 << 30))
        let rh = min((Double(height) * f).rounded(.toNearestOrAwayFromZero), Double(1 << 30))
        resizedWidth = max(outputWidth, Int(rw))
        resizedHeight = max(outputHeight, Int(rh))
    }
    let offsetX = (resizedWidth - outputWidth) / 2, offsetY = (resizedHeight - outputHeight) / 2

    let horizontal = OracleAxisFilter(inSize: width, resizedSize: resizedWidth, first: offsetX, outputCount: outputWidth)
    let vertical = OracleAxisFilter(inSize: height, resizedSize: resizedHeight, first: offsetY, outputCount: outputHeight)

    // Horizontal pass over only the source rows the vertical pass reads.
    let firstRow = vertical.start.first ?? 0
    let lastRow = zip(vertical.start, vertical.count).map { $0 + $1 }.max() ?? 0
    let rowCount = max(lastRow - firstRow, 0)
    var intermediate = [UInt8](repeating: 0, count: rowCount * outputWidth * 3)
    for r in 0..<rowCount {
        let row = source + (firstRow + r) * rowStride
        for j in 0..<outputWidth {
            let base = j * horizontal.maxTaps
            var acc: (Float, Float, Float) = (0, 0, 0)
            for t in 0..<horizontal.count[j] {
                let w = horizontal.weights[base + t]
                let p = row + (horizontal.start[j] + t) * 3
                acc.0 += Float(p[0]) * w
                acc.1 += Float(p[1]) * w
                acc.2 += Float(p[2]) * w
            }
            let o = (r * outputWidth + j) * 3
            intermediate[o] = oracleRoundToPixel(acc.0)
            intermediate[o + 1] = oracleRoundToPixel(acc.1)
            intermediate[o + 2] = oracleRoundToPixel(acc.2)
        }
    }
    var output = [UInt8](repeating: 0, count: outputHeight * outputWidth * 3)
    let rowBytes = outputWidth * 3
    for i in 0..<outputHeight {
        let base = i * vertical.maxTaps
        for x in 0..<rowBytes {
            var acc: Float = 0
            for t in 0..<vertical.count[i] {
                acc += Float(intermediate[(vertical.start[i] + t - firstRow) * rowBytes + x]) * vertical.weights[base + t]
            }
            output[i * rowBytes + x] = oracleRoundToPixel(acc)
        }
    }
    return output
}


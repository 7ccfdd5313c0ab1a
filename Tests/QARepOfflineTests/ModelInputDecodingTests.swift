// Decoding for the model: the scale chosen per image size, scaled JPEG/WebP decoding, exact decoding equal to
// the whole-image pipeline, every failure an error naming the file, and headers that claim huge sizes.
import CImageCodecs
import Foundation
import QARep
import XCTest
@testable import QARepOffline

/// A smooth image (gradients and a few soft blobs), like a photo rather than noise, so scaled and exact
/// decoding can be compared.
func photoLikeImage(width: Int, height: Int) -> [UInt8] {
    var pixels = [UInt8](repeating: 0, count: width * height * 3)
    for y in 0..<height {
        for x in 0..<width {
            let u = Double(x) / Double(width), v = Double(y) / Double(height)
            let blob = 60 * sin(u * 7 + v * 3) * cos(v * 5)
            let o = (y * width + x) * 3
            pixels[o] = UInt8(max(0, min(255, 120 + 100 * u + blob)))
            pixels[o + 1] = UInt8(max(0, min(255, 40 + 150 * v - blob / 2)))
            pixels[o + 2] = UInt8(max(0, min(255, 200 - 120 * u * v + blob)))
        }
    }
    return pixels
}

/// WebP via libwebp's simple encoder (lossy at quality 90, or lossless).
func imagesEncodeWebP(width: Int, height: Int, pixels: [UInt8], lossless: Bool = false) throws -> [UInt8] {
    var output: UnsafeMutablePointer<UInt8>?
    let size = pixels.withUnsafeBufferPointer {
        lossless ? WebPEncodeLosslessRGB($0.baseAddress, Int32(width), Int32(height), Int32(width * 3), &output)
                 : WebPEncodeRGB($0.baseAddress, Int32(width), Int32(height), Int32(width * 3), 90, &output)
    }
    guard size > 0, let output else { throw ImagesTestEncodeError.failed("webp") }
    defer { WebPFree(output) }
    return Array(UnsafeBufferPointer(start: output, count: size))
}

final class ModelInputDecodingTests: XCTestCase {
    func testScaleKeepsTwiceTheResizeTarget() {
        // ImageNet preprocessing: the resize target of a 4:3 photo is 341x256, so the decoded shorter side must
        // stay >= 512. Each pair straddles one scale's boundary: ceil(side / d) = 512 against 511.
        let imagenet = ModelInputDecoder(outputWidth: 224, outputHeight: 224, cropRatio: 0.875, scaleMargin: 2)
        let cases: [(Int, Int, Int)] = [(12000, 9000, 8), (4096, 4096, 8), (4088, 4088, 4), (4000, 3000, 4), (3000, 4000, 4),
                                        (6000, 4000, 4), (2048, 2048, 4), (2044, 2044, 2), (2000, 1500, 2), (1024, 1024, 2),
                                        (1022, 1022, 1), (4000, 1000, 1), (500, 375, 1), (1, 5000, 1), (1, 1, 1)]
        for (w, h, d) in cases { XCTAssertEqual(imagenet.decodeScale(width: w, height: h), d, "\(w)x\(h)") }
        // Resize straight to 32x32 (crop ratio 1): the decoded side must stay >= 64.
        let cifar = ModelInputDecoder(outputWidth: 32, outputHeight: 32, cropRatio: 1, scaleMargin: 2)
        for (side, d) in [(512, 8), (505, 8), (504, 4), (256, 4), (253, 4), (252, 2), (128, 2), (127, 2), (126, 1), (64, 1), (32, 1)] {
            XCTAssertEqual(cifar.decodeScale(width: side, height: side), d, "\(side)")
        }
        var exact = imagenet
        exact.exact = true
        XCTAssertEqual(exact.decodeScale(width: 12000, height: 9000), 1)
    }

    func testMarginOneIsPillowsDraftRuleAndTheDefault() {
        XCTAssertEqual(ModelInputDecoder.defaultScaleMargin, 1)
        // The smallest scale whose output still covers the resize target (4000x3000: 1/8 gives 500x375 >= 341x256).
        let imagenet = ModelInputDecoder(outputWidth: 224, outputHeight: 224, cropRatio: 0.875, scaleMargin: 1)
        let cases: [(Int, Int, Int)] = [(4000, 3000, 8), (3000, 4000, 8), (2800, 2100, 8), (2700, 2025, 4), (2000, 1500, 4),
                                        (1024, 768, 2), (1023, 767, 2), (600, 450, 1), (500, 375, 1), (12000, 9000, 8), (1, 5000, 1), (1, 1, 1)]
        for (w, h, d) in cases { XCTAssertEqual(imagenet.decodeScale(width: w, height: h), d, "\(w)x\(h)") }
        let cifar = ModelInputDecoder(outputWidth: 32, outputHeight: 32, cropRatio: 1, scaleMargin: 1)
        for (side, d) in [(256, 8), (250, 8), (248, 4), (128, 4), (124, 2), (64, 2), (62, 1), (32, 1)] {
            XCTAssertEqual(cifar.decodeScale(width: side, height: side), d, "\(side)")
        }
        // QAREP_DECODE_MARGIN sets the process's margin; a value outside 1...8 is ignored.
        defer { unsetenv("QAREP_DECODE_MARGIN") }
        setenv("QAREP_DECODE_MARGIN", "2", 1)
        XCTAssertEqual(ModelInputDecoder(outputWidth: 224, outputHeight: 224, cropRatio: 0.875).decodeScale(width: 4000, height: 3000), 4)
        setenv("QAREP_DECODE_MARGIN", "9", 1)
        XCTAssertEqual(ModelInputDecoder(outputWidth: 224, outputHeight: 224, cropRatio: 0.875).decodeScale(width: 4000, height: 3000), 8)
        // Margins outside 1...8 are clamped, never multiplied into an overflow.
        XCTAssertEqual(ModelInputDecoder(outputWidth: 224, outputHeight: 224, cropRatio: 0.875, scaleMargin: 0)
            .decodeScale(width: 4000, height: 3000), 8)
        XCTAssertEqual(ModelInputDecoder(outputWidth: 224, outputHeight: 224, cropRatio: 0.875, scaleMargin: .max)
            .decodeScale(width: 12000, height: 9000), 4)
    }

    func testJPEGAndWebPDecodeAtTheChosenScaleAndStayCloseToExact() throws {
        // (margin, size, expected scale): resize targets 24x18 for the 4:3 sizes, 30x18 and 18x18; the decoded
        // size must keep margin times the target: one size per scale and margin.
        for (margin, w, h, d) in [(1, 160, 120, 4), (1, 161, 121, 4), (1, 100, 60, 2), (1, 400, 300, 8), (1, 20, 20, 1),
                                  (2, 400, 300, 8), (2, 240, 180, 4), (2, 160, 120, 2), (2, 161, 121, 2), (2, 100, 60, 1)] {
            let decoder = ModelInputDecoder(outputWidth: 16, outputHeight: 16, cropRatio: 0.875, scaleMargin: margin)
            var exactDecoder = decoder
            exactDecoder.exact = true
            let pixels = photoLikeImage(width: w, height: h)
            for (format, bytes) in [("jpeg", try imagesEncodeJPEG(width: w, height: h, components: 3, pixels: pixels)),
                                    ("webp", try imagesEncodeWebP(width: w, height: h, pixels: pixels)),
                                    ("webp-lossless", try imagesEncodeWebP(width: w, height: h, pixels: pixels, lossless: true))] {
                let label = "\(format) \(w)x\(h) margin \(margin)"
                let scaled = try decoder.decode(bytes: bytes, source: label)
                XCTAssertEqual(scaled.scaleDenominator, d, label)
                XCTAssertEqual(scaled.decodedWidth, (w + d - 1) / d, label)
                XCTAssertEqual(scaled.decodedHeight, (h + d - 1) / d, label)
                XCTAssertEqual(scaled.width, w, label)
                XCTAssertEqual(scaled.pixels.count, 16 * 16 * 3, label)
                let exact = try exactDecoder.decode(bytes: bytes, source: label)
                XCTAssertEqual(exact.scaleDenominator, 1)
                let meanDifference = zip(scaled.pixels, exact.pixels).map { abs(Int($0) - Int($1)) }.reduce(0, +) / scaled.pixels.count
                XCTAssertLessThanOrEqual(meanDifference, 6, label)
            }
        }
    }

    /// --exact-decode is bit for bit the old pipeline: the whole image decoded, then resizeAndCrop.
    func testExactDecodingEqualsWholeImageDecodeThenResize() throws {
        let (w, h) = (97, 61)
        let pixels = photoLikeImage(width: w, height: h)
        var rgba: [UInt8] = []
        for p in 0..<(w * h) { rgba += pixels[(3 * p)..<(3 * p + 3)] + [UInt8(p % 256)] }
        let files: [(String, [UInt8])] = [
            ("a.jpg", try imagesEncodeJPEG(width: w, height: h, components: 3, pixels: pixels)),
            ("gray.jpg", try imagesEncodeJPEG(width: w, height: h, components: 1, pixels: Array(pixels.prefix(w * h)))),
            ("cmyk.jpg", try imagesEncodeJPEG(width: w, height: h, components: 4, pixels: Array(rgba))),
            ("a.png", try imagesEncodePNG(width: w, height: h, format: 2, pixels: pixels)),
            ("alpha.png", try imagesEncodePNG(width: w, height: h, format: 3, pixels: rgba)),
            ("a.webp", try imagesEncodeWebP(width: w, height: h, pixels: pixels)),
        ]
        for crop: Float in [0.875, 1] {
            let decoder = ModelInputDecoder(outputWidth: 24, outputHeight: 20, cropRatio: crop, exact: true)
            for (name, bytes) in files {
                let image = try decodeImage(bytes: bytes, source: name)
                let expected = try image.pixels.withUnsafeBufferPointer {
                    try resizeAndCrop(rgb: $0, width: image.width, height: image.height, rowStride: image.width * 3,
                                      outputWidth: 24, outputHeight: 20, cropRatio: crop)
                }
                XCTAssertEqual(try decoder.decode(bytes: bytes, source: name).pixels, expected, name)
            }
        }
    }

    func test16BitPNGKeepsTheHighByteAndIgnoresGamma() throws {
        let (w, h) = (6, 5)
        let values = (0..<(w * h * 3)).map { UInt16($0 * 2000 % 65536) }
        var image = png_image()
        image.version = 1
        image.width = UInt32(w)
        image.height = UInt32(h)
        image.format = 2 | 4  // PNG_FORMAT_LINEAR_RGB: 16-bit samples, written with gAMA 1.0
        var size = 0
        _ = values.withUnsafeBytes { png_image_write_to_memory(&image, nil, &size, 0, $0.baseAddress, 0, nil) }
        var bytes = [UInt8](repeating: 0, count: size)
        let written = values.withUnsafeBytes { raw in
            bytes.withUnsafeMutableBytes { png_image_write_to_memory(&image, $0.baseAddress, &size, 0, raw.baseAddress, 0, nil) }
        }
        XCTAssertNotEqual(written, 0)
        let decoded = try decodeImage(bytes: Array(bytes.prefix(size)), source: "16.png")
        XCTAssertEqual(decoded.pixels, values.map { UInt8($0 >> 8) })
    }

    func testEveryFailureIsAnErrorNamingTheFile() throws {
        let directory = try calibTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let pixels = photoLikeImage(width: 64, height: 48)
        let jpeg = try imagesEncodeJPEG(width: 64, height: 48, components: 3, pixels: pixels)
        let png = try imagesEncodePNG(width: 64, height: 48, format: 2, pixels: pixels)
        let webp = try imagesEncodeWebP(width: 64, height: 48, pixels: pixels)
        let cases: [(String, [UInt8])] = [
            ("truncated.jpg", Array(jpeg.prefix(jpeg.count / 2))),
            ("truncated.png", Array(png.prefix(png.count / 2))),
            ("truncated.webp", Array(webp.prefix(webp.count / 2))),
            ("header-only.png", Array(png.prefix(40))),
            ("empty.jpg", []),
            ("text.jpg", Array("not an image at all".utf8)),
            ("riff.webp", Array("RIFF\u{0}\u{0}\u{0}\u{0}WEBPVP8 ".utf8)),
        ]
        let decoder = ModelInputDecoder(outputWidth: 16, outputHeight: 16, cropRatio: 0.875)
        for (name, bytes) in cases {
            let path = directory.appendingPathComponent(name).path
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try decoder.decode(path: path), name) { error in
                XCTAssertTrue("\(error)".contains(name), "\(error)")
            }
        }
        XCTAssertThrowsError(try decoder.decode(path: directory.appendingPathComponent("missing.jpg").path))
        XCTAssertThrowsError(try decoder.decode(path: directory.path))
    }

    func testPixelLimitRefusesDecompressionBombsBeforeDecoding() throws {
        // 159 bytes found by the image fuzzer: an arithmetic-coded CMYK JPEG whose header claims 65245x64744.
        // Arithmetic coding lets the data end early (the decoder supplies zeros), so without the pixel limit it
        // decoded all 4.2 G pixels, for 26 s at scale 1/8.
        let hex = [
            "ffd8ffee000e41646f62e8fe0001000089504e470d0a1a0a590000000000ffdb004300d3000607060508070707090908",
            "0a0c140d0c0b0b0c1912130f141d1affee000e41646f62e8fa0001000009002836292c3031343460341f27393d38323c",
            "2e333432ffc9001408fce8fedd044311004d11005911004b110002d3d4f9faffda000e0443404d0059004b11004d2411",
            "bc1100ffc4ffda4102678451040000"
        ].joined()
        let bomb = stride(from: 0, to: hex.count, by: 2).map { offset -> UInt8 in
            let start = hex.index(hex.startIndex, offsetBy: offset)
            return UInt8(hex[start..<hex.index(start, offsetBy: 2)], radix: 16) ?? 0
        }
        XCTAssertEqual(bomb.count, 159)
        let decoder = ModelInputDecoder(outputWidth: 224, outputHeight: 224, cropRatio: 0.875)
        XCTAssertThrowsError(try decoder.decode(bytes: bomb, source: "bomb.jpg")) { error in
            XCTAssertTrue("\(error)".contains("65245x64744") && "\(error)".contains("178956970 pixels"), "\(error)")
        }
        // The limit is on the nominal pixels, both sides of it: 16x16 decodes at 256 and is refused at 255.
        let jpeg = try imagesEncodeJPEG(width: 16, height: 16, components: 3, pixels: photoLikeImage(width: 16, height: 16))
        var limits = ImageDecodeLimits()
        limits.maxPixels = 256
        XCTAssertNoThrow(try ModelInputDecoder(outputWidth: 8, outputHeight: 8, cropRatio: 1, limits: limits)
            .decode(bytes: jpeg, source: "small.jpg"))
        limits.maxPixels = 255
        XCTAssertThrowsError(try ModelInputDecoder(outputWidth: 8, outputHeight: 8, cropRatio: 1, limits: limits)
            .decode(bytes: jpeg, source: "small.jpg")) { error in
            XCTAssertTrue("\(error)".contains("16x16"), "\(error)")
        }
        // 12000x9000 photos (108 M pixels) stay under the default.
        XCTAssertGreaterThanOrEqual(ImageDecodeLimits().maxPixels, 12000 * 9000)
    }

    /// A header may claim up to 65535 per side; nothing of that size is allocated, and data that does not hold
    /// the image is an error, not a crash or a gray image.
    func testHugeHeaderSizesAreDecodedByRowsOrRefusedCleanly() throws {
        var jpeg = try imagesEncodeJPEG(width: 16, height: 16, components: 3, pixels: photoLikeImage(width: 16, height: 16))
        let sof = try XCTUnwrap((0..<(jpeg.count - 1)).first { jpeg[$0] == 0xFF && jpeg[$0 + 1] == 0xC0 })
        for (offset, value) in [(5, 0xEA), (6, 0x60), (7, 0xEA), (8, 0x60)] { jpeg[sof + offset] = UInt8(value) }  // 60000x60000
        // Past the pixel limit (testPixelLimitRefusesDecompressionBombsBeforeDecoding), so that the rows are decoded
        // and the missing data is what fails.
        var unlimited = ImageDecodeLimits()
        unlimited.maxPixels = .max
        let decoder = ModelInputDecoder(outputWidth: 224, outputHeight: 224, cropRatio: 0.875, limits: unlimited)
        XCTAssertThrowsError(try decoder.decode(bytes: jpeg, source: "huge.jpg")) { error in
            XCTAssertTrue("\(error)".contains("huge.jpg") && !"\(error)".contains("pixels)"), "\(error)")
        }
        var limits = ImageDecodeLimits()
        limits.maxSide = 1000
        XCTAssertThrowsError(try ModelInputDecoder(outputWidth: 224, outputHeight: 224, cropRatio: 0.875, limits: limits)
            .decode(bytes: jpeg, source: "huge.jpg")) { error in
            XCTAssertTrue("\(error)".contains("60000x60000"), "\(error)")
        }
        // A memory limit below what the resize would hold is refused by name, not exceeded.
        limits = ImageDecodeLimits()
        limits.maxMemoryBytes = 1000
        let small = try imagesEncodePNG(width: 64, height: 48, format: 2, pixels: photoLikeImage(width: 64, height: 48))
        XCTAssertThrowsError(try ModelInputDecoder(outputWidth: 32, outputHeight: 32, cropRatio: 1, limits: limits)
            .decode(bytes: small, source: "limited.png")) { error in
            XCTAssertTrue("\(error)".contains("limit"), "\(error)")
        }
    }
}

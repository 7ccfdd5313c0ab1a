import Foundation
import QARep
import XCTest
@testable import QARepOffline

final class ImagesDecodeTests: XCTestCase {
    private let width = 5, height = 4

    private func rgbPattern() -> [UInt8] {
        var pixels: [UInt8] = []
        for p in 0..<(width * height) {
            pixels.append(UInt8(p * 12))
            pixels.append(UInt8(255 - p * 7))
            pixels.append(UInt8((p * 37) % 256))
        }
        return pixels
    }

    func testPNGRGBRoundTripsExactly() throws {
        let pixels = rgbPattern()
        let image = try decodeImage(bytes: try imagesEncodePNG(width: width, height: height, format: 2, pixels: pixels), source: "rgb.png")
        XCTAssertEqual(image, RGBImage(width: width, height: height, pixels: pixels))
    }

    func testPNGAlphaIsDroppedAndGrayBecomesRGB() throws {
        let rgb = rgbPattern()
        var rgba: [UInt8] = []
        for p in 0..<(width * height) {
            rgba += rgb[(3 * p)..<(3 * p + 3)]
            rgba.append(UInt8(p * 13))
        }
        let withAlpha = try decodeImage(bytes: try imagesEncodePNG(width: width, height: height, format: 3, pixels: rgba), source: "a.png")
        XCTAssertEqual(withAlpha.pixels, rgb)
        let gray = (0..<(width * height)).map { UInt8($0 * 11) }
        let fromGray = try decodeImage(bytes: try imagesEncodePNG(width: width, height: height, format: 0, pixels: gray), source: "g.png")
        XCTAssertEqual(fromGray.pixels, gray.flatMap { [$0, $0, $0] })
    }

    /// JPEG is lossy: flat colors survive within a few levels.
    func testJPEGColorGrayAndCMYK() throws {
        let w = 16, h = 16
        let color: [UInt8] = [200, 40, 90]
        let rgb = try decodeImage(bytes: try imagesEncodeJPEG(width: w, height: h, components: 3,
                                                               pixels: Array([[UInt8]](repeating: color, count: w * h).joined())), source: "c.jpg")
        XCTAssertEqual(rgb.width, w)
        XCTAssertEqual(rgb.height, h)
        for (index, value) in rgb.pixels.enumerated() { XCTAssertEqual(Int(value), Int(color[index % 3]), accuracy: 4) }
        let gray = try decodeImage(bytes: try imagesEncodeJPEG(width: w, height: h, components: 1,
                                                                pixels: [UInt8](repeating: 77, count: w * h)), source: "g.jpg")
        for value in gray.pixels { XCTAssertEqual(Int(value), 77, accuracy: 2) }
        // CMYK written by libjpeg (Adobe marker, inverted storage): C=0 M=255 Y=255 K=255 (no ink) -> red in RGB
        // only if the decoder undoes the inversion; plain ink semantics would give black.
        let cmyk = try decodeImage(bytes: try imagesEncodeJPEG(width: w, height: h, components: 4,
                                                                pixels: Array([[UInt8]](repeating: [255, 0, 0, 255], count: w * h).joined())), source: "k.jpg")
        XCTAssertEqual(cmyk.pixels.count, w * h * 3)
        for p in 0..<(w * h) {
            XCTAssertEqual(Int(cmyk.pixels[3 * p]), 255, accuracy: 4)
            XCTAssertEqual(Int(cmyk.pixels[3 * p + 1]), 0, accuracy: 4)
        }
    }

    func testCorruptAndTruncatedFilesNameTheFile() throws {
        let directory = try calibTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let jpeg = try imagesEncodeJPEG(width: 16, height: 16, components: 3, pixels: [UInt8](repeating: 128, count: 16 * 16 * 3))
        let cases: [(String, [UInt8])] = [
            ("truncated.jpg", Array(jpeg[0..<(jpeg.count / 2)])),
            ("garbage.jpg", [0xFF, 0xD8, 0xFF] + [UInt8](repeating: 0x41, count: 100)),
            ("text.png", Array("not an image".utf8)),
            ("empty.jpeg", []),
            ("broken.png", Array(try imagesEncodePNG(width: 5, height: 4, format: 2, pixels: rgbPattern()).prefix(40))),
        ]
        for (name, bytes) in cases {
            let path = directory.appendingPathComponent(name).path
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try decodeImage(path: path), name) { error in
                XCTAssertTrue("\(error)".contains(name), "\(error)")
            }
        }
        XCTAssertThrowsError(try decodeImage(path: directory.appendingPathComponent("missing.png").path))
    }

    func testDimensionLimitIsCheckedBeforeDecoding() throws {
        var limits = ImageDecodeLimits()
        limits.maxSide = 4
        let png = try imagesEncodePNG(width: 5, height: 4, format: 2, pixels: rgbPattern())
        XCTAssertThrowsError(try decodeImage(bytes: png, source: "wide.png", limits: limits)) { error in
            XCTAssertTrue("\(error)".contains("5x4"), "\(error)")
        }
        limits = ImageDecodeLimits()
        limits.maxPixels = 19
        let jpeg = try imagesEncodeJPEG(width: 5, height: 4, components: 3, pixels: rgbPattern())
        XCTAssertThrowsError(try decodeImage(bytes: jpeg, source: "big.jpg", limits: limits))
    }

    func testFolderListingIsRecursiveSortedAndByExtension() throws {
        let directory = try calibTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let png = try imagesEncodePNG(width: 5, height: 4, format: 2, pixels: rgbPattern())
        for name in ["b/2.PNG", "a/z.jpeg", "a/y.JPG", "top.png", "notes.txt", "b/skip.gif"] {
            let url = directory.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(png).write(to: url)
        }
        let files = try listImageFiles(in: directory.path).map { String($0.dropFirst(directory.path.count + 1)) }
        XCTAssertEqual(files, ["a/y.JPG", "a/z.jpeg", "b/2.PNG", "top.png"])
        XCTAssertThrowsError(try listImageFiles(in: directory.appendingPathComponent("top.png").path))
    }

    func testCalibrationFolderLoadsThroughRuntimeResizeAndSkipsBadImagesOnRequest() throws {
        let directory = try calibTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let pixels = rgbPattern()
        try Data(try imagesEncodePNG(width: width, height: height, format: 2, pixels: pixels))
            .write(to: directory.appendingPathComponent("good.png"))
        try Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0]).write(to: directory.appendingPathComponent("bad.png"))
        let preprocessing = Preprocessing(mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25], cropRatio: 1)
        XCTAssertThrowsError(try CalibrationData.load(path: directory.path, inputHeight: 3, inputWidth: 3, preprocessing: preprocessing)) { error in
            XCTAssertTrue("\(error)".contains("bad.png"), "\(error)")
        }
        let data = try CalibrationData.load(path: directory.path, inputHeight: 3, inputWidth: 3, preprocessing: preprocessing, skipBad: true)
        XCTAssertEqual(data.count, 1)
        XCTAssertEqual(data.skipped.count, 1)
        let expected = try pixels.withUnsafeBufferPointer {
            try resizeAndCrop(rgb: $0, width: width, height: height, rowStride: width * 3, outputWidth: 3, outputHeight: 3, cropRatio: 1)
        }
        XCTAssertEqual(data.pixels, expected)
        // The source size is kept for the CLI's upscaling warning.
        XCTAssertEqual(data.largestSourceSide, max(width, height))
    }
}

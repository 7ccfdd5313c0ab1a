import RepVGGArchitectures
import XCTest
@testable import QARep

final class PreprocessTests: XCTestCase {
    func resize(_ rgb: [UInt8], _ width: Int, _ height: Int, to outWidth: Int, _ outHeight: Int, crop: Float = 1,
                stride: Int? = nil) throws -> [UInt8] {
        try rgb.withUnsafeBufferPointer {
            try resizeAndCrop(rgb: $0, width: width, height: height, rowStride: stride ?? width * 3,
                              outputWidth: outWidth, outputHeight: outHeight, cropRatio: crop)
        }
    }

    func testIdentityWhenSizesMatch() throws {
        var rng = SeededGenerator(seed: 4)
        let image = rng.bytes(13 * 7 * 3)
        XCTAssertEqual(try resize(image, 13, 7, to: 13, 7), image)
    }

    func testConstantImageStaysConstant() throws {
        let image = [UInt8](repeating: 201, count: 37 * 23 * 3)
        for (w, h, crop) in [(10, 10, Float(0.875)), (50, 40, 1), (37, 23, 0.5), (5, 3, 1)] {
            XCTAssertEqual(Set(try resize(image, 37, 23, to: w, h, crop: crop)), [201], "\(w)x\(h) crop \(crop)")
        }
    }

    func testKnownDownscale() throws {
        // 4 -> 2 pixels: each output is a triangle filter widened to 2 source pixels,
        // weights (3, 3, 1) / 7 and (1, 3, 3) / 7 (worked out by hand from PIL's definition).
        let row: [UInt8] = [0, 70, 140, 210].flatMap { [$0, $0, $0] }
        XCTAssertEqual(try resize(row, 4, 1, to: 2, 1), [50, 50, 50, 160, 160, 160])
        // Vertical pass uses the same filter.
        XCTAssertEqual(try resize(row.enumerated().filter { $0.offset % 3 == 0 }.flatMap { [$0.element, 0, 0] }, 1, 4, to: 1, 2),
                       [50, 0, 0, 160, 0, 0])
    }

    func testCenterCrop() throws {
        // crop 0.5 on 8x4 -> 2x2: f = max(2 / 4, 2 / 2) = 1, so no resampling, crop at offset (3, 1).
        let image: [UInt8] = (0..<(8 * 4)).flatMap { (i: Int) -> [UInt8] in [UInt8(i), UInt8(100 + i), 0] }
        let out = try resize(image, 8, 4, to: 2, 2, crop: 0.5)
        let expected: [UInt8] = [11, 12, 19, 20].flatMap { (i: Int) -> [UInt8] in [UInt8(i), UInt8(100 + i), 0] }
        XCTAssertEqual(out, expected)
    }

    func testRowStrideAndArgumentErrors() throws {
        var rng = SeededGenerator(seed: 8)
        let image = rng.bytes(6 * 5 * 3)
        var padded: [UInt8] = []
        for y in 0..<5 { padded += image[(y * 18)..<((y + 1) * 18)] + [9, 9, 9, 9] }
        XCTAssertEqual(try resize(padded, 6, 5, to: 4, 3, stride: 22), try resize(image, 6, 5, to: 4, 3))
        func code(_ body: () throws -> [UInt8]) -> QARepError.Code? {
            do { _ = try body(); return nil } catch { return (error as? QARepError)?.code }
        }
        XCTAssertEqual(code { try self.resize(image, 6, 5, to: 4, 3, stride: 17) }, .invalidArgument)
        XCTAssertEqual(code { try self.resize(Array(image.dropLast()), 6, 5, to: 4, 3) }, .bufferSize)
        XCTAssertEqual(code { try self.resize(image, 0, 5, to: 4, 3) }, .invalidArgument)
        XCTAssertEqual(code { try self.resize(image, 6, 5, to: 4, 3, crop: 0) }, .invalidArgument)
        XCTAssertEqual(code { try self.resize(image, 6, 5, to: 4, 3, crop: .nan) }, .invalidArgument)
        XCTAssertEqual(code { try self.resize(image, 6, 5, to: 0, 3) }, .invalidArgument)
        // A tiny crop ratio asks for an enormous intermediate size; it is clamped, not allocated.
        XCTAssertEqual(try resize(image, 6, 5, to: 2, 2, crop: 1e-6).count, 12)
    }
}

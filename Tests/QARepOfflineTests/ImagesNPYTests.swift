import Foundation
import QARep
import XCTest
@testable import QARepOffline

final class ImagesNPYTests: XCTestCase {
    private func npy(descr: String = "'<f4'", fortran: String = "False", shape: String, payloadFloats: Int, version: UInt8 = 1) -> [UInt8] {
        var header = "{'descr': \(descr), 'fortran_order': \(fortran), 'shape': \(shape), }"
        let prefix = version == 1 ? 10 : 12
        while (prefix + header.utf8.count + 1) % 64 != 0 { header += " " }
        header += "\n"
        var bytes: [UInt8] = [0x93] + Array("NUMPY".utf8) + [version, 0]
        let length = header.utf8.count
        bytes += version == 1 ? [UInt8(length & 0xFF), UInt8(length >> 8)]
                              : [UInt8(length & 0xFF), UInt8((length >> 8) & 0xFF), 0, 0]
        bytes += Array(header.utf8)
        for index in 0..<payloadFloats {
            let bits = Float(index) * 0.5
            bytes += withUnsafeBytes(of: bits.bitPattern.littleEndian) { Array($0) }
        }
        return bytes
    }

    func testValidArrays() throws {
        for version: UInt8 in [1, 2] {
            let array = try parseNPYFloat32NCHW(bytes: npy(shape: "(2, 3, 2, 4)", payloadFloats: 48, version: version), path: "x.npy")
            XCTAssertEqual([array.count, array.channels, array.height, array.width], [2, 3, 2, 4])
            XCTAssertEqual(array.values.count, 48)
            XCTAssertEqual(array.values[47], 23.5)
        }
    }

    func testMalformedFilesAreSpecificErrors() {
        let cases: [(String, [UInt8], String)] = [
            ("magic", Array("not numpy at all".utf8), "magic"),
            ("dtype", npy(descr: "'<f8'", shape: "(1, 3, 1, 1)", payloadFloats: 6), "float32"),
            ("big-endian", npy(descr: "'>f4'", shape: "(1, 3, 1, 1)", payloadFloats: 3), "float32"),
            ("fortran", npy(fortran: "True", shape: "(1, 3, 1, 1)", payloadFloats: 3), "Fortran"),
            ("3-D", npy(shape: "(3, 2, 2)", payloadFloats: 12), "4-D"),
            ("channels", npy(shape: "(1, 4, 1, 1)", payloadFloats: 4), "channels"),
            ("short", npy(shape: "(1, 3, 2, 2)", payloadFloats: 11), "needs"),
            ("long", npy(shape: "(1, 3, 2, 2)", payloadFloats: 13), "needs"),
            ("huge", npy(shape: "(2147483648, 3, 2147483648, 2147483648)", payloadFloats: 3), "needs"),
            ("negative", npy(shape: "(1, 3, -2, 2)", payloadFloats: 3), "shape"),
            ("truncated header", Array(npy(shape: "(1, 3, 1, 1)", payloadFloats: 3).prefix(30)), "header"),
        ]
        for (name, bytes, fragment) in cases {
            XCTAssertThrowsError(try parseNPYFloat32NCHW(bytes: bytes, path: "bad-\(name).npy"), name) { error in
                XCTAssertTrue("\(error)".contains("bad-\(name).npy"), "\(error)")
                XCTAssertTrue("\(error)".contains(fragment), "\(name): \(error)")
            }
        }
    }

    /// Normalized floats become the pixels the runtime's float path would produce.
    func testCalibrationDataFromNPY() throws {
        let directory = try calibTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let preprocessing = Preprocessing(mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25], cropRatio: 1)
        let path = directory.appendingPathComponent("calib.npy").path
        // values 0, 0.5, 1, ... : pixel = (x * 0.25 + 0.5) * 255.
        try Data(npy(shape: "(2, 3, 1, 2)", payloadFloats: 12)).write(to: URL(fileURLWithPath: path))
        let data = try CalibrationData.load(path: path, inputHeight: 1, inputWidth: 2, preprocessing: preprocessing)
        XCTAssertEqual(data.count, 2)
        // image 0, pixel 0, channel 1 is value index 2 (1.0): (0.25 + 0.5) * 255 = 191.25 -> 191.
        XCTAssertEqual(data.pixels[1], 191)
        XCTAssertEqual(data.pixels[0], 128)  // 127.5 rounds half to even
        XCTAssertEqual(data.pixels[5], 255)  // clamped
        XCTAssertThrowsError(try CalibrationData.load(path: path, inputHeight: 2, inputWidth: 2, preprocessing: preprocessing))
        XCTAssertEqual(try CalibrationData.load(path: path, inputHeight: 1, inputWidth: 2, preprocessing: preprocessing, limit: 1).count, 1)
    }
}

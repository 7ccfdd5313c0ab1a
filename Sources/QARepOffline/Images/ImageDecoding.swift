// Decoding of calibration and classification images to packed RGB8. The codecs run in C
// (Sources/CImageDecode) so that libjpeg's non-returning error handler never unwinds Swift frames.
import CImageDecode
#if canImport(FoundationEssentials)
// FoundationEssentials, not Foundation: linked statically, Foundation's internationalization brings ICU's
// data (tens of MB) into the CLI. Glibc gives the math and stdio that Foundation re-exported.
import FoundationEssentials
import Glibc
#else
import Foundation
#endif
import QARep

/// A decoded image: `height` rows of `width` RGB pixels, 3 bytes each, no row padding.
public struct RGBImage: Sendable, Equatable {
    public var width: Int
    public var height: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) {
        self.width = width
        self.height = height
        self.pixels = pixels
    }
}

/// A calibration or classification input (image, .npy, folder) that could not be used.
public struct InputFileError: Error, CustomStringConvertible, Sendable {
    /// The file (or the caller's name for in-memory bytes) that failed.
    public var source: String
    public var reason: String

    public init(source: String, reason: String) {
        self.source = source
        self.reason = reason
    }

    public var description: String { "\(source): \(reason)" }
}

public struct ImageDecodeLimits: Sendable {
    public var maxSide: Int = 16384
    public var maxPixels: Int = 100_000_000

    public init() {}
}

/// Decodes JPEG or PNG bytes (recognized by signature, not by name) to RGB8. Grayscale, palette and CMYK
/// become RGB; PNG alpha is dropped. Declared dimensions are checked against `limits` before any allocation.
public func decodeImage(bytes: [UInt8], source: String, limits: ImageDecodeLimits = ImageDecodeLimits()) throws -> RGBImage {
    let isJPEG = bytes.count >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF
    let pngSignature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
    let isPNG = bytes.count >= 8 && Array(bytes[0..<8]) == pngSignature
    guard isJPEG || isPNG else {
        throw InputFileError(source: source, reason: "not a JPEG or PNG file (unrecognized signature)")
    }
    var decoded = qarep_decoded_image()
    var message = [CChar](repeating: 0, count: 256)
    let maxSide = Int32(clamping: limits.maxSide)
    let maxPixels = Int64(limits.maxPixels)
    let status = bytes.withUnsafeBufferPointer { data -> qarep_decode_status in
        message.withUnsafeMutableBufferPointer { text in
            guard let base = data.baseAddress else { return QAREP_DECODE_CORRUPT }
            return isJPEG
                ? qarep_decode_jpeg(base, data.count, maxSide, maxPixels, &decoded, text.baseAddress, text.count)
                : qarep_decode_png(base, data.count, maxSide, maxPixels, &decoded, text.baseAddress, text.count)
        }
    }
    defer { qarep_decoded_image_free(&decoded) }
    let detail = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    let format = isJPEG ? "JPEG" : "PNG"
    switch status {
    case QAREP_DECODE_OK:
        break
    case QAREP_DECODE_TOO_LARGE:
        throw InputFileError(source: source, reason: "\(detail) (at most \(limits.maxSide) per side and \(limits.maxPixels) pixels)")
    case QAREP_DECODE_OUT_OF_MEMORY:
        throw InputFileError(source: source, reason: "out of memory while decoding \(format)")
    case QAREP_DECODE_UNSUPPORTED:
        throw InputFileError(source: source, reason: "unsupported \(format): \(detail)")
    default:
        throw InputFileError(source: source, reason: "corrupt \(format): \(detail)")
    }
    let width = Int(decoded.width), height = Int(decoded.height)
    guard let pixelBase = decoded.pixels, width > 0, height > 0 else {
        throw InputFileError(source: source, reason: "decoder returned no pixels")
    }
    let pixels = Array(UnsafeBufferPointer(start: pixelBase, count: width * height * 3))
    return RGBImage(width: width, height: height, pixels: pixels)
}

/// Reads and decodes one image file; every error names the file.
public func decodeImage(path: String, limits: ImageDecodeLimits = ImageDecodeLimits()) throws -> RGBImage {
    let bytes: [UInt8]
    do {
        bytes = try readFileBytes(path: path)  // the runtime's reader: no FIFOs, nothing larger than memory
    } catch {
        throw InputFileError(source: path, reason: "cannot read file (\(error.message))")
    }
    return try decodeImage(bytes: bytes, source: path, limits: limits)
}

/// Image files under `folder`, recursively, by extension (.jpg, .jpeg, .png, any case), sorted by path so that
/// "the first N images" and a hold-out taken from the end are reproducible.
public func listImageFiles(in folder: String) throws -> [String] {
    guard fileKind(atPath: folder) == .directory else {
        throw InputFileError(source: folder, reason: "not a directory")
    }
    let extensions: Set<String> = ["jpg", "jpeg", "png"]
    var files: [String] = []
    // Regular files only, and linked folders not entered (lstat), as FileManager's enumerator did.
    func walk(_ directory: String) throws {
        let entries: [String]
        do {
            entries = try FileManager.default.contentsOfDirectory(atPath: directory)
        } catch {
            throw InputFileError(source: directory, reason: "cannot list directory")
        }
        for entry in entries {
            let path = joinedPath(directory, entry)
            switch fileKind(atPath: path, followLinks: false) {
            case .directory:
                try walk(path)
            case .regularFile:
                guard let dot = entry.lastIndex(of: "."), dot != entry.startIndex else { continue }
                if extensions.contains(entry[entry.index(after: dot)...].lowercased()) { files.append(path) }
            case .missing, .other:
                continue
            }
        }
    }
    // From the absolute path, as the URL-based enumerator this replaces gave them.
    try walk(URL(fileURLWithPath: folder).path)
    return files.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
}

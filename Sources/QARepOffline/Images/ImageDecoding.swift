// Decoding of calibration and classification images to packed RGB8. The codecs run in C
// (Sources/CImageDecode) so that libjpeg's and libpng's non-returning error handlers never unwind Swift frames.
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

/// What decoding may hold, and how large an image it takes on. Header sizes are checked against `maxSide` and
/// `maxPixels` before anything is decoded; the memory actually held is limited besides.
public struct ImageDecodeLimits: Sendable {
    /// Nominal (header) size per side.
    public var maxSide: Int = 65535
    /// Nominal pixels (header width x height) of any decode. Decoding for the model holds only rows, but its time
    /// grows with the pixels: a 159-byte arithmetic-coded JPEG claiming 65245x64744 decoded for 26 s (arithmetic
    /// coding lets the data end early and the decoder supply zeros). The default is Pillow's DecompressionBombError
    /// threshold (2 x 89,478,485): 12000x9000 photos decode, nothing over 179 M pixels does.
    public var maxPixels: Int = 178_956_970
    /// The file's bytes, and what a decode for the model holds besides them: the codec's whole-image buffers
    /// (progressive JPEG coefficients, an interlaced PNG, a WebP's output), one row and the resize's rows.
    /// `decodeImage` holds the whole RGB image, so it takes at most a third of this in pixels (89.5 M by default).
    public var maxMemoryBytes: Int = 256 << 20

    public init() {}
}

/// Decodes JPEG, PNG or WebP bytes (recognized by signature, not by name) to a full-size RGB8 image. Grayscale,
/// palette and CMYK become RGB; alpha is dropped; 16-bit samples keep their high byte. The nominal size is
/// checked against `limits` before any pixel buffer is allocated. (Decoding for a model's input, which never
/// holds the whole image, is `ModelInputDecoder`.)
public func decodeImage(bytes: [UInt8], source: String, limits: ImageDecodeLimits = ImageDecodeLimits()) throws -> RGBImage {
    try bytes.withUnsafeBufferPointer { data in
        var reader = try ImageRowReader(data: data, source: source, limits: limits)
        defer { reader.close() }
        // The reader checked maxSide and maxPixels; the whole image is held here (at most 89.5 M pixels in the
        // default 256 MB).
        guard reader.width * reader.height <= limits.maxMemoryBytes / 3 else {
            throw InputFileError(source: source, reason: "image is \(reader.width)x\(reader.height), whose pixels are above the \(limits.maxMemoryBytes >> 20) MB limit")
        }
        let (width, height) = try reader.start(denominator: 1)
        var pixels = [UInt8](repeating: 0, count: width * height * 3)
        try pixels.withUnsafeMutableBufferPointer { pixels in
            guard let base = pixels.baseAddress else { return }
            for y in 0..<height { try reader.readRow(into: base + y * width * 3) }
        }
        return RGBImage(width: width, height: height, pixels: pixels)
    }
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

/// Image files under `folder`, recursively, by extension (.jpg, .jpeg, .png, .webp, any case), sorted by path so that
/// "the first N images" and a hold-out taken from the end are reproducible.
public func listImageFiles(in folder: String) throws -> [String] {
    guard fileKind(atPath: folder) == .directory else {
        throw InputFileError(source: folder, reason: "not a directory")
    }
    let extensions: Set<String> = ["jpg", "jpeg", "png", "webp"]
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

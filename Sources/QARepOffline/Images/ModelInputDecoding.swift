// From an image file to the model's input pixels without ever holding the full-size image: the C row reader
// (Sources/CImageDecode) decodes JPEG and WebP at a reduced scale when the model needs fewer pixels, and every
// format hands its rows one at a time to the runtime's StreamingResize (the one statement of the resize and
// crop arithmetic). classify, evaluate and calibration all decode through here, so calibration sees what
// deployment sees.
import CImageDecode
import QARep
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The model input's geometry and how to decode for it.
public struct ModelInputDecoder: Sendable {
    public var outputWidth: Int
    public var outputHeight: Int
    public var cropRatio: Float
    /// Full-size decoding (scale 1/1), bit for bit the whole-image pipeline; otherwise JPEG and WebP decode at
    /// the smallest of 1/8, 1/4, 1/2, 1 that keeps `scaleMargin` times the resize target (`decodeScale`).
    public var exact: Bool
    /// The scaled decode keeps at least this many times the resize target's pixels per axis. 1 (the default) is
    /// Pillow's draft() rule; 2 makes the resize that follows shrink by 2x or more, so its filter rather than the
    /// DCT scaling's block averaging shapes the result: 2-3x closer to full-size decoding, for about a quarter
    /// more decode CPU on 12 MP photos (docs/performance.md, "Photo pipeline").
    public var scaleMargin: Int
    public var limits: ImageDecodeLimits

    public static let defaultScaleMargin = 1

    /// QAREP_DECODE_MARGIN (1...8) if set, else `defaultScaleMargin`: one setting for the whole process, so
    /// quantize, evaluate and classify decode alike. Python's `Model.decode_scale` states the default rule.
    public static var processScaleMargin: Int {
        guard let text = getenv("QAREP_DECODE_MARGIN"), let value = Int(String(cString: text)), (1...8).contains(value) else {
            return defaultScaleMargin
        }
        return value
    }

    public init(outputWidth: Int, outputHeight: Int, cropRatio: Float, exact: Bool = false, scaleMargin: Int? = nil,
                limits: ImageDecodeLimits = ImageDecodeLimits()) {
        self.outputWidth = outputWidth
        self.outputHeight = outputHeight
        self.cropRatio = cropRatio
        self.exact = exact
        self.scaleMargin = scaleMargin ?? Self.processScaleMargin
        self.limits = limits
    }

    public init(model: Model, exact: Bool = false, scaleMargin: Int? = nil, limits: ImageDecodeLimits = ImageDecodeLimits()) {
        self.init(outputWidth: model.inputWidth, outputHeight: model.inputHeight, cropRatio: model.preprocessing.cropRatio,
                  exact: exact, scaleMargin: scaleMargin, limits: limits)
    }

    /// The scale denominator (1, 2, 4 or 8) for an image of width x height: the largest whose output,
    /// ceil(width / d) x ceil(height / d), still covers on both axes `scaleMargin` times the size the
    /// preprocessing resizes the original to, so the resize that follows only shrinks.
    public func decodeScale(width: Int, height: Int) -> Int {
        guard !exact, width > 0, height > 0 else { return 1 }
        let target = resizedSize(width: width, height: height, outputWidth: outputWidth, outputHeight: outputHeight,
                                 cropRatio: cropRatio)
        let margin = min(max(scaleMargin, 1), 8)  // a bounded product whatever the caller set
        for d in [8, 4, 2] where (width + d - 1) / d >= margin * target.width && (height + d - 1) / d >= margin * target.height {
            return d
        }
        return 1
    }

    /// Reads and decodes a file; every error names it.
    public func decode(path: String) throws -> DecodedModelInput {
        let bytes: [UInt8]
        do {
            bytes = try readFileBytes(path: path, maxBytes: limits.maxMemoryBytes)
        } catch {
            throw InputFileError(source: path, reason: "cannot read file (\(error.message))")
        }
        return try decode(bytes: bytes, source: path)
    }

    /// Decodes JPEG, PNG or WebP bytes (recognized by signature) to outputHeight x outputWidth x 3 pixels.
    public func decode(bytes: [UInt8], source: String) throws -> DecodedModelInput {
        try bytes.withUnsafeBufferPointer { data in
            var reader = try ImageRowReader(data: data, source: source, limits: limits)
            defer { reader.close() }
            let denominator = reader.canScale ? decodeScale(width: reader.width, height: reader.height) : 1
            let (decodedWidth, decodedHeight) = try reader.start(denominator: denominator)
            var resize: StreamingResize
            do {
                resize = try StreamingResize(width: decodedWidth, height: decodedHeight, outputWidth: outputWidth,
                                             outputHeight: outputHeight, cropRatio: cropRatio)
            } catch {
                throw InputFileError(source: source, reason: "cannot resize: \(error)")
            }
            let held = resize.heldBytes + decodedWidth * 3
            guard held <= limits.maxMemoryBytes else {
                throw InputFileError(source: source, reason: "resizing \(decodedWidth)x\(decodedHeight) would hold \(held >> 20) MB, above the \(limits.maxMemoryBytes >> 20) MB limit")
            }
            var row = [UInt8](repeating: 0, count: decodedWidth * 3)
            try row.withUnsafeMutableBufferPointer { row in
                // Rows past the last one the output reads are not decoded at all.
                for _ in 0..<resize.rowsNeeded.upperBound {
                    guard let base = row.baseAddress else { return }
                    try reader.readRow(into: base)
                    resize.push(row: UnsafePointer(base))
                }
            }
            let pixels: [UInt8]
            do {
                pixels = try resize.finish()
            } catch {
                throw InputFileError(source: source, reason: "cannot resize: \(error)")
            }
            return DecodedModelInput(pixels: pixels, width: reader.width, height: reader.height, decodedWidth: decodedWidth,
                                     decodedHeight: decodedHeight, scaleDenominator: denominator, format: reader.formatName)
        }
    }
}

/// One image decoded for the model.
public struct DecodedModelInput: Sendable {
    /// outputHeight x outputWidth x 3 bytes, RGB, HWC.
    public var pixels: [UInt8]
    /// The file's nominal size.
    public var width: Int
    public var height: Int
    /// The size actually decoded (width / scaleDenominator, rounded up).
    public var decodedWidth: Int
    public var decodedHeight: Int
    public var scaleDenominator: Int
    /// "JPEG", "PNG" or "WebP".
    public var format: String
}

/// The C row reader, with its errors turned into InputFileError naming the source.
struct ImageRowReader {
    private var handle: OpaquePointer?
    let source: String
    let limits: ImageDecodeLimits
    let width: Int
    let height: Int
    let formatName: String
    private(set) var canScale = false

    init(data: UnsafeBufferPointer<UInt8>, source: String, limits: ImageDecodeLimits) throws {
        self.source = source
        self.limits = limits
        guard let base = data.baseAddress, data.count > 0 else {
            throw InputFileError(source: source, reason: "empty file")
        }
        switch qarep_image_detect(base, data.count) {
        case QAREP_IMAGE_JPEG: formatName = "JPEG"
        case QAREP_IMAGE_PNG: formatName = "PNG"
        case QAREP_IMAGE_WEBP: formatName = "WebP"
        default: throw InputFileError(source: source, reason: "not a JPEG, PNG or WebP file (unrecognized signature)")
        }
        var w: Int32 = 0, h: Int32 = 0
        var message = [CChar](repeating: 0, count: 256)
        var opened: OpaquePointer?
        let status = message.withUnsafeMutableBufferPointer {
            qarep_image_reader_open(base, data.count, Int64(limits.maxMemoryBytes), &opened, &w, &h, $0.baseAddress, $0.count)
        }
        handle = opened
        width = Int(w)
        height = Int(h)
        if status != QAREP_DECODE_OK {
            qarep_image_reader_close(handle)
            handle = nil
            throw Self.error(status, message, format: formatName, source: source)
        }
        // Sides come from Int32: their product cannot overflow.
        guard width <= limits.maxSide, height <= limits.maxSide, width * height <= limits.maxPixels else {
            qarep_image_reader_close(handle)
            handle = nil
            throw InputFileError(source: source, reason: "image is \(width)x\(height), above the limit (at most \(limits.maxSide) per side and \(limits.maxPixels) pixels)")
        }
        canScale = qarep_image_reader_can_scale(handle) != 0
    }

    mutating func start(denominator: Int) throws -> (width: Int, height: Int) {
        var w: Int32 = 0, h: Int32 = 0
        var message = [CChar](repeating: 0, count: 256)
        let status = message.withUnsafeMutableBufferPointer {
            qarep_image_reader_start(handle, Int32(denominator), &w, &h, $0.baseAddress, $0.count)
        }
        guard status == QAREP_DECODE_OK else { throw Self.error(status, message, format: formatName, source: source) }
        return (Int(w), Int(h))
    }

    func readRow(into row: UnsafeMutablePointer<UInt8>) throws {
        // Called once a row: the message buffer lives on the stack, filled only on failure.
        let failure: (qarep_decode_status, [CChar])? = withUnsafeTemporaryAllocation(of: CChar.self, capacity: 256) { message in
            message[0] = 0
            let status = qarep_image_reader_read_row(handle, row, message.baseAddress, message.count)
            return status == QAREP_DECODE_OK ? nil : (status, Array(message))
        }
        if let (status, message) = failure { throw Self.error(status, message, format: formatName, source: source) }
    }

    mutating func close() {
        qarep_image_reader_close(handle)
        handle = nil
    }

    private static func error(_ status: qarep_decode_status, _ message: [CChar], format: String, source: String) -> InputFileError {
        let detail = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        switch status {
        case QAREP_DECODE_TOO_LARGE: return InputFileError(source: source, reason: detail)
        case QAREP_DECODE_OUT_OF_MEMORY: return InputFileError(source: source, reason: "out of memory while decoding \(format)")
        case QAREP_DECODE_UNSUPPORTED: return InputFileError(source: source, reason: "unsupported \(format): \(detail)")
        default: return InputFileError(source: source, reason: "corrupt \(format): \(detail)")
        }
    }
}

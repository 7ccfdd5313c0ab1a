// libFuzzer target: JPEG/PNG/WebP bytes to model input, as the CLI's decode pipeline and calibration run it
// (ModelInputDecoder: the C row reader of Sources/CImageDecode, DCT scaling, and the runtime's StreamingResize).
// The output geometry comes from the input's length, so one corpus covers square and odd sizes, crop ratios
// and exact (1/1) decoding without a prefix that would spoil the seed files.
import QARepOffline

private let geometries: [(width: Int, height: Int, crop: Float, exact: Bool)] = [
    (8, 8, 0.875, false), (32, 24, 1.0, false), (5, 13, 0.5, true), (224, 224, 0.875, false),
]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzImageTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let g = geometries[size % geometries.count]
    var limits = ImageDecodeLimits()
    // A small budget keeps each unit fast; the limit checks themselves are then in play on ordinary sizes.
    limits.maxMemoryBytes = 16 << 20
    let decoder = ModelInputDecoder(outputWidth: g.width, outputHeight: g.height, cropRatio: g.crop, exact: g.exact,
                                    limits: limits)
    if let decoded = try? decoder.decode(bytes: bytes, source: "fuzz"), decoded.pixels.count != g.width * g.height * 3 {
        fatalError("decoded \(decoded.pixels.count) bytes for a \(g.width)x\(g.height) input")
    }
    return 0
}

// Calibration input: images decoded and resized by the runtime's own preprocessing, so calibration sees exactly
// the uint8 pixels the INT8 model will see at inference.
import Dispatch  // concurrentPerform, which Foundation re-exported
import Synchronization
#if canImport(FoundationEssentials)
// FoundationEssentials, not Foundation: linked statically, Foundation's internationalization brings ICU's
// data (tens of MB) into the CLI. Glibc gives the math and stdio that Foundation re-exported.
import FoundationEssentials
import Glibc
#else
import Foundation
#endif
import QARep

public struct CalibrationData: Sendable {
    public var inputHeight: Int
    public var inputWidth: Int
    /// `count` images of inputHeight x inputWidth x 3 bytes (RGB, HWC), one after another.
    public var pixels: [UInt8]
    /// One name per image (file path, or "file.npy[i]").
    public var names: [String]
    /// Files that could not be decoded and were skipped (only with skipBad).
    public var skipped: [InputFileError]
    /// The longest side of the largest source image of a folder (0 for an .npy): the CLI warns when every image
    /// is far smaller than the model input, the sign of a missing --input-size.
    public var largestSourceSide = 0

    public var count: Int { names.count }
    public var imageBytes: Int { inputHeight * inputWidth * 3 }

    public init(inputHeight: Int, inputWidth: Int, pixels: [UInt8], names: [String], skipped: [InputFileError] = []) throws {
        guard inputHeight > 0, inputWidth > 0, pixels.count == names.count * inputHeight * inputWidth * 3 else {
            throw InputFileError(source: "calibration data", reason: "\(pixels.count) bytes do not hold \(names.count) images of \(inputWidth)x\(inputHeight)x3")
        }
        self.inputHeight = inputHeight
        self.inputWidth = inputWidth
        self.pixels = pixels
        self.names = names
        self.skipped = skipped
    }

    /// The images with the given indices, in that order.
    public func subset(_ indices: [Int]) throws -> CalibrationData {
        let size = imageBytes
        var selected = [UInt8]()
        selected.reserveCapacity(indices.count * size)
        for index in indices where names.indices.contains(index) {
            selected.append(contentsOf: pixels[(index * size)..<((index + 1) * size)])
        }
        return try CalibrationData(inputHeight: inputHeight, inputWidth: inputWidth, pixels: selected,
                                   names: indices.filter { names.indices.contains($0) }.map { names[$0] }, skipped: skipped)
    }

    /// Loads a folder of images (.jpg/.jpeg/.png/.webp, recursive, sorted) or an .npy float32 NCHW array of normalized
    /// images. Images go through `ModelInputDecoder`, as classify's do: JPEG and WebP decoded at a reduced scale
    /// where the model needs fewer pixels (full size with `exactDecode`), then the runtime's resize and center
    /// crop. An .npy
    /// array must already be inputHeight x inputWidth; its values are turned into pixels the way the runtime's
    /// float input path does (x * std + mean, * 255, rounded half to even, clamped), so both sides see the same.
    /// `limit` keeps that many images: the first ones of an .npy, evenly spaced ones of a folder (folders are
    /// often sorted by class, and the first N would then be one class). An undecodable image is an error naming
    /// it, or with `skipBad` is skipped and listed in `skipped`.
    public static func load(path: String, inputHeight: Int, inputWidth: Int, preprocessing: Preprocessing,
                            limit: Int? = nil, skipBad: Bool = false, exactDecode: Bool = false) throws -> CalibrationData {
        if let limit, limit < 1 { throw InputFileError(source: path, reason: "image limit \(limit) must be at least 1") }
        let kind = fileKind(atPath: path)
        guard kind != .missing else {
            throw InputFileError(source: path, reason: "no such file or directory")
        }
        if kind == .directory {
            return try loadFolder(path, inputHeight: inputHeight, inputWidth: inputWidth, preprocessing: preprocessing,
                                  limit: limit, skipBad: skipBad, exactDecode: exactDecode)
        }
        guard path.lowercased().hasSuffix(".npy") else {
            throw InputFileError(source: path, reason: "calibration input must be a folder of images or an .npy file")
        }
        return try loadNPY(path, inputHeight: inputHeight, inputWidth: inputWidth, preprocessing: preprocessing, limit: limit)
    }

    private static func loadNPY(_ path: String, inputHeight: Int, inputWidth: Int, preprocessing: Preprocessing,
                                limit: Int?) throws -> CalibrationData {
        let array = try readNPYFloat32NCHW(path: path)
        guard array.height == inputHeight, array.width == inputWidth else {
            throw InputFileError(source: path, reason: "arrays are \(array.height)x\(array.width), the model input is \(inputHeight)x\(inputWidth)")
        }
        guard preprocessing.mean.count == 3, preprocessing.std.count == 3 else {
            throw InputFileError(source: path, reason: "preprocessing needs 3 means and 3 stds")
        }
        let count = min(array.count, limit ?? array.count)
        // The runtime's own conversion of float input, so calibration sees the pixels a float run would.
        let pixels = array.values.withUnsafeBufferPointer {
            pixelsFromNormalized(UnsafeBufferPointer(rebasing: $0[0..<(count * 3 * inputHeight * inputWidth)]), images: count,
                                 height: inputHeight, width: inputWidth, preprocessing: preprocessing)
        }
        let name = URL(fileURLWithPath: path).lastPathComponent
        return try CalibrationData(inputHeight: inputHeight, inputWidth: inputWidth, pixels: pixels,
                                   names: (0..<count).map { "\(name)[\($0)]" })
    }

    private static func loadFolder(_ path: String, inputHeight: Int, inputWidth: Int, preprocessing: Preprocessing,
                                   limit: Int?, skipBad: Bool, exactDecode: Bool) throws -> CalibrationData {
        let all = try listImageFiles(in: path)
        guard !all.isEmpty else { throw InputFileError(source: path, reason: "no .jpg, .jpeg, .png or .webp files found") }
        let files = evenlySpaced(all, count: min(limit ?? all.count, all.count))
        let size = inputHeight * inputWidth * 3
        // The decoder classify uses (scaled JPEG/WebP decoding unless exactDecode), so calibration sees the
        // pixels deployment sees.
        let decoder = ModelInputDecoder(outputWidth: inputWidth, outputHeight: inputHeight, cropRatio: preprocessing.cropRatio,
                                        exact: exactDecode)
        let results = ResultSlots(count: files.count)
        let workers = max(1, min(files.count, ProcessInfo.processInfo.activeProcessorCount))
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            var index = worker
            while index < files.count {
                results.set(index, Result { () throws -> DecodedModelInput in try decoder.decode(path: files[index]) })
                index += workers
            }
        }
        var pixels = [UInt8]()
        pixels.reserveCapacity(files.count * size)
        var names: [String] = []
        var skipped: [InputFileError] = []
        var largestSide = 0
        for (index, result) in results.values.enumerated() {
            switch result {
            case .success(let image)?:
                pixels.append(contentsOf: image.pixels)
                names.append(files[index])
                largestSide = max(largestSide, image.width, image.height)
            case .failure(let error)?:
                let named = error as? InputFileError ?? InputFileError(source: files[index], reason: "\(error)")
                guard skipBad else { throw named }
                skipped.append(named)
            case nil:
                throw InputFileError(source: files[index], reason: "was not loaded")
            }
        }
        guard !names.isEmpty else { throw InputFileError(source: path, reason: "none of the \(files.count) images could be decoded") }
        var data = try CalibrationData(inputHeight: inputHeight, inputWidth: inputWidth, pixels: pixels, names: names, skipped: skipped)
        data.largestSourceSide = largestSide
        return data
    }
}

/// `count` elements of `items` spread evenly over it (all of them when count >= items.count), in order.
func evenlySpaced<T>(_ items: [T], count: Int) -> [T] {
    guard count < items.count else { return items }
    return (0..<count).map { items[$0 * items.count / count] }
}

/// Per-index result storage written by concurrent workers, each index by exactly one worker.
private final class ResultSlots: Sendable {
    // Synchronization's Mutex: NSLock is Foundation's.
    private let storage: Mutex<[Result<DecodedModelInput, Error>?]>
    init(count: Int) { storage = Mutex(Array(repeating: nil, count: count)) }
    func set(_ index: Int, _ value: Result<DecodedModelInput, Error>) {
        storage.withLock { $0[index] = value }
    }
    var values: [Result<DecodedModelInput, Error>?] { storage.withLock { $0 } }
}

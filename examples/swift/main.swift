// classify-swift: the QARep Swift API end to end. Loads a model, reads images, preprocesses them to the
// model's input, runs them in batches and prints the top-5 classes of each.
//
//   classify-swift MODEL.qarep [--threads N] [--batch N] IMAGE.ppm...
//   classify-swift MODEL.qarep [--threads N] [--batch N] --random N
//
// The runtime has no image decoder, so images are binary PPM (P6, 8-bit), which takes a few lines to read;
// convert others with e.g. `convert photo.jpg photo.ppm` or `pngtopnm`/`djpeg -pnm`. --random N makes N
// images of random pixels and sizes instead (what CI runs, having no image files).
import Foundation
import QARep

struct RGBImage {
    var pixels: [UInt8]
    var width: Int
    var height: Int
}

struct ExampleError: Error, CustomStringConvertible {
    var description: String
}

/// Reads a binary PPM: "P6", width, height, maxval (whitespace-separated, '#' comments), one whitespace
/// byte, then width * height RGB triples. Images over 64 Mpixel are refused before allocating.
func readPPM(path: String) throws -> RGBImage {
    guard let data = FileManager.default.contents(atPath: path) else { throw ExampleError(description: "cannot read the file") }
    let bytes = [UInt8](data)
    var position = 0

    func skipWhitespaceAndComments() {
        while position < bytes.count {
            if bytes[position] == UInt8(ascii: "#") {
                while position < bytes.count && bytes[position] != UInt8(ascii: "\n") { position += 1 }
            } else if [9, 10, 13, 32].contains(bytes[position]) {
                position += 1
            } else {
                return
            }
        }
    }
    func headerNumber(_ name: String) throws -> Int {
        skipWhitespaceAndComments()
        var value = 0, digits = 0
        while position < bytes.count, (48...57).contains(bytes[position]) {
            value = value * 10 + Int(bytes[position] - 48)
            digits += 1
            position += 1
            guard digits <= 6 else { throw ExampleError(description: "PPM \(name) is too large") }
        }
        guard digits > 0 else { throw ExampleError(description: "PPM header: \(name) is missing") }
        return value
    }

    guard bytes.count >= 2, bytes[0] == UInt8(ascii: "P"), bytes[1] == UInt8(ascii: "6") else {
        throw ExampleError(description: "not a binary PPM (P6) file")
    }
    position = 2
    let width = try headerNumber("width"), height = try headerNumber("height"), maxValue = try headerNumber("maxval")
    guard width > 0, height > 0, width * height <= 64 << 20 else {
        throw ExampleError(description: "image size \(width)x\(height) is outside the supported range")
    }
    guard (1...255).contains(maxValue) else { throw ExampleError(description: "only 8-bit PPM is supported (maxval \(maxValue))") }
    position += 1  // the single whitespace byte after maxval
    let count = width * height * 3
    guard bytes.count - position >= count else { throw ExampleError(description: "PPM pixel data is truncated") }
    var pixels = Array(bytes[position..<(position + count)])
    if maxValue != 255 {
        pixels = pixels.map { UInt8(min(255, (Int($0) * 255 + maxValue / 2) / maxValue)) }
    }
    return RGBImage(pixels: pixels, width: width, height: height)
}

/// Random pixels at a random size between 64 and 511 per side, so preprocessing has real work to do.
func randomImage(using generator: inout some RandomNumberGenerator) -> RGBImage {
    let width = Int.random(in: 64..<512, using: &generator), height = Int.random(in: 64..<512, using: &generator)
    let pixels = (0..<(width * height * 3)).map { _ in UInt8.random(in: 0...255, using: &generator) }
    return RGBImage(pixels: pixels, width: width, height: height)
}

func printUsage() {
    FileHandle.standardError.write(Data("""
        usage: classify-swift MODEL.qarep [--threads N] [--batch N] IMAGE.ppm...
               classify-swift MODEL.qarep [--threads N] [--batch N] --random N

        """.utf8))
}

func printError(_ message: String) {
    FileHandle.standardError.write(Data("classify-swift: \(message)\n".utf8))
}

func main() -> Int32 {
    var arguments = Array(CommandLine.arguments.dropFirst())
    guard arguments.count >= 2 else {
        printUsage()
        return 2
    }
    let modelPath = arguments.removeFirst()
    var threads = 0, batchSize = 8, randomCount = 0
    while let flag = arguments.first, flag.hasPrefix("--") {
        guard arguments.count >= 2, let value = Int(arguments[1]), value >= (flag == "--threads" ? 0 : 1) else {
            printError("\(flag) needs a number")
            return 2
        }
        switch flag {
        case "--threads": threads = value
        case "--batch": batchSize = value
        case "--random": randomCount = value
        default:
            printError("unknown option \(flag)")
            return 2
        }
        arguments.removeFirst(2)
    }
    let imagePaths = arguments
    let imageCount = randomCount > 0 ? randomCount : imagePaths.count
    guard imageCount > 0, randomCount == 0 || imagePaths.isEmpty else {
        printUsage()
        return 2
    }

    let model: Model
    let session: Session
    do {
        model = try Model(contentsOfFile: modelPath)
        session = try Session(model: model, threads: threads, maxBatch: min(batchSize, imageCount))
    } catch {
        printError("\(modelPath): \(error)")
        return 1
    }
    printError("\(model.inputWidth)x\(model.inputHeight) input, \(model.numClasses) classes, kernel \(session.kernel.name)")

    var failures = 0
    var batch: [UInt8] = []
    var batchNames: [String] = []
    var generator = SystemRandomNumberGenerator()

    func classifyBatch() {
        do {
            let results = try session.classify(images: batch, batch: batchNames.count, topK: 5)
            for (name, predictions) in zip(batchNames, results) {
                print(name)
                for (rank, prediction) in predictions.enumerated() {
                    print("  \(rank + 1). \(String(format: "%6.2f", 100 * prediction.probability))%  \(prediction.label) (\(prediction.classIndex))")
                }
            }
        } catch {
            printError("run: \(error)")
            failures += 1
        }
        batch.removeAll(keepingCapacity: true)
        batchNames.removeAll(keepingCapacity: true)
    }

    for index in 0..<imageCount {
        let name = randomCount > 0 ? "random image \(index + 1)" : imagePaths[index]
        do {
            let image = randomCount > 0 ? randomImage(using: &generator) : try readPPM(path: name)
            let input = try model.preprocess(rgb: image.pixels, width: image.width, height: image.height)
            batch += input
            batchNames.append(name)
        } catch {
            printError("\(name): \(error)")
            failures += 1
            continue
        }
        if batchNames.count == session.maxBatch { classifyBatch() }
    }
    if !batchNames.isEmpty { classifyBatch() }
    return failures == 0 ? 0 : 1
}

exit(main())

import QARep

let path = CommandLine.arguments.dropFirst().first ?? "model.qarep"
do {
    let model = try Model(contentsOfFile: path)
    let session = try Session(model: model, threads: 0, maxBatch: 8)   // threads 0: all CPUs

    // Any RGB image, 3 bytes a pixel, row after row; a gradient stands in for a decoded photo here.
    let width = 640, height = 480
    let pixels: [UInt8] = (0..<(width * height * 3)).map { UInt8(truncatingIfNeeded: $0 % 251) }

    // Resize and center-crop to the model's input as its metadata says, then classify.
    let input = try model.preprocess(rgb: pixels, width: width, height: height)
    for prediction in try session.classify(images: [input], topK: 5)[0] {
        print(prediction.label, prediction.probability)
    }
} catch {
    print("error: \(error.code): \(error.message)")
}

// Per-layer timing through the Swift API's profiling hook (Session.runProfiled), which times each kernel
// call of a normal run: the same packed weights and buffers the C API uses.
import QARep

struct LayerTiming {
    var name: String
    var macsPerImage: Double
    var medianSeconds: Double
    /// How the kernels run a conv layer ("winograd", "winograd-4x4", "direct", "direct-dense"); "" for pool and fc.
    var algorithm: String = ""
    /// Bytes of transformed Winograd weights the layer holds (0 when it runs directly).
    var winogradBytes: Int = 0
}

/// Runs `warmup` untimed and `iterations` timed profiled runs, calling `afterTimedRun` after each timed one;
/// returns each step's median time.
func profileLayers(model: Model, kernel: Kernel, threads: Int, batch: Int, images: [UInt8], warmup: Int,
                   iterations: Int, afterTimedRun: () -> Void = {}) throws -> [LayerTiming] {
    let session = try Session(model: model, threads: threads, maxBatch: batch, kernel: kernel)
    let layers = session.layers
    var samples = [[Double]](repeating: [], count: layers.count)
    for iteration in 0..<(warmup + iterations) {
        let seconds = try session.runProfiled(images: images.span, batch: batch).layerSeconds
        guard iteration >= warmup else { continue }
        for (index, value) in seconds.prefix(layers.count).enumerated() { samples[index].append(value) }
        afterTimedRun()
    }
    return zip(layers, samples).map { layer, times in
        var name = layer.name
        if layer.kind == .conv3x3 {
            name += " \(layer.inputChannels)->\(layer.outputChannels) s\(layer.stride)"
                + (layer.groups > 1 ? " g\(layer.groups)" : "") + " \(layer.inputHeight)x\(layer.inputWidth)"
        } else if layer.kind == .fullyConnected {
            name += " \(layer.inputChannels)->\(layer.outputChannels)"
        }
        let algorithm = layer.algorithm ?? ""
        return LayerTiming(name: name, macsPerImage: Double(layer.macs), medianSeconds: median(times), algorithm: algorithm,
                           winogradBytes: algorithm.hasPrefix("winograd") ? layer.packedWeightBytes ?? 0 : 0)
    }
}

func median(_ values: [Double]) -> Double { percentile(values, 0.5) }

/// Nearest-rank percentile (p in 0...1) of unsorted values; 0 for none.
func percentile(_ values: [Double], _ p: Double) -> Double {
    guard !values.isEmpty else { return 0 }
    let sorted = values.sorted()
    let rank = Int((p * Double(sorted.count)).rounded(.up))
    return sorted[min(max(rank, 1), sorted.count) - 1]
}

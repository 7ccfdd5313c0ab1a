// Turns a checkpoint file into a flat, ordered name -> tensor map (a state_dict), whichever container it
// came in: safetensors, or a torch.save zip read through the restricted unpickler. Wrappers that trainers
// add ({'state_dict': ...}, {'model': ...}, {'ema': ...}) and DataParallel/compile prefixes are removed here,
// so recognition only ever sees module names.
import QARep

struct StateDict {
    /// Names in file order.
    var names: [String] = []
    var tensors: [String: CheckpointTensor] = [:]
    /// safetensors __metadata__ (empty for torch archives).
    var metadata: [String: String] = [:]

    mutating func insert(_ rawName: String, _ tensor: CheckpointTensor) throws {
        let name = strippingWrapperPrefixes(rawName)
        guard tensors[name] == nil else {
            throw ImportError("checkpoint holds '\(name)' twice (after removing 'module.' / '_orig_mod.' prefixes)")
        }
        names.append(name)
        tensors[name] = tensor
    }
}

/// DataParallel saves `module.x`, torch.compile `_orig_mod.x`.
func strippingWrapperPrefixes(_ name: String) -> String {
    var result = Substring(name)
    while true {
        if result.hasPrefix("module.") { result = result.dropFirst(7) }
        else if result.hasPrefix("_orig_mod.") { result = result.dropFirst(10) }
        else { return String(result) }
    }
}

enum CheckpointContainer {
    case safetensors, torchZip

    static func detect(_ bytes: [UInt8], path: String) throws -> CheckpointContainer {
        if bytes.count >= 4, bytes[0] == 0x50, bytes[1] == 0x4B, bytes[2] == 0x03 || bytes[2] == 0x05 {
            return .torchZip
        }
        if bytes.count >= 9, bytes[8] == UInt8(ascii: "{") { return .safetensors }
        if bytes.count >= 2, bytes[0] == 0x80, bytes[1] <= 5 {
            throw ImportError("\(path): legacy (pre-1.6, non-zip) torch.save format is not supported; re-save it with a current PyTorch (torch.save uses zip since 1.6)")
        }
        throw ImportError("\(path): neither a safetensors file nor a torch.save zip archive")
    }
}

func readStateDict(path: String) throws -> StateDict {
    // The runtime's reader: it refuses FIFOs, directories and files larger than memory before reading.
    let bytes: [UInt8]
    do {
        bytes = try readFileBytes(path: path)
    } catch {
        throw ImportError("checkpoint: \(error.message)")
    }
    switch try CheckpointContainer.detect(bytes, path: path) {
    case .safetensors: return try readSafetensorsStateDict(bytes)
    case .torchZip: return try readTorchZipStateDict(bytes)
    }
}

func readSafetensorsStateDict(_ bytes: [UInt8]) throws -> StateDict {
    let archive: SafetensorsArchive
    do {
        archive = try SafetensorsArchive(bytes: bytes)
    } catch {
        throw ImportError("safetensors: \(error.message)")
    }
    var stateDict = StateDict(metadata: archive.metadata)
    try archive.bytes.withUnsafeBytes { raw in
        for name in archive.tensorNamesInFileOrder {
            guard let info = archive.tensors[name] else { continue }
            let slice = UnsafeRawBufferPointer(rebasing: raw[info.byteRange])
            try stateDict.insert(name, decodeTensor(dtype: info.dtype, shape: info.shape, bytes: slice))
        }
    }
    return stateDict
}

func readTorchZipStateDict(_ bytes: [UInt8]) throws -> StateDict {
    let zip = try ZipArchiveReader(bytes: bytes)
    guard let pickleEntry = zip.entries.first(where: { $0.name == "data.pkl" || $0.name.hasSuffix("/data.pkl") }) else {
        throw ImportError("torch archive: no data.pkl entry; this zip was not written by torch.save")
    }
    let root = String(pickleEntry.name.dropLast("data.pkl".count))
    if let order = zip.entry(named: root + "byteorder") {
        let range = try zip.dataRange(of: order)
        let text = String(decoding: bytes[range], as: UTF8.self)
        guard text == "little" else { throw ImportError("torch archive: byte order '\(text)' is not supported (only little-endian)") }
    }
    let pickleRange = try zip.dataRange(of: pickleEntry)
    let value = try bytes.withUnsafeBytes { raw in
        try RestrictedUnpickler.load(UnsafeRawBufferPointer(rebasing: raw[pickleRange]))
    }
    guard let dict = findStateDict(in: value, depth: 0) else {
        throw ImportError("torch archive: no state_dict found (expected a dict of tensors, or one under 'state_dict', 'model' or 'ema')")
    }
    var stateDict = StateDict()
    var storageRanges: [String: Range<Int>] = [:]
    for (key, item) in dict.entries {
        guard case .string(let name) = key, case .tensor(let tensor) = item else { continue }
        let range: Range<Int>
        if let known = storageRanges[tensor.storage.key] {
            range = known
        } else {
            guard let entry = zip.entry(named: root + "data/" + tensor.storage.key) else {
                throw ImportError("torch archive: tensor '\(name)' refers to storage '\(tensor.storage.key)', which the archive lacks")
            }
            range = try zip.dataRange(of: entry)
            storageRanges[tensor.storage.key] = range
        }
        let (needed, overflow) = tensor.storage.elementCount.multipliedReportingOverflow(by: tensor.storage.dtype.byteSize)
        guard !overflow, needed <= range.count else {
            throw ImportError("torch archive: storage '\(tensor.storage.key)' of tensor '\(name)' claims \(tensor.storage.elementCount) elements but its entry holds \(range.count) bytes")
        }
        let indices = stridedElementIndices(tensor)
        let decoded = bytes.withUnsafeBytes { raw in
            decodeTensor(dtype: tensor.storage.dtype, shape: tensor.shape,
                         bytes: UnsafeRawBufferPointer(rebasing: raw[range]), elementIndices: indices)
        }
        try stateDict.insert(name, decoded)
    }
    return stateDict
}

/// Storage element index of every tensor element in row-major order; nil for a contiguous view at offset 0.
/// The unpickler has already checked that the highest index lies inside the storage.
private func stridedElementIndices(_ tensor: TorchTensorRef) -> [Int]? {
    var contiguousStride = 1
    var isContiguous = tensor.storageOffset == 0
    for (size, step) in zip(tensor.shape, tensor.strides).reversed() {
        if size > 1, step != contiguousStride { isContiguous = false }
        contiguousStride *= size
    }
    if isContiguous { return nil }
    var indices = [tensor.storageOffset]
    for (size, step) in zip(tensor.shape, tensor.strides) {
        var next: [Int] = []
        next.reserveCapacity(indices.count * size)
        for base in indices {
            for i in 0..<size { next.append(base + i * step) }
        }
        indices = next
    }
    return indices
}

private let stateDictWrapperKeys = ["state_dict", "model", "ema", "model_ema", "state_dict_ema", "module"]

private func findStateDict(in value: PickleValue, depth: Int) -> PickleDict? {
    guard depth < 4, case .dict(let dict) = value else { return nil }
    if dict.entries.contains(where: { if case .tensor = $0.value { return true } else { return false } }) {
        return dict
    }
    for key in stateDictWrapperKeys {
        if let inner = dict[key], let found = findStateDict(in: inner, depth: depth + 1) { return found }
    }
    return nil
}

// Writes test networks as checkpoints the way each source project names them, in safetensors or in a
// torch.save-compatible zip (pickle protocol 2 or 4, written here byte by byte).
import Foundation
import QARep

enum ImportTestFamily: CaseIterable {
    /// DingXiaoH/RepVGG training form: rbr_dense/rbr_1x1 conv+bn, rbr_identity BN, linear.
    case officialRepVGG
    /// cxxgtxy/QARepVGG QARepVGGBlockV2 / YOLOv6 QARepVGGBlock: 1x1 without BN, parameter-free identity, post-BN.
    case qaRepVGG
    /// YOLOv6 switch_to_deploy of a QARepVGG block: rbr_reparam plus the kept post-BN.
    case yolov6Deploy
    /// timm byobnet: stem / stages.S.N, conv_kxk, conv_1x1, identity BN, head.fc.
    case timm
    case timmDeploy
    case officialDeploy
    /// super-gradients QARepVGGBlock: branch_3x3 conv+bn, branch_1x1 with bias, alpha, post_bn, unused rbr_reparam.
    case superGradients
    /// Arbitrary branch subsets in official names, convs without BN written directly under the branch.
    case generic
}

struct ImportTestStoredTensor {
    var shape: [Int]
    var values: [Double]
    /// Safetensors dtype name: F32, F16, BF16, F64 or I64.
    var dtype: String
}

struct ImportTestStateDict {
    var entries: [(name: String, tensor: ImportTestStoredTensor)] = []

    mutating func add(_ name: String, _ shape: [Int], _ values: [Float], dtype: String) {
        entries.append((name, ImportTestStoredTensor(shape: shape, values: values.map(Double.init), dtype: dtype)))
    }

    func renamed(_ transform: (String) -> String) -> ImportTestStateDict {
        ImportTestStateDict(entries: entries.map { (transform($0.name), $0.tensor) })
    }
}

// MARK: - Rounding to the stored dtype, so the reference forward sees exactly what the file holds

func importTestRounded(_ value: Float, dtype: String) -> Float {
    switch dtype {
    case "F16": return Float(Float16(value))
    case "BF16": return Float(bitPattern: value.bitPattern & 0xFFFF_0000)
    default: return value
    }
}

extension ImportTestNetwork {
    func rounded(to dtype: String) -> ImportTestNetwork {
        func r(_ a: [Float]) -> [Float] { a.map { importTestRounded($0, dtype: dtype) } }
        func r(_ a: [Float]?) -> [Float]? { a.map(r) }
        func r(_ bn: ImportTestBN?) -> ImportTestBN? {
            bn.map { ImportTestBN(gamma: r($0.gamma), beta: r($0.beta), mean: r($0.mean), variance: r($0.variance)) }
        }
        func r(_ conv: ImportTestConv?) -> ImportTestConv? {
            conv.map { ImportTestConv(weight: r($0.weight), kernel: $0.kernel, bias: r($0.bias), bn: r($0.bn)) }
        }
        var copy = self
        for i in copy.blocks.indices {
            copy.blocks[i].dense = r(copy.blocks[i].dense)
            copy.blocks[i].pointwise = r(copy.blocks[i].pointwise)
            copy.blocks[i].fused = r(copy.blocks[i].fused)
            copy.blocks[i].identityBN = r(copy.blocks[i].identityBN)
            copy.blocks[i].postBN = r(copy.blocks[i].postBN)
            copy.blocks[i].alpha = copy.blocks[i].alpha.map { importTestRounded($0, dtype: dtype) }
        }
        copy.fcWeight = r(fcWeight)
        copy.fcBias = r(fcBias)
        return copy
    }
}

// MARK: - Naming

extension ImportTestNetwork {
    func stateDict(_ family: ImportTestFamily, dtype: String = "F32") -> ImportTestStateDict {
        var sd = ImportTestStateDict()
        let isTimm = family == .timm || family == .timmDeploy
        let alwaysNested = family == .officialRepVGG || family == .timm
        func batchNorm(_ prefix: String, _ bn: ImportTestBN, channels: Int) {
            if let gamma = bn.gamma { sd.add(prefix + ".weight", [channels], gamma, dtype: dtype) }
            if let beta = bn.beta { sd.add(prefix + ".bias", [channels], beta, dtype: dtype) }
            sd.add(prefix + ".running_mean", [channels], bn.mean, dtype: dtype)
            sd.add(prefix + ".running_var", [channels], bn.variance, dtype: dtype)
            sd.add(prefix + ".num_batches_tracked", [], [1234], dtype: "I64")
        }
        func conv(_ prefix: String, _ c: ImportTestConv, block: ImportTestBlock, nested: Bool) {
            let shape = [block.outChannels, block.inPerGroup, c.kernel, c.kernel]
            let stem = nested ? prefix + ".conv" : prefix
            sd.add(stem + ".weight", shape, c.weight, dtype: dtype)
            if let bias = c.bias { sd.add(stem + ".bias", [block.outChannels], bias, dtype: dtype) }
            if let bn = c.bn { batchNorm(prefix + ".bn", bn, channels: block.outChannels) }
        }
        for block in blocks {
            let name = isTimm ? (block.stage == 0 ? "stem" : "stages.\(block.stage - 1).\(block.index)")
                              : (block.stage == 0 ? "stage0" : "stage\(block.stage).\(block.index)")
            let tokens: (dense: String, pointwise: String, identity: String, fused: String, post: String) =
                switch family {
                case .timm, .timmDeploy: ("conv_kxk", "conv_1x1", "identity", "reparam_conv", "bn")
                case .superGradients: ("branch_3x3", "branch_1x1", "identity", "rbr_reparam", "post_bn")
                default: ("rbr_dense", "rbr_1x1", "rbr_identity", "rbr_reparam", "bn")
                }
            if let d = block.dense {
                conv("\(name).\(tokens.dense)", d, block: block, nested: alwaysNested || d.bn != nil)
            }
            if let p = block.pointwise {
                conv("\(name).\(tokens.pointwise)", p, block: block, nested: alwaysNested || p.bn != nil)
            }
            if let alpha = block.alpha { sd.add("\(name).alpha", [1], [alpha], dtype: dtype) }
            if let bn = block.identityBN { batchNorm("\(name).\(tokens.identity)", bn, channels: block.outChannels) }
            if let f = block.fused { conv("\(name).\(tokens.fused)", f, block: block, nested: false) }
            if family == .superGradients {
                // The unused placeholder super-gradients always saves; garbage values must not matter.
                let shape = [block.outChannels, block.inPerGroup, 3, 3]
                sd.add("\(name).rbr_reparam.weight", shape, [Float](repeating: 99, count: shape.reduce(1, *)), dtype: dtype)
                sd.add("\(name).rbr_reparam.bias", [block.outChannels], [Float](repeating: -99, count: block.outChannels), dtype: dtype)
            }
            if let bn = block.postBN { batchNorm("\(name).\(tokens.post)", bn, channels: block.outChannels) }
        }
        let head = isTimm ? "head.fc" : "linear"
        let features = blocks.last?.outChannels ?? 0
        sd.add(head + ".weight", [numClasses, features], fcWeight, dtype: dtype)
        sd.add(head + ".bias", [numClasses], fcBias, dtype: dtype)
        return sd
    }
}

// MARK: - safetensors

func importTestLittleEndianBytes(_ t: ImportTestStoredTensor) -> [UInt8] {
    var out: [UInt8] = []
    func append<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
    for v in t.values {
        switch t.dtype {
        case "F16": append(Float16(Float(v)).bitPattern)
        case "BF16": append(UInt16(Float(v).bitPattern >> 16))
        case "F64": append(v.bitPattern)
        case "I64": append(Int64(v))
        default: append(Float(v).bitPattern)
        }
    }
    return out
}

func importTestSafetensors(_ sd: ImportTestStateDict, metadata: [String: String] = [:]) throws -> [UInt8] {
    var writer = SafetensorsWriter(metadata: metadata)
    for (name, t) in sd.entries {
        guard let dtype = SafetensorsDType(rawValue: t.dtype) else { throw ImportTestWriteError.badDType(t.dtype) }
        try writer.add(name: name, dtype: dtype, shape: t.shape, data: importTestLittleEndianBytes(t))
    }
    return writer.serialized()
}

enum ImportTestWriteError: Error { case badDType(String) }

// MARK: - Pickle (what torch.save writes for a state_dict)

indirect enum ImportPickleNode {
    case dict([(String, ImportPickleNode)], ordered: Bool)
    case tensor(name: String, parameter: Bool)
    case int(Int)
    case float(Double)
    case string(String)
    case bool(Bool)
    case none
    case list([ImportPickleNode])
    /// argparse.Namespace(**kwargs) as pickle protocol 2 writes it (NEWOBJ + BUILD).
    case namespace([(String, ImportPickleNode)])
    /// `module.name(argument)`: what a malicious pickle does to run code.
    case call(module: String, name: String, argument: String)
}

/// How one tensor is laid out in its storage (torch.save writes views as storage + offset + strides).
struct ImportTestStorageLayout {
    var storageValues: [Double]
    var offset: Int
    var strides: [Int]
}

struct ImportPickleWriter {
    var protocolVersion: UInt8
    private(set) var bytes: [UInt8] = []
    private var memoCount = 0
    private var globalMemo: [String: Int] = [:]

    init(protocolVersion: UInt8) { self.protocolVersion = protocolVersion }

    mutating func raw(_ b: UInt8...) { bytes.append(contentsOf: b) }
    mutating func u32(_ v: Int) { withUnsafeBytes(of: UInt32(v).littleEndian) { bytes.append(contentsOf: $0) } }

    mutating func memoize() {
        if protocolVersion >= 4 {
            raw(0x94)
        } else if memoCount < 256 {
            raw(0x71, UInt8(memoCount))
        } else {
            raw(0x72); u32(memoCount)
        }
        memoCount += 1
    }

    mutating func recall(_ index: Int) {
        if index < 256 { raw(0x68, UInt8(index)) } else { raw(0x6A); u32(index) }
    }

    mutating func string(_ s: String) {
        let utf8 = Array(s.utf8)
        if protocolVersion >= 4, utf8.count < 256 { raw(0x8C, UInt8(utf8.count)) } else { raw(0x58); u32(utf8.count) }
        bytes.append(contentsOf: utf8)
        memoize()
    }

    mutating func int(_ v: Int) {
        if v >= 0, v < 256 { raw(0x4B, UInt8(v)) }
        else if v >= 0, v < 65536 { raw(0x4D, UInt8(v & 0xFF), UInt8(v >> 8)) }
        else if v >= Int(Int32.min), v <= Int(Int32.max) { raw(0x4A); withUnsafeBytes(of: Int32(v).littleEndian) { bytes.append(contentsOf: $0) } }
        else { raw(0x8A, 8); withUnsafeBytes(of: Int64(v).littleEndian) { bytes.append(contentsOf: $0) } }
    }

    mutating func global(_ module: String, _ name: String) {
        let key = module + "." + name
        if let index = globalMemo[key] { recall(index); return }
        if protocolVersion >= 4 {
            string(module); string(name); raw(0x93)
        } else {
            raw(0x63); bytes.append(contentsOf: Array((module + "\n" + name + "\n").utf8))
        }
        globalMemo[key] = memoCount
        memoize()
    }

    mutating func tuple(_ items: [Int]) {
        switch items.count {
        case 0: raw(0x29)
        case 1: int(items[0]); raw(0x85)
        case 2: int(items[0]); int(items[1]); raw(0x86)
        case 3: int(items[0]); int(items[1]); int(items[2]); raw(0x87)
        default: raw(0x28); for i in items { int(i) }; raw(0x74)
        }
    }

    mutating func emptyOrderedDict() {
        global("collections", "OrderedDict"); raw(0x29, 0x52); memoize()
    }

    mutating func tensor(storageKey: String, storageType: String, storageCount: Int, offset: Int, shape: [Int], strides: [Int]) {
        global("torch._utils", "_rebuild_tensor_v2")
        raw(0x28) // MARK for the argument tuple
        raw(0x28); string("storage"); global("torch", storageType); string(storageKey); string("cpu"); int(storageCount)
        raw(0x74, 0x51) // TUPLE, BINPERSID
        int(offset)
        tuple(shape)
        tuple(strides)
        raw(0x89) // requires_grad False
        emptyOrderedDict()
        raw(0x74, 0x52) // TUPLE, REDUCE
        memoize()
    }
}

/// Writes a torch.save-style zip: archive/data.pkl, archive/byteorder, archive/data/<key>, archive/version.
struct ImportTorchArchiveBuilder {
    var protocolVersion: UInt8 = 2
    /// Tensors whose storage is a transposed, offset view (exercises strides and storage offsets).
    var stridedTensors: Set<String> = []
    /// Entry names whose zip method field claims deflate (to test the rejection).
    var compressedEntries: Set<String> = []
    /// Overrides the element count a storage record claims (to test the size check).
    var claimedStorageCounts: [String: Int] = [:]

    func archive(root: ImportPickleNode, tensors: ImportTestStateDict) throws -> [UInt8] {
        var storages: [(key: String, bytes: [UInt8])] = []
        var pickle = ImportPickleWriter(protocolVersion: protocolVersion)
        pickle.raw(0x80, protocolVersion)
        if protocolVersion >= 4 { pickle.raw(0x95); pickle.raw(0, 0, 0, 0, 0, 0, 0, 0) } // FRAME hint (length unused)
        let lookup = Dictionary(tensors.entries.map { ($0.name, $0.tensor) }, uniquingKeysWith: { a, _ in a })

        func emit(_ node: ImportPickleNode) throws {
            switch node {
            case .none: pickle.raw(0x4E)
            case .bool(let b): pickle.raw(b ? 0x88 : 0x89)
            case .int(let v): pickle.int(v)
            case .float(let v): pickle.raw(0x47); withUnsafeBytes(of: v.bitPattern.bigEndian) { pickle.bytes_append($0) }
            case .string(let s): pickle.string(s)
            case .list(let items):
                pickle.raw(0x5D); pickle.memoize()
                if !items.isEmpty { pickle.raw(0x28); for i in items { try emit(i) }; pickle.raw(0x65) }
            case .dict(let entries, let ordered):
                if ordered { pickle.emptyOrderedDict() } else { pickle.raw(0x7D); pickle.memoize() }
                if !entries.isEmpty {
                    pickle.raw(0x28)
                    for (k, v) in entries { pickle.string(k); try emit(v) }
                    pickle.raw(0x75)
                }
                if ordered { // state_dict()._metadata, set through BUILD as torch does
                    pickle.raw(0x7D); pickle.memoize(); pickle.string("_metadata"); pickle.emptyOrderedDict(); pickle.raw(0x73, 0x62)
                }
            case .namespace(let entries):
                pickle.global("argparse", "Namespace"); pickle.raw(0x29, 0x81); pickle.memoize()
                pickle.raw(0x7D); pickle.memoize()
                pickle.raw(0x28); for (k, v) in entries { pickle.string(k); try emit(v) }; pickle.raw(0x75)
                pickle.raw(0x62)
            case .call(let module, let name, let argument):
                pickle.global(module, name); pickle.string(argument); pickle.raw(0x85, 0x52)
            case .tensor(let name, let parameter):
                guard let t = lookup[name] else { throw ImportTestWriteError.badDType("no tensor \(name)") }
                let key = String(storages.count)
                let storageType = ["F32": "FloatStorage", "F16": "HalfStorage", "BF16": "BFloat16Storage",
                                   "F64": "DoubleStorage", "I64": "LongStorage"][t.dtype] ?? "FloatStorage"
                var layout = ImportTestStorageLayout(storageValues: t.values, offset: 0, strides: [])
                var stride = 1
                for dim in t.shape.reversed() { layout.strides.insert(stride, at: 0); stride *= dim }
                if stridedTensors.contains(name), t.shape.count == 2 {
                    // Store the transpose after 3 unused elements; view it back with swapped strides.
                    let (rows, cols) = (t.shape[0], t.shape[1])
                    var storage = [Double](repeating: -7, count: 3)
                    for c in 0..<cols { for r in 0..<rows { storage.append(t.values[r * cols + c]) } }
                    layout = ImportTestStorageLayout(storageValues: storage, offset: 3, strides: [1, rows])
                }
                if parameter { pickle.global("torch._utils", "_rebuild_parameter"); pickle.raw(0x28) }
                pickle.tensor(storageKey: key, storageType: storageType,
                              storageCount: claimedStorageCounts[name] ?? layout.storageValues.count,
                              offset: layout.offset, shape: t.shape, strides: layout.strides)
                if parameter { pickle.raw(0x89); pickle.emptyOrderedDict(); pickle.raw(0x74, 0x52); pickle.memoize() }
                storages.append((key, importTestLittleEndianBytes(
                    ImportTestStoredTensor(shape: [layout.storageValues.count], values: layout.storageValues, dtype: t.dtype))))
            }
        }
        try emit(root)
        pickle.raw(0x2E)

        var entries: [(String, [UInt8])] = [("archive/data.pkl", pickle.bytes), ("archive/byteorder", Array("little".utf8))]
        for s in storages { entries.append(("archive/data/" + s.key, s.bytes)) }
        entries.append(("archive/version", Array("3\n".utf8)))
        return importTestZip(entries, compressed: compressedEntries)
    }
}

extension ImportPickleWriter {
    mutating func bytes_append(_ raw: UnsafeRawBufferPointer) { bytes.append(contentsOf: raw) }
}

/// A root dict `{prefix+name: tensor}` in file order, optionally wrapped as `{wrapper: sd, ...extras}`.
func importTestPickleRoot(_ sd: ImportTestStateDict, prefix: String = "", wrapper: String? = nil, parameters: Bool = false,
                          extras: [(String, ImportPickleNode)] = []) -> ImportPickleNode {
    let inner = ImportPickleNode.dict(sd.entries.map { (prefix + $0.name, .tensor(name: $0.name, parameter: parameters)) }, ordered: true)
    guard let wrapper else { return inner }
    return .dict([(wrapper, inner)] + extras, ordered: false)
}

// MARK: - Zip (stored entries, data aligned to 64 bytes like PyTorch's writer)

private func importTestCRC32(_ data: [UInt8]) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in data {
        crc ^= UInt32(byte)
        for _ in 0..<8 { crc = (crc >> 1) ^ (0xEDB8_8320 & (0 &- (crc & 1))) }
    }
    return ~crc
}

func importTestZip(_ entries: [(String, [UInt8])], compressed: Set<String> = []) -> [UInt8] {
    var out: [UInt8] = []
    var central: [UInt8] = []
    func le16(_ v: Int, _ buffer: inout [UInt8]) { buffer.append(UInt8(v & 0xFF)); buffer.append(UInt8((v >> 8) & 0xFF)) }
    func le32(_ v: UInt32, _ buffer: inout [UInt8]) { for i in 0..<4 { buffer.append(UInt8((v >> (8 * UInt32(i))) & 0xFF)) } }
    for (name, data) in entries {
        let nameBytes = Array(name.utf8)
        let method = compressed.contains(name) ? 8 : 0
        let crc = importTestCRC32(data)
        let offset = out.count
        let padding = (64 - (out.count + 30 + nameBytes.count + 4) % 64) % 64
        le32(0x0403_4b50, &out); le16(20, &out); le16(0, &out); le16(method, &out); le16(0, &out); le16(0, &out)
        le32(crc, &out); le32(UInt32(data.count), &out); le32(UInt32(data.count), &out)
        le16(nameBytes.count, &out); le16(4 + padding, &out)
        out.append(contentsOf: nameBytes)
        le16(0xCAFE, &out); le16(padding, &out); out.append(contentsOf: [UInt8](repeating: 0, count: padding))
        out.append(contentsOf: data)

        le32(0x0201_4b50, &central); le16(20, &central); le16(20, &central); le16(0, &central); le16(method, &central)
        le16(0, &central); le16(0, &central); le32(crc, &central); le32(UInt32(data.count), &central)
        le32(UInt32(data.count), &central); le16(nameBytes.count, &central); le16(0, &central); le16(0, &central)
        le16(0, &central); le16(0, &central); le32(0, &central); le32(UInt32(offset), &central)
        central.append(contentsOf: nameBytes)
    }
    let centralOffset = out.count
    out.append(contentsOf: central)
    le32(0x0605_4b50, &out); le16(0, &out); le16(0, &out); le16(entries.count, &out); le16(entries.count, &out)
    le32(UInt32(central.count), &out); le32(UInt32(centralOffset), &out); le16(0, &out)
    return out
}

// MARK: - Files

private func importTestDirectory() -> URL {
    FileManager.default.temporaryDirectory.appendingPathComponent("qarep-import-tests-\(getpid())")
}

/// The test process's scratch folder, removed when the process exits (every run used to leave one in /tmp).
private let importTestScratch: URL = {
    atexit { try? FileManager.default.removeItem(at: importTestDirectory()) }
    return importTestDirectory()
}()

func importTestTemporaryFile(_ name: String, _ bytes: [UInt8]) throws -> String {
    let directory = importTestScratch
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    let url = directory.appendingPathComponent(name)
    try Data(bytes).write(to: url)
    return url.path
}

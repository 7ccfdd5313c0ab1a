// The safetensors container (https://github.com/huggingface/safetensors): u64 LE header length, a JSON
// header, then raw little-endian tensor data. Reading validates everything the header claims against the
// real byte count before any tensor is touched, so later code can index the data without further checks.

package enum SafetensorsDType: String, Sendable, CaseIterable {
    case bool = "BOOL"
    case u8 = "U8", i8 = "I8"
    case u16 = "U16", i16 = "I16", f16 = "F16", bf16 = "BF16"
    case u32 = "U32", i32 = "I32", f32 = "F32"
    case u64 = "U64", i64 = "I64", f64 = "F64"
    case f8e4m3 = "F8_E4M3", f8e5m2 = "F8_E5M2"

    package var byteSize: Int {
        switch self {
        case .bool, .u8, .i8, .f8e4m3, .f8e5m2: return 1
        case .u16, .i16, .f16, .bf16: return 2
        case .u32, .i32, .f32: return 4
        case .u64, .i64, .f64: return 8
        }
    }

    // Larger element sizes first: laid out in this order after an 8-aligned header, every tensor is
    // naturally aligned with no gaps (readers such as the reference implementation reject gaps).
    var alignmentRank: Int { -byteSize }
}

/// A shape as messages write it, "[12, 5]": spelled out because Embedded Swift cannot print an array.
func shapeText(_ shape: [Int]) -> String {
    "[" + shape.map { String($0) }.joined(separator: ", ") + "]"
}

package struct SafetensorsTensorInfo: Sendable, Equatable {
    package var name: String
    package var dtype: SafetensorsDType
    package var shape: [Int]
    package var elementCount: Int
    /// Absolute byte range in the file (data-area offsets plus the data area's start).
    package var byteRange: Range<Int>
}

/// Random access to the bytes of a safetensors file, so that a reader can take the header first and then
/// each tensor straight into its destination, never holding the whole file.
protocol ByteSource {
    /// Bytes in the file.
    var count: Int { get }
    /// Fills `buffer` with the bytes from `offset` on; the range lies inside 0..<count.
    func read(at offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(QARepError)
}

/// A file already in memory (the caller's buffer, not a copy of it).
struct MemoryByteSource: ByteSource {
    let bytes: UnsafeRawBufferPointer

    var count: Int { bytes.count }

    func read(at offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(QARepError) {
        guard offset >= 0, buffer.count <= bytes.count - offset else {
            throw QARepError(.internal, "read of \(buffer.count) bytes at \(offset) outside a \(bytes.count)-byte buffer")
        }
        guard buffer.count > 0, let destination = buffer.baseAddress, let base = bytes.baseAddress else { return }
        destination.copyMemory(from: base + offset, byteCount: buffer.count)
    }
}

extension ByteSource {
    func bytes(at offset: Int, count: Int) throws(QARepError) -> [UInt8] {
        var result = [UInt8](repeating: 0, count: count)
        try result.withUnsafeMutableBufferPointer { (buffer) throws(QARepError) in
            try read(at: offset, into: UnsafeMutableRawBufferPointer(buffer))
        }
        return result
    }

    /// The tensor's elements, decoded little-endian, read from the file straight into the array.
    func values<T: FixedWidthInteger>(of tensor: SafetensorsTensorInfo, as type: T.Type, dtype: SafetensorsDType) throws(QARepError) -> [T] {
        guard tensor.dtype == dtype, dtype.byteSize == MemoryLayout<T>.size else {
            throw .invalidModel("tensor \"\(tensor.name)\" has dtype \(tensor.dtype.rawValue), expected \(dtype.rawValue)")
        }
        var result = [T](repeating: 0, count: tensor.elementCount)
        try result.withUnsafeMutableBufferPointer { (buffer) throws(QARepError) in
            try read(at: tensor.byteRange.lowerBound, into: UnsafeMutableRawBufferPointer(buffer))
        }
        if T(littleEndian: 1) != 1 {
            for i in result.indices { result[i] = T(littleEndian: result[i]) }
        }
        return result
    }

    func int8Values(_ tensor: SafetensorsTensorInfo) throws(QARepError) -> [Int8] { try values(of: tensor, as: Int8.self, dtype: .i8) }
    func uint8Values(_ tensor: SafetensorsTensorInfo) throws(QARepError) -> [UInt8] { try values(of: tensor, as: UInt8.self, dtype: .u8) }
    func int32Values(_ tensor: SafetensorsTensorInfo) throws(QARepError) -> [Int32] { try values(of: tensor, as: Int32.self, dtype: .i32) }

    /// Hands the int8 tensor to `body`, read into `staging` when that holds exactly its bytes (the kernels then
    /// pack it where it lies), else into `buffer`, whose storage is reused from one tensor to the next: a fresh
    /// array per tensor was zero-filled and page-faulted in every time, more than half of a load's page faults.
    func withInt8Values(_ tensor: SafetensorsTensorInfo, staging: UnsafeMutableBufferPointer<Int8>?, reusing buffer: inout [Int8],
                        _ body: (UnsafeBufferPointer<Int8>) throws(QARepError) -> Void) throws(QARepError) {
        guard tensor.dtype == .i8 else {
            throw .invalidModel("tensor \"\(tensor.name)\" has dtype \(tensor.dtype.rawValue), expected I8")
        }
        let count = tensor.elementCount
        if let staging, staging.count == count {
            try read(at: tensor.byteRange.lowerBound, into: UnsafeMutableRawBufferPointer(staging))
            try body(UnsafeBufferPointer(staging))
            return
        }
        if buffer.count > count {
            buffer.removeLast(buffer.count - count)
        } else if buffer.count < count {
            buffer.append(contentsOf: repeatElement(0, count: count - buffer.count))
        }
        try buffer.withUnsafeMutableBufferPointer { (destination) throws(QARepError) in
            try read(at: tensor.byteRange.lowerBound, into: UnsafeMutableRawBufferPointer(destination))
        }
        try buffer.withUnsafeBufferPointer(body)
    }

    func float32Values(_ tensor: SafetensorsTensorInfo) throws(QARepError) -> [Float] {
        guard tensor.dtype == .f32 else {
            throw .invalidModel("tensor \"\(tensor.name)\" has dtype \(tensor.dtype.rawValue), expected F32")
        }
        let bits = try values(of: SafetensorsTensorInfo(name: tensor.name, dtype: .u32, shape: tensor.shape,
                                                         elementCount: tensor.elementCount, byteRange: tensor.byteRange),
                              as: UInt32.self, dtype: .u32)
        return bits.map(Float.init(bitPattern:))
    }
}

/// The header of a safetensors file, validated against the file's real size: metadata and where every
/// tensor lies. Reading it takes only the first 8 + header-length bytes of the source.
struct SafetensorsHeader: Sendable {
    /// Start of the data area (8 + header length).
    let dataStart: Int
    let metadata: [String: String]
    let tensors: [String: SafetensorsTensorInfo]

    init(source: some ByteSource, maxHeaderBytes: Int, maxHeaderValues: Int = .max) throws(QARepError) {
        let fileSize = source.count
        guard fileSize >= 8 else {
            throw .invalidModel("file is \(fileSize) bytes, shorter than the 8-byte safetensors header length")
        }
        let lengthBytes = try source.bytes(at: 0, count: 8)
        var headerLength: UInt64 = 0
        for i in 0..<8 { headerLength |= UInt64(lengthBytes[i]) << (8 * UInt64(i)) }
        guard headerLength <= UInt64(maxHeaderBytes) else {
            throw .invalidModel("safetensors header length \(headerLength) exceeds the limit of \(maxHeaderBytes) bytes")
        }
        let headerEnd = 8 + Int(headerLength)
        guard headerEnd <= fileSize else {
            throw .invalidModel("safetensors header length \(headerLength) runs past the end of the \(fileSize)-byte file")
        }
        // Checked (and the header read) only now that its length is known to lie inside the file.
        let headerBytes = try source.bytes(at: 8, count: Int(headerLength))
        guard headerLength >= 2, headerBytes[0] == UInt8(ascii: "{") else {
            throw .invalidModel("safetensors header does not start with a JSON object")
        }
        let root: JSONValue
        do {
            root = try JSONValue.parse(headerBytes, maxValues: maxHeaderValues)
        } catch {
            throw .invalidModel("safetensors header is not valid JSON: \(error)")
        }
        guard let members = root.objectValue else {
            throw .invalidModel("safetensors header is not a JSON object")
        }
        let dataSize = fileSize - headerEnd

        var metadata: [String: String] = [:]
        var tensors: [String: SafetensorsTensorInfo] = [:]
        // In name order, so that of several bad entries the same one is reported every time (a dictionary's
        // order changes from run to run) and by both builds of the library.
        for name in members.keys.sorted() {
            guard let value = members[name] else { continue }
            if name == "__metadata__" {
                guard let entries = value.objectValue else {
                    throw .invalidModel("safetensors __metadata__ is not a JSON object")
                }
                for key in entries.keys.sorted() {
                    guard let entry = entries[key] else { continue }
                    guard let text = entry.stringValue else {
                        throw .invalidModel("metadata key \"\(key)\" is not a string")
                    }
                    metadata[key] = text
                }
                continue
            }
            var info = try SafetensorsHeader.parseTensorEntry(name: name, value: value, dataSize: dataSize)
            info.byteRange = (info.byteRange.lowerBound + headerEnd)..<(info.byteRange.upperBound + headerEnd)
            tensors[name] = info
        }

        // Overlap check over non-empty tensors sorted by start; empty tensors own no bytes.
        let ordered = tensors.values.filter { !$0.byteRange.isEmpty }
            .sorted { ($0.byteRange.lowerBound, $0.name) < ($1.byteRange.lowerBound, $1.name) }
        for (previous, next) in zip(ordered, ordered.dropFirst()) where next.byteRange.lowerBound < previous.byteRange.upperBound {
            throw .invalidModel("tensor \"\(next.name)\" overlaps tensor \"\(previous.name)\" in the data area")
        }

        self.dataStart = headerEnd
        self.metadata = metadata
        self.tensors = tensors
    }

    static let maxRank = 16
    static let maxDimension = 1 << 40

    private static func parseTensorEntry(name: String, value: JSONValue, dataSize: Int) throws(QARepError) -> SafetensorsTensorInfo {
        guard let fields = value.objectValue else {
            throw .invalidModel("tensor \"\(name)\": header entry is not a JSON object")
        }
        for key in fields.keys.sorted() where key != "dtype" && key != "shape" && key != "data_offsets" {
            throw .invalidModel("tensor \"\(name)\": unknown header field \"\(key)\"")
        }
        guard let dtypeName = fields["dtype"]?.stringValue else {
            throw .invalidModel("tensor \"\(name)\": missing or non-string \"dtype\"")
        }
        guard let dtype = SafetensorsDType(rawValue: dtypeName) else {
            throw .invalidModel("tensor \"\(name)\": unknown dtype \"\(dtypeName)\"")
        }
        guard let shapeValues = fields["shape"]?.arrayValue else {
            throw .invalidModel("tensor \"\(name)\": missing or non-array \"shape\"")
        }
        guard shapeValues.count <= maxRank else {
            throw .invalidModel("tensor \"\(name)\": rank \(shapeValues.count) exceeds \(maxRank)")
        }
        var shape: [Int] = []
        var elementCount = 1
        for (axis, dimValue) in shapeValues.enumerated() {
            guard let dim = dimValue.intValue, dim >= 0, dim <= maxDimension else {
                throw .invalidModel("tensor \"\(name)\": shape dimension \(axis) is not an integer in 0...\(maxDimension)")
            }
            shape.append(dim)
            let (product, overflow) = elementCount.multipliedReportingOverflow(by: dim)
            guard !overflow, product <= maxDimension else {
                throw .invalidModel("tensor \"\(name)\": element count of shape \(shapeText(shape)) is too large")
            }
            elementCount = product
        }
        guard let offsets = fields["data_offsets"]?.arrayValue, offsets.count == 2,
              let begin = offsets[0].intValue, let end = offsets[1].intValue else {
            throw .invalidModel("tensor \"\(name)\": \"data_offsets\" is not an array of two integers")
        }
        guard begin >= 0, begin <= end else {
            throw .invalidModel("tensor \"\(name)\": data_offsets [\(begin), \(end)] are not ordered non-negative offsets")
        }
        guard end <= dataSize else {
            throw .invalidModel("tensor \"\(name)\": data_offsets [\(begin), \(end)] lie outside the \(dataSize)-byte data area")
        }
        // elementCount <= 2^40 and byteSize <= 8, so this cannot overflow.
        let byteCount = elementCount * dtype.byteSize
        guard end - begin == byteCount else {
            throw .invalidModel("tensor \"\(name)\": data_offsets span \(end - begin) bytes but shape \(shapeText(shape)) of \(dtypeName) needs \(byteCount)")
        }
        return SafetensorsTensorInfo(name: name, dtype: dtype, shape: shape, elementCount: elementCount, byteRange: begin..<end)
    }

}

/// A validated safetensors file held in memory.
package struct SafetensorsArchive: Sendable {
    package static let defaultMaxHeaderBytes = 100 << 20

    package let bytes: [UInt8]
    /// Start of the data area (8 + header length).
    package let dataStart: Int
    package let metadata: [String: String]
    package let tensors: [String: SafetensorsTensorInfo]

    /// Tensor names in file order (by data offset).
    package var tensorNamesInFileOrder: [String] {
        tensors.values.sorted { ($0.byteRange.lowerBound, $0.name) < ($1.byteRange.lowerBound, $1.name) }.map { $0.name }
    }

    package init(bytes: [UInt8], maxHeaderBytes: Int = SafetensorsArchive.defaultMaxHeaderBytes) throws(QARepError) {
        let header = try bytes.withUnsafeBufferPointer { (raw) throws(QARepError) -> SafetensorsHeader in
            try SafetensorsHeader(source: MemoryByteSource(bytes: UnsafeRawBufferPointer(raw)), maxHeaderBytes: maxHeaderBytes)
        }
        self.bytes = bytes
        self.dataStart = header.dataStart
        self.metadata = header.metadata
        self.tensors = header.tensors
    }

    package func tensorBytes(_ tensor: SafetensorsTensorInfo) -> ArraySlice<UInt8> { bytes[tensor.byteRange] }

    private func withSource<R>(_ body: (MemoryByteSource) throws(QARepError) -> R) throws(QARepError) -> R {
        try bytes.withUnsafeBufferPointer { (raw) throws(QARepError) -> R in try body(MemoryByteSource(bytes: UnsafeRawBufferPointer(raw))) }
    }

    /// The tensor's elements, decoded little-endian. Throws if the tensor's dtype is not `dtype`.
    package func values<T: FixedWidthInteger>(of tensor: SafetensorsTensorInfo, as type: T.Type, dtype: SafetensorsDType) throws(QARepError) -> [T] {
        try withSource { (source) throws(QARepError) -> [T] in try source.values(of: tensor, as: type, dtype: dtype) }
    }

    package func int8Values(_ tensor: SafetensorsTensorInfo) throws(QARepError) -> [Int8] { try values(of: tensor, as: Int8.self, dtype: .i8) }
    package func uint8Values(_ tensor: SafetensorsTensorInfo) throws(QARepError) -> [UInt8] { try values(of: tensor, as: UInt8.self, dtype: .u8) }
    package func int32Values(_ tensor: SafetensorsTensorInfo) throws(QARepError) -> [Int32] { try values(of: tensor, as: Int32.self, dtype: .i32) }

    package func float32Values(_ tensor: SafetensorsTensorInfo) throws(QARepError) -> [Float] {
        try withSource { (source) throws(QARepError) -> [Float] in try source.float32Values(tensor) }
    }
}

/// Builds a safetensors file. Tensors are laid out without gaps, larger element types first, after a header
/// padded with spaces to a multiple of 8 bytes, so every tensor is naturally aligned in the file.
package struct SafetensorsWriter: Sendable {
    struct Entry: Sendable {
        var name: String
        var dtype: SafetensorsDType
        var shape: [Int]
        var data: [UInt8]
    }

    var entries: [Entry] = []
    package var metadata: [String: String] = [:]

    package init(metadata: [String: String] = [:]) { self.metadata = metadata }

    /// Adds a tensor from its raw little-endian bytes.
    package mutating func add(name: String, dtype: SafetensorsDType, shape: [Int], data: [UInt8]) throws(QARepError) {
        guard name != "__metadata__", !entries.contains(where: { $0.name == name }) else {
            throw .invalidArgument("tensor name \"\(name)\" is reserved or already used")
        }
        var count = 1
        for dim in shape {
            let (product, overflow) = count.multipliedReportingOverflow(by: dim)
            guard dim >= 0, !overflow else { throw .invalidArgument("tensor \"\(name)\": invalid shape \(shapeText(shape))") }
            count = product
        }
        let (bytes, overflow) = count.multipliedReportingOverflow(by: dtype.byteSize)
        guard !overflow, bytes == data.count else {
            throw .invalidArgument("tensor \"\(name)\": \(data.count) bytes of data for shape \(shapeText(shape)) of \(dtype.rawValue)")
        }
        entries.append(Entry(name: name, dtype: dtype, shape: shape, data: data))
    }

    package mutating func add<T: FixedWidthInteger>(name: String, dtype: SafetensorsDType, shape: [Int], values: [T]) throws(QARepError) {
        guard dtype.byteSize == MemoryLayout<T>.size else {
            throw .invalidArgument("tensor \"\(name)\": element type does not match dtype \(dtype.rawValue)")
        }
        var data: [UInt8] = []
        data.reserveCapacity(values.count * MemoryLayout<T>.size)
        for value in values {
            var v = value.littleEndian
            withUnsafeBytes(of: &v) { data.append(contentsOf: $0) }
        }
        try add(name: name, dtype: dtype, shape: shape, data: data)
    }

    package mutating func add(name: String, shape: [Int], float32 values: [Float]) throws(QARepError) {
        try add(name: name, dtype: .f32, shape: shape, values: values.map { $0.bitPattern })
    }

    package func serialized() -> [UInt8] {
        let ordered = entries.enumerated().sorted { ($0.element.dtype.alignmentRank, $0.offset) < ($1.element.dtype.alignmentRank, $1.offset) }
            .map { $0.element }
        var header: [String: JSONValue] = [:]
        if !metadata.isEmpty {
            header["__metadata__"] = .object(metadata.mapValues { .string($0) })
        }
        var offset = 0
        for entry in ordered {
            header[entry.name] = .object([
                "dtype": .string(entry.dtype.rawValue),
                "shape": .array(entry.shape.map { JSONValue.integer($0) }),
                "data_offsets": .array([.integer(offset), .integer(offset + entry.data.count)]),
            ])
            offset += entry.data.count
        }
        var headerBytes = Array(JSONValue.object(header).serialized().utf8)
        while (8 + headerBytes.count) % 8 != 0 { headerBytes.append(UInt8(ascii: " ")) }
        var out: [UInt8] = []
        out.reserveCapacity(8 + headerBytes.count + offset)
        var length = UInt64(headerBytes.count).littleEndian
        withUnsafeBytes(of: &length) { out.append(contentsOf: $0) }
        out.append(contentsOf: headerBytes)
        for entry in ordered { out.append(contentsOf: entry.data) }
        return out
    }
}

// Minimal ZIP reader for torch.save archives: walks the central directory (ZIP64 included), and hands out
// the bytes of stored (uncompressed) entries after checking every offset against the file and the CRC-32.
// torch.save never compresses, so any other method is reported instead of inflated.

struct ZipEntry: Sendable {
    var name: String
    var method: UInt16
    var crc32: UInt32
    var compressedSize: Int
    var uncompressedSize: Int
    var localHeaderOffset: Int
}

struct ZipArchiveReader {
    let bytes: [UInt8]
    private(set) var entries: [ZipEntry] = []
    private var entryIndexByName: [String: Int] = [:]

    /// The most central-directory records we accept; torch archives hold a handful per tensor.
    static let maximumEntryCount = 1 << 20

    init(bytes: [UInt8]) throws {
        self.bytes = bytes
        let (entryCount, directoryOffset, directorySize) = try Self.locateCentralDirectory(bytes)
        guard entryCount <= Self.maximumEntryCount else {
            throw ImportError("zip: \(entryCount) entries is more than the \(Self.maximumEntryCount) accepted")
        }
        guard directoryOffset <= bytes.count, directorySize <= bytes.count - directoryOffset else {
            throw ImportError("zip: central directory (offset \(directoryOffset), size \(directorySize)) lies outside the \(bytes.count)-byte file")
        }
        var cursor = directoryOffset
        let directoryEnd = directoryOffset + directorySize
        for index in 0..<entryCount {
            guard cursor + 46 <= directoryEnd, Self.u32(bytes, cursor) == 0x0201_4b50 else {
                throw ImportError("zip: central directory record \(index) is missing or truncated")
            }
            let flags = Self.u16(bytes, cursor + 8)
            let method = Self.u16(bytes, cursor + 10)
            let crc = Self.u32(bytes, cursor + 16)
            var compressedSize = Int(Self.u32(bytes, cursor + 20))
            var uncompressedSize = Int(Self.u32(bytes, cursor + 24))
            let nameLength = Int(Self.u16(bytes, cursor + 28))
            let extraLength = Int(Self.u16(bytes, cursor + 30))
            let commentLength = Int(Self.u16(bytes, cursor + 32))
            var localOffset = Int(Self.u32(bytes, cursor + 42))
            let nameStart = cursor + 46
            let recordEnd = nameStart + nameLength + extraLength + commentLength
            guard recordEnd <= directoryEnd else {
                throw ImportError("zip: central directory record \(index) runs past the directory end")
            }
            let name = String(decoding: bytes[nameStart..<nameStart + nameLength], as: UTF8.self)
            guard flags & 1 == 0 else { throw ImportError("zip: entry '\(name)' is encrypted") }
            // ZIP64: 0xFFFFFFFF fields move to the 0x0001 extra record, in this fixed order.
            var extra = nameStart + nameLength
            let extraEnd = extra + extraLength
            while extra + 4 <= extraEnd {
                let tag = Self.u16(bytes, extra)
                let size = Int(Self.u16(bytes, extra + 2))
                guard extra + 4 + size <= extraEnd else {
                    throw ImportError("zip: extra field of entry '\(name)' is truncated")
                }
                if tag == 0x0001 {
                    var field = extra + 4
                    func next() throws -> Int {
                        guard field + 8 <= extra + 4 + size else {
                            throw ImportError("zip: ZIP64 field of entry '\(name)' is truncated")
                        }
                        let value = Self.u64(bytes, field)
                        field += 8
                        guard value <= UInt64(Int.max) else { throw ImportError("zip: entry '\(name)' size overflows") }
                        return Int(value)
                    }
                    if uncompressedSize == 0xFFFF_FFFF { uncompressedSize = try next() }
                    if compressedSize == 0xFFFF_FFFF { compressedSize = try next() }
                    if localOffset == 0xFFFF_FFFF { localOffset = try next() }
                }
                extra += 4 + size
            }
            let entry = ZipEntry(name: name, method: method, crc32: crc, compressedSize: compressedSize,
                                 uncompressedSize: uncompressedSize, localHeaderOffset: localOffset)
            if entryIndexByName[name] == nil { entryIndexByName[name] = entries.count }
            entries.append(entry)
            cursor = recordEnd
        }
    }

    func entry(named name: String) -> ZipEntry? {
        entryIndexByName[name].map { entries[$0] }
    }

    /// The range of an entry's data in `bytes`, after validating its local header, method and CRC.
    func dataRange(of entry: ZipEntry) throws -> Range<Int> {
        guard entry.method == 0 else {
            throw ImportError("zip: entry '\(entry.name)' is compressed (method \(entry.method)); torch.save archives store entries uncompressed, re-save the checkpoint with torch.save")
        }
        guard entry.compressedSize == entry.uncompressedSize else {
            throw ImportError("zip: stored entry '\(entry.name)' has different compressed and uncompressed sizes")
        }
        let header = entry.localHeaderOffset
        guard header <= bytes.count - 30, Self.u32(bytes, header) == 0x0403_4b50 else {
            throw ImportError("zip: local header of entry '\(entry.name)' is missing (offset \(header))")
        }
        let start = header + 30 + Int(Self.u16(bytes, header + 26)) + Int(Self.u16(bytes, header + 28))
        guard start <= bytes.count, entry.uncompressedSize <= bytes.count - start else {
            throw ImportError("zip: data of entry '\(entry.name)' (\(entry.uncompressedSize) bytes) runs past the end of the file; the file is truncated")
        }
        let range = start..<start + entry.uncompressedSize
        let actual = bytes.withUnsafeBufferPointer { crc32(UnsafeBufferPointer(rebasing: $0[range])) }
        guard actual == entry.crc32 else {
            throw ImportError("zip: CRC-32 mismatch in entry '\(entry.name)'; the file is corrupt")
        }
        return range
    }

    private static func locateCentralDirectory(_ bytes: [UInt8]) throws -> (count: Int, offset: Int, size: Int) {
        guard bytes.count >= 22 else { throw ImportError("zip: file is too short to be a zip archive") }
        let lowestStart = max(0, bytes.count - 22 - 0xFFFF)
        var position = bytes.count - 22
        while position >= lowestStart {
            if u32(bytes, position) == 0x0605_4b50 { break }
            position -= 1
        }
        guard position >= lowestStart else {
            throw ImportError("zip: end-of-central-directory record not found; the file is truncated or not a zip archive")
        }
        var count = Int(u16(bytes, position + 10))
        var size = Int(u32(bytes, position + 12))
        var offset = Int(u32(bytes, position + 16))
        if count == 0xFFFF || size == 0xFFFF_FFFF || offset == 0xFFFF_FFFF {
            let locator = position - 20
            guard locator >= 0, u32(bytes, locator) == 0x0706_4b50 else {
                throw ImportError("zip: ZIP64 end-of-central-directory locator is missing")
            }
            let record64 = u64(bytes, locator + 8)
            guard bytes.count >= 56, record64 <= UInt64(bytes.count - 56), u32(bytes, Int(record64)) == 0x0606_4b50 else {
                throw ImportError("zip: ZIP64 end-of-central-directory record is missing")
            }
            let base = Int(record64)
            let values = [u64(bytes, base + 32), u64(bytes, base + 40), u64(bytes, base + 48)]
            guard values.allSatisfy({ $0 <= UInt64(bytes.count) }) else {
                throw ImportError("zip: ZIP64 directory fields exceed the file size")
            }
            (count, size, offset) = (Int(values[0]), Int(values[1]), Int(values[2]))
        }
        return (count, offset, size)
    }

    static func u16(_ b: [UInt8], _ i: Int) -> UInt16 { UInt16(b[i]) | UInt16(b[i + 1]) << 8 }
    static func u32(_ b: [UInt8], _ i: Int) -> UInt32 { UInt32(u16(b, i)) | UInt32(u16(b, i + 2)) << 16 }
    static func u64(_ b: [UInt8], _ i: Int) -> UInt64 { UInt64(u32(b, i)) | UInt64(u32(b, i + 4)) << 32 }
}

private let crc32Table: [UInt32] = (0..<256).map { n -> UInt32 in
    var c = UInt32(n)
    for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
    return c
}

/// CRC-32 (ISO-HDLC), as zip stores it.
func crc32(_ data: UnsafeBufferPointer<UInt8>) -> UInt32 {
    var c: UInt32 = 0xFFFF_FFFF
    crc32Table.withUnsafeBufferPointer { table in
        for byte in data { c = table[Int((c ^ UInt32(byte)) & 0xFF)] ^ (c >> 8) }
    }
    return c ^ 0xFFFF_FFFF
}

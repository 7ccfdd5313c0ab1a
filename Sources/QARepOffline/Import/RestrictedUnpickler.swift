// A restricted reader for the pickles inside torch.save archives. It rebuilds plain containers, numbers,
// strings and tensor *descriptions* (storage key, dtype, offset, shape, strides); it never calls anything.
// The only globals it resolves are the tensor rebuild functions, storage dtypes, OrderedDict and
// argparse.Namespace (a trainer's saved command-line arguments, kept as an inert placeholder); any other
// global stops the read with an error naming it. Every length is checked against the bytes left, the
// stack and memo are capped, and so is nesting: a container may not change once it sits inside another
// (Python's pickler always fills a container before nesting it), so the depth recorded at nesting is final
// and deeply nested input cannot overflow the stack when the values are released.

final class PickleList {
    var items: [PickleValue] = []
    var depth = 1
    var isNested = false
}

final class PickleDict {
    private(set) var entries: [(key: PickleValue, value: PickleValue)] = []
    private var indexByStringKey: [String: Int] = [:]
    var depth = 1
    var isNested = false

    func set(_ key: PickleValue, _ value: PickleValue) {
        if case .string(let name) = key {
            if let existing = indexByStringKey[name] {
                entries[existing].value = value
                return
            }
            indexByStringKey[name] = entries.count
        }
        entries.append((key, value))
    }

    subscript(name: String) -> PickleValue? {
        indexByStringKey[name].map { entries[$0].value }
    }
}

/// A storage record from a persistent id: `archive/data/<key>` holds `elementCount` elements of `dtype`.
struct TorchStorageRef: Sendable {
    var key: String
    var dtype: CheckpointDType
    var elementCount: Int
}

struct TorchTensorRef: Sendable {
    var storage: TorchStorageRef
    var storageOffset: Int
    var shape: [Int]
    var strides: [Int]
}

enum AllowedGlobal: Equatable {
    case rebuildTensorV2, rebuildTensor, rebuildParameter, rebuildParameterWithState, orderedDict, namespace
    case storageType(CheckpointDType)
}

indirect enum PickleValue {
    case none
    case bool(Bool)
    case int(Int)
    case float(Double)
    case string(String)
    /// Raw bytes are never needed by a state_dict; only their length is kept.
    case bytes(count: Int)
    case tuple([PickleValue], depth: Int)
    case list(PickleList)
    case dict(PickleDict)
    case global(AllowedGlobal)
    case storage(TorchStorageRef)
    case tensor(TorchTensorRef)
    /// An object of an allowed, behaviour-free class (argparse.Namespace); its contents are dropped.
    case inert(String)
}

struct RestrictedUnpickler {
    static let maximumStackDepth = 1 << 22
    static let maximumMemoEntries = 1 << 22
    static let maximumTensorRank = 8
    static let maximumNesting = 64

    private let bytes: UnsafeRawBufferPointer
    private var position = 0
    private var stack: [PickleValue] = []
    private var markPositions: [Int] = []
    private var memo: [Int: PickleValue] = [:]

    /// Globals allowed, by "module.name". Everything else is refused by name.
    private static let allowedGlobals: [String: AllowedGlobal] = {
        var table: [String: AllowedGlobal] = [
            "torch._utils._rebuild_tensor_v2": .rebuildTensorV2,
            "torch._utils._rebuild_tensor": .rebuildTensor,
            "torch._utils._rebuild_parameter": .rebuildParameter,
            "torch._utils._rebuild_parameter_with_state": .rebuildParameterWithState,
            "collections.OrderedDict": .orderedDict,
            "argparse.Namespace": .namespace,
        ]
        let storages: [(String, CheckpointDType)] = [
            ("FloatStorage", .f32), ("DoubleStorage", .f64), ("HalfStorage", .f16), ("BFloat16Storage", .bf16),
            ("LongStorage", .i64), ("IntStorage", .i32), ("ShortStorage", .i16), ("CharStorage", .i8),
            ("ByteStorage", .u8), ("BoolStorage", .bool),
        ]
        for (name, dtype) in storages { table["torch." + name] = .storageType(dtype) }
        return table
    }()

    private init(bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    /// Reads one pickle (up to STOP) and returns its value.
    static func load(_ bytes: UnsafeRawBufferPointer) throws -> PickleValue {
        var reader = RestrictedUnpickler(bytes: bytes)
        return try reader.run()
    }

    private func fail(_ message: String) -> ImportError {
        ImportError("pickle: \(message) (at byte \(position))")
    }

    private mutating func readByte() throws -> UInt8 {
        guard position < bytes.count else { throw fail("unexpected end of data; the pickle is truncated") }
        defer { position += 1 }
        return bytes[position]
    }

    private mutating func readLittleEndian(byteCount: Int) throws -> UInt64 {
        guard byteCount <= bytes.count - position else { throw fail("unexpected end of data; the pickle is truncated") }
        var value: UInt64 = 0
        for i in 0..<byteCount { value |= UInt64(bytes[position + i]) << (8 * UInt64(i)) }
        position += byteCount
        return value
    }

    private mutating func readLength(byteCount: Int) throws -> Int {
        let length = try readLittleEndian(byteCount: byteCount)
        guard length <= UInt64(bytes.count - position) else {
            throw fail("a \(length)-byte string runs past the end of the pickle")
        }
        return Int(length)
    }

    private mutating func readUTF8(count: Int) throws -> String {
        defer { position += count }
        let slice = UnsafeRawBufferPointer(rebasing: bytes[position..<position + count])
        guard let text = String(validating: slice, as: UTF8.self) else { throw fail("string is not valid UTF-8") }
        return text
    }

    private mutating func readLine() throws -> String {
        let limit = min(bytes.count, position + 256)
        var end = position
        while end < limit, bytes[end] != 0x0A { end += 1 }
        guard end < limit else { throw fail("GLOBAL name is unterminated or longer than 256 bytes") }
        let text = try readUTF8(count: end - position)
        position += 1
        return text
    }

    private mutating func push(_ value: PickleValue) throws {
        guard stack.count < Self.maximumStackDepth else { throw fail("stack exceeds \(Self.maximumStackDepth) entries") }
        stack.append(value)
    }

    private mutating func pop() throws -> PickleValue {
        guard let value = stack.popLast(), stack.count >= (markPositions.last ?? 0) else {
            throw fail("stack underflow")
        }
        return value
    }

    private mutating func popToMark() throws -> [PickleValue] {
        guard let mark = markPositions.popLast(), mark <= stack.count else { throw fail("no MARK on the stack") }
        let items = Array(stack[mark...])
        stack.removeSubrange(mark...)
        return items
    }

    private mutating func memoize(_ index: Int) throws {
        guard let top = stack.last else { throw fail("memo store with an empty stack") }
        guard memo[index] != nil || memo.count < Self.maximumMemoEntries else {
            throw fail("memo exceeds \(Self.maximumMemoEntries) entries")
        }
        memo[index] = top
    }

    private mutating func recall(_ index: Int) throws {
        guard let value = memo[index] else { throw fail("memo key \(index) was never stored") }
        try push(value)
    }

    private func resolveGlobal(module: String, name: String) throws -> PickleValue {
        let qualified = module + "." + name
        guard let allowed = Self.allowedGlobals[qualified] else {
            throw ImportError("pickle: refusing global '\(qualified)': only tensor data, OrderedDict and plain containers are read from checkpoints (the file may contain code; a state_dict saved with torch.save(model.state_dict(), path) loads)")
        }
        return .global(allowed)
    }

    private mutating func run() throws -> PickleValue {
        while true {
            let opcode = try readByte()
            switch opcode {
            case 0x80: // PROTO
                let version = try readByte()
                guard version <= 5 else { throw fail("unsupported pickle protocol \(version)") }
            case 0x95: // FRAME: a length hint only
                _ = try readLittleEndian(byteCount: 8)
            case 0x2E: // STOP
                guard stack.count == 1, markPositions.isEmpty else { throw fail("STOP with \(stack.count) stack entries") }
                return stack[0]
            case 0x28: // MARK
                guard markPositions.count < Self.maximumStackDepth else { throw fail("too many MARKs") }
                markPositions.append(stack.count)
            case 0x30: // POP
                _ = try pop()
            case 0x31: // POP_MARK
                _ = try popToMark()
            case 0x32: // DUP
                guard let top = stack.last else { throw fail("DUP on an empty stack") }
                try push(top)
            case 0x7D: try push(.dict(PickleDict()))          // EMPTY_DICT
            case 0x5D: try push(.list(PickleList()))          // EMPTY_LIST
            case 0x29: try push(.tuple([], depth: 1))         // EMPTY_TUPLE
            case 0x4E: try push(.none)                        // NONE
            case 0x88: try push(.bool(true))                  // NEWTRUE
            case 0x89: try push(.bool(false))                 // NEWFALSE
            case 0x58: // BINUNICODE
                let count = try readLength(byteCount: 4)
                try push(.string(try readUTF8(count: count)))
            case 0x8D: // BINUNICODE8
                let count = try readLength(byteCount: 8)
                try push(.string(try readUTF8(count: count)))
            case 0x8C: // SHORT_BINUNICODE
                let count = try readLength(byteCount: 1)
                try push(.string(try readUTF8(count: count)))
            case 0x42, 0x43, 0x8E: // BINBYTES, SHORT_BINBYTES, BINBYTES8
                let count = try readLength(byteCount: opcode == 0x43 ? 1 : (opcode == 0x42 ? 4 : 8))
                position += count
                try push(.bytes(count: count))
            case 0x4A: // BININT (signed 32-bit)
                try push(.int(Int(Int32(truncatingIfNeeded: try readLittleEndian(byteCount: 4)))))
            case 0x4B: try push(.int(Int(try readLittleEndian(byteCount: 1)))) // BININT1
            case 0x4D: try push(.int(Int(try readLittleEndian(byteCount: 2)))) // BININT2
            case 0x8A: // LONG1: two's complement, little-endian
                let count = try readLength(byteCount: 1)
                guard count <= 8 else { throw fail("integer of \(count) bytes is too large") }
                var value = try readLittleEndian(byteCount: count)
                if count > 0, count < 8, value & (1 << (8 * UInt64(count) - 1)) != 0 {
                    value |= ~0 << (8 * UInt64(count))
                }
                try push(.int(Int(Int64(bitPattern: value))))
            case 0x47: // BINFLOAT: big-endian double
                let raw = try readLittleEndian(byteCount: 8)
                try push(.float(Double(bitPattern: raw.byteSwapped)))
            case 0x85: try push(try makeTuple([try pop()])) // TUPLE1
            case 0x86: // TUPLE2
                let b = try pop(), a = try pop()
                try push(try makeTuple([a, b]))
            case 0x87: // TUPLE3
                let c = try pop(), b = try pop(), a = try pop()
                try push(try makeTuple([a, b, c]))
            case 0x74: try push(try makeTuple(try popToMark())) // TUPLE
            case 0x73: // SETITEM
                let value = try pop(), key = try pop()
                guard case .dict(let dict) = stack.last else { throw fail("SETITEM target is not a dict") }
                dict.depth = try nest([key, value], inside: dict, depth: dict.depth, targetIsNested: dict.isNested)
                dict.set(key, value)
            case 0x75: // SETITEMS
                let items = try popToMark()
                guard items.count % 2 == 0 else { throw fail("SETITEMS with an odd number of items") }
                guard case .dict(let dict) = stack.last else { throw fail("SETITEMS target is not a dict") }
                dict.depth = try nest(items, inside: dict, depth: dict.depth, targetIsNested: dict.isNested)
                for pair in stride(from: 0, to: items.count, by: 2) { dict.set(items[pair], items[pair + 1]) }
            case 0x61: // APPEND
                let value = try pop()
                guard case .list(let list) = stack.last else { throw fail("APPEND target is not a list") }
                list.depth = try nest([value], inside: list, depth: list.depth, targetIsNested: list.isNested)
                list.items.append(value)
            case 0x65: // APPENDS
                let items = try popToMark()
                guard case .list(let list) = stack.last else { throw fail("APPENDS target is not a list") }
                list.depth = try nest(items, inside: list, depth: list.depth, targetIsNested: list.isNested)
                list.items.append(contentsOf: items)
            case 0x71: try memoize(Int(try readLittleEndian(byteCount: 1)))  // BINPUT
            case 0x72: try memoize(Int(try readLittleEndian(byteCount: 4)))  // LONG_BINPUT
            case 0x94: try memoize(memo.count)                              // MEMOIZE
            case 0x68: try recall(Int(try readLittleEndian(byteCount: 1)))   // BINGET
            case 0x6A: try recall(Int(try readLittleEndian(byteCount: 4)))   // LONG_BINGET
            case 0x63: // GLOBAL
                let module = try readLine()
                let name = try readLine()
                try push(try resolveGlobal(module: module, name: name))
            case 0x93: // STACK_GLOBAL
                let name = try pop(), module = try pop()
                guard case .string(let nameText) = name, case .string(let moduleText) = module else {
                    throw fail("STACK_GLOBAL operands are not strings")
                }
                try push(try resolveGlobal(module: moduleText, name: nameText))
            case 0x51: // BINPERSID
                try push(try persistentLoad(try pop()))
            case 0x52: // REDUCE
                let arguments = try pop(), callable = try pop()
                guard case .tuple(let args, _) = arguments else { throw fail("REDUCE arguments are not a tuple") }
                try push(try call(callable, args))
            case 0x81: // NEWOBJ
                let arguments = try pop(), cls = try pop()
                guard case .tuple(let args, _) = arguments else { throw fail("NEWOBJ arguments are not a tuple") }
                switch cls {
                case .global(.namespace): try push(.inert("argparse.Namespace"))
                case .global(.orderedDict): try push(try call(cls, args))
                default: throw fail("NEWOBJ of a non-allowed class")
                }
            case 0x62: // BUILD: state of OrderedDict (_metadata), Namespace or Parameter is not needed
                _ = try pop()
                switch stack.last {
                case .dict?, .inert?, .tensor?: break
                default: throw fail("BUILD on an object that is not a dict, tensor or inert placeholder")
                }
            default:
                throw fail("unsupported pickle opcode 0x" + String(opcode, radix: 16, uppercase: true))
            }
        }
    }

    private func depth(of value: PickleValue) -> Int {
        switch value {
        case .tuple(_, let depth): return depth
        case .list(let list): return list.depth
        case .dict(let dict): return dict.depth
        default: return 0
        }
    }

    /// Records that `children` now sit inside a container (`target`, nil for a new tuple) of depth `depth`, and
    /// returns the container's depth, grown to cover them. A container put inside itself (DUP, then APPEND)
    /// would be a cycle, which no torch.save pickle holds: refused.
    private func nest(_ children: [PickleValue], inside target: AnyObject?, depth: Int, targetIsNested: Bool) throws -> Int {
        guard !targetIsNested else { throw fail("a list or dict is changed after being placed inside another container") }
        var depth = depth
        for child in children {
            switch child {
            case .list(let list):
                guard list !== target else { throw fail("a list is placed inside itself") }
                list.isNested = true
            case .dict(let dict):
                guard dict !== target else { throw fail("a dict is placed inside itself") }
                dict.isNested = true
            default: break
            }
            depth = max(depth, self.depth(of: child) + 1)
        }
        guard depth <= Self.maximumNesting else { throw fail("containers nested deeper than \(Self.maximumNesting) levels") }
        return depth
    }

    private func makeTuple(_ items: [PickleValue]) throws -> PickleValue {
        .tuple(items, depth: try nest(items, inside: nil, depth: 1, targetIsNested: false))
    }

    private func persistentLoad(_ pid: PickleValue) throws -> PickleValue {
        guard case .tuple(let record, _) = pid, record.count == 5, case .string("storage") = record[0] else {
            throw fail("persistent id is not a ('storage', type, key, location, count) record")
        }
        guard case .global(.storageType(let dtype)) = record[1] else { throw fail("persistent id names no storage type") }
        guard case .string(let key) = record[2] else { throw fail("storage key is not a string") }
        guard case .int(let count) = record[4], count >= 0 else { throw fail("storage '\(key)' has an invalid element count") }
        return .storage(TorchStorageRef(key: key, dtype: dtype, elementCount: count))
    }

    private func integers(_ value: PickleValue, _ what: String) throws -> [Int] {
        guard case .tuple(let items, _) = value, items.count <= Self.maximumTensorRank else {
            throw fail("tensor \(what) is not a tuple of at most \(Self.maximumTensorRank) integers")
        }
        return try items.map {
            guard case .int(let v) = $0, v >= 0 else { throw fail("tensor \(what) holds a negative or non-integer value") }
            return v
        }
    }

    private func call(_ callable: PickleValue, _ args: [PickleValue]) throws -> PickleValue {
        guard case .global(let function) = callable else { throw fail("REDUCE on a value that is not an allowed global") }
        switch function {
        case .rebuildTensorV2, .rebuildTensor:
            guard args.count >= 4, case .storage(let storage) = args[0], case .int(let offset) = args[1], offset >= 0 else {
                throw fail("tensor rebuild arguments are malformed")
            }
            let shape = try integers(args[2], "size")
            let strides = try integers(args[3], "stride")
            guard shape.count == strides.count else { throw fail("tensor size and stride have different ranks") }
            // The highest element index touched must lie inside the storage.
            var lastIndex = offset
            var isEmpty = false
            for (size, step) in zip(shape, strides) {
                if size == 0 { isEmpty = true; continue }
                let (span, o1) = (size - 1).multipliedReportingOverflow(by: step)
                let (sum, o2) = lastIndex.addingReportingOverflow(span)
                guard !o1, !o2 else { throw fail("tensor strides overflow") }
                lastIndex = sum
            }
            // Also bound the element count: a zero stride could otherwise expand one stored value without limit.
            var elementCount = 1
            for size in shape {
                let (product, overflow) = elementCount.multipliedReportingOverflow(by: size)
                guard !overflow, product <= storage.elementCount || isEmpty else {
                    throw fail("tensor of size \(shape) has more elements than its \(storage.elementCount)-element storage '\(storage.key)'")
                }
                elementCount = product
            }
            guard isEmpty || lastIndex < storage.elementCount else {
                throw fail("tensor view (offset \(offset), size \(shape), stride \(strides)) reaches past its \(storage.elementCount)-element storage '\(storage.key)'")
            }
            return .tensor(TorchTensorRef(storage: storage, storageOffset: offset, shape: shape, strides: strides))
        case .rebuildParameter, .rebuildParameterWithState:
            guard let first = args.first, case .tensor = first else { throw fail("parameter rebuild without a tensor") }
            return first
        case .orderedDict:
            let dict = PickleDict()
            if let first = args.first {
                guard case .list(let pairs) = first else { throw fail("OrderedDict argument is not a list of pairs") }
                for pair in pairs.items {
                    guard case .tuple(let kv, _) = pair, kv.count == 2 else { throw fail("OrderedDict item is not a pair") }
                    dict.depth = try nest(kv, inside: dict, depth: dict.depth, targetIsNested: false)
                    dict.set(kv[0], kv[1])
                }
            }
            return .dict(dict)
        case .namespace:
            return .inert("argparse.Namespace")
        case .storageType:
            throw fail("storage types are only accepted inside persistent ids")
        }
    }
}

// The restricted unpickler on hand-written opcode streams: limits that whole-checkpoint tests cannot reach.
import XCTest
@testable import QARepOffline

final class ImportUnpicklerTests: XCTestCase {
    private func load(_ bytes: [UInt8]) throws -> PickleValue {
        try bytes.withUnsafeBytes { try RestrictedUnpickler.load($0) }
    }

    private func assertRejected(_ bytes: [UInt8], mentioning fragment: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try load(bytes), file: file, line: line) { error in
            XCTAssertTrue("\(error)".contains(fragment), "'\(error)' does not mention '\(fragment)'", file: file, line: line)
        }
    }

    func testPlainValuesRoundTrip() throws {
        // {'a': [1, -2, 300000, 2**40], 'b': (1.5, None, True)} in protocol 2 opcodes
        var p: [UInt8] = [0x80, 0x02, 0x7D, 0x28, 0x58, 1, 0, 0, 0, 0x61, 0x5D, 0x28, 0x4B, 1, 0x4A, 0xFE, 0xFF, 0xFF, 0xFF]
        p += [0x4A, 0xE0, 0x93, 0x04, 0x00, 0x8A, 6, 0, 0, 0, 0, 0, 1, 0x65]
        p += [0x58, 1, 0, 0, 0, 0x62, 0x47, 0x3F, 0xF8, 0, 0, 0, 0, 0, 0, 0x4E, 0x88, 0x87, 0x75, 0x2E]
        guard case .dict(let dict) = try load(p) else { return XCTFail("not a dict") }
        guard case .list(let list)? = dict["a"] else { return XCTFail("no list") }
        let ints = list.items.compactMap { if case .int(let v) = $0 { return v } else { return nil } }
        XCTAssertEqual(ints, [1, -2, 300_000, 1 << 40])
        guard case .tuple(let items, _)? = dict["b"], case .float(let f) = items[0], case .none = items[1],
              case .bool(true) = items[2] else { return XCTFail("tuple") }
        XCTAssertEqual(f, 1.5)
    }

    func testDeepNestingIsRefused() {
        // None, then TUPLE1 a thousand times.
        assertRejected([0x80, 0x02, 0x4E] + [UInt8](repeating: 0x85, count: 1000) + [0x2E], mentioning: "nested deeper")
    }

    func testChangingANestedContainerIsRefused() {
        // l = []; t = (l,); l.append(None)  -- the trick that would hide nesting depth
        assertRejected([0x80, 0x02, 0x5D, 0x71, 0, 0x85, 0x68, 0, 0x4E, 0x61, 0x2E], mentioning: "after being placed")
    }

    func testContainerInsideItselfIsRefused() {
        // l = []; l.append(l) (DUP, APPEND), then d = {}; d[None] = d (DUP, NONE, SWAP by memo, SETITEM): each
        // stopped the process with an exclusivity violation before (found by Tests/Fuzz, target pth).
        assertRejected([0x80, 0x02, 0x5D, 0x32, 0x61, 0x2E], mentioning: "placed inside itself")
        assertRejected([0x80, 0x02, 0x5D, 0x28, 0x32, 0x4B, 1, 0x65, 0x2E], mentioning: "placed inside itself")
        assertRejected([0x80, 0x02, 0x7D, 0x71, 0, 0x4E, 0x68, 0, 0x73, 0x2E], mentioning: "placed inside itself")
        // The fuzzer's own input (a list appended to itself inside nested MARKs).
        let found = Array("](2K(e()e(e()e(K(e()ea\u{2}\u{2}a\u{2}\u{2}(K(e()ea\u{2}\u{2}a\u{2}\u{2}".utf8)
        XCTAssertThrowsError(try load(found))
    }

    func testZeroStrideExpansionIsRefused() {
        // _rebuild_tensor_v2(storage(1 float), 0, (100000000,), (0,), False, OrderedDict())
        var p: [UInt8] = [0x80, 0x02, 0x63] + Array("torch._utils\n_rebuild_tensor_v2\n".utf8) + [0x28]
        p += [0x28, 0x58, 7, 0, 0, 0] + Array("storage".utf8) + [0x63] + Array("torch\nFloatStorage\n".utf8)
        p += [0x58, 1, 0, 0, 0, 0x30, 0x58, 3, 0, 0, 0] + Array("cpu".utf8) + [0x4B, 1, 0x74, 0x51]
        p += [0x4B, 0, 0x4A, 0x00, 0xE1, 0xF5, 0x05, 0x85, 0x4B, 0, 0x85, 0x89, 0x4E, 0x74, 0x52, 0x2E]
        assertRejected(p, mentioning: "more elements than")
    }

    func testTruncationAndBadOpcodes() {
        assertRejected([0x80, 0x02, 0x58, 0xFF, 0xFF, 0, 0, 0x41], mentioning: "runs past the end")
        assertRejected([0x80, 0x02, 0x4E], mentioning: "truncated")
        assertRejected([0x80, 0x02, 0x69, 0x2E], mentioning: "opcode 0x69")
        assertRejected([0x80, 0x02, 0x68, 5, 0x2E], mentioning: "memo key 5")
        assertRejected([0x80, 0x02, 0x30, 0x2E], mentioning: "underflow")
        assertRejected([0x80, 0x02, 0x63] + Array("subprocess\nPopen\n".utf8) + [0x2E], mentioning: "subprocess.Popen")
    }
}

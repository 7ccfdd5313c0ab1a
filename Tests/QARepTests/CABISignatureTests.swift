// The C ABI is written twice: declared in include/qarep.h and implemented by @_cdecl functions in
// Sources/QARep/CAPI.swift. These tests fail when the two disagree: a function missing on either side
// (read from the sources), or a Swift signature whose type differs from the header's as Swift imports it.
import CQARepAPI
import Foundation
import XCTest
@testable import QARep

/// The function's name, and whether the header's declaration and the Swift implementation have exactly
/// the same type (compared at run time: a generic constraint would let both widen to Any).
private func sameSignature(_ name: String, _ declared: Any, _ implemented: Any) -> (name: String, same: Bool) {
    (name, type(of: declared) == type(of: implemented))
}

final class CABISignatureTests: XCTestCase {
    private static let typeChecked: [(name: String, same: Bool)] = [
        sameSignature("qarep_version", qarep_version, _qarepVersion),
        sameSignature("qarep_version_string", qarep_version_string, _qarepVersionString),
        sameSignature("qarep_max_model_format_version", qarep_max_model_format_version, _qarepMaxModelFormatVersion),
        sameSignature("qarep_status_string", qarep_status_string, _qarepStatusString),
        sameSignature("qarep_last_error_message", qarep_last_error_message, _qarepLastErrorMessage),
        sameSignature("qarep_kernel_count", qarep_kernel_count, _qarepKernelCount),
        sameSignature("qarep_kernel_supported", qarep_kernel_supported, _qarepKernelSupported),
        sameSignature("qarep_kernel_name", qarep_kernel_name, _qarepKernelName),
        sameSignature("qarep_kernel_from_name", qarep_kernel_from_name, _qarepKernelFromName),
        sameSignature("qarep_model_load_file", qarep_model_load_file, _qarepModelLoadFile),
        sameSignature("qarep_model_load_memory", qarep_model_load_memory, _qarepModelLoadMemory),
        sameSignature("qarep_model_load_file_with_flags", qarep_model_load_file_with_flags, _qarepModelLoadFileWithFlags),
        sameSignature("qarep_model_load_memory_with_flags", qarep_model_load_memory_with_flags, _qarepModelLoadMemoryWithFlags),
        sameSignature("qarep_model_release", qarep_model_release, _qarepModelRelease),
        sameSignature("qarep_model_packed_bytes", qarep_model_packed_bytes, _qarepModelPackedBytes),
        sameSignature("qarep_model_get_info", qarep_model_get_info, _qarepModelGetInfo),
        sameSignature("qarep_model_label", qarep_model_label, _qarepModelLabel),
        sameSignature("qarep_model_preprocess", qarep_model_preprocess, _qarepModelPreprocess),
        sameSignature("qarep_session_options_default", qarep_session_options_default, _qarepSessionOptionsDefault),
        sameSignature("qarep_session_create", qarep_session_create, _qarepSessionCreate),
        sameSignature("qarep_session_destroy", qarep_session_destroy, _qarepSessionDestroy),
        sameSignature("qarep_session_kernel", qarep_session_kernel, _qarepSessionKernel),
        sameSignature("qarep_session_workspace_bytes", qarep_session_workspace_bytes, _qarepSessionWorkspaceBytes),
        sameSignature("qarep_session_create_limited", qarep_session_create_limited, _qarepSessionCreateLimited),
        sameSignature("qarep_session_run_u8", qarep_session_run_u8, _qarepSessionRunU8),
        sameSignature("qarep_session_run_f32", qarep_session_run_f32, _qarepSessionRunF32),
        sameSignature("qarep_session_get_logits", qarep_session_get_logits, _qarepSessionGetLogits),
        sameSignature("qarep_session_top_k", qarep_session_top_k, _qarepSessionTopK),
    ]

    private static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    private func matches(_ pattern: String, in text: String) throws -> Set<String> {
        let regex = try NSRegularExpression(pattern: pattern)
        let range = NSRange(text.startIndex..., in: text)
        return Set(regex.matches(in: text, range: range).compactMap { Range($0.range(at: 1), in: text).map { String(text[$0]) } })
    }

    /// Every function qarep.h declares is implemented under that name, and nothing else is exported.
    func testEveryHeaderFunctionHasACdeclImplementation() throws {
        let header = try String(contentsOf: Self.root.appendingPathComponent("include/qarep.h"), encoding: .utf8)
        let declared = try matches(#"QAREP_API\s+[^;(]*?\b(qarep_[a-z0-9_]+)\s*\("#, in: header)
        var implemented = Set<String>()
        let sources = Self.root.appendingPathComponent("Sources/QARep")
        let files = FileManager.default.enumerator(at: sources, includingPropertiesForKeys: nil)?.compactMap { $0 as? URL } ?? []
        for file in files where file.pathExtension == "swift" {
            implemented.formUnion(try matches(#"@_cdecl\("(qarep_[a-z0-9_]+)"\)"#, in: String(contentsOf: file, encoding: .utf8)))
        }
        XCTAssertGreaterThan(declared.count, 20, "the header's functions were not found")
        XCTAssertEqual(declared.subtracting(implemented), [], "declared in qarep.h but not implemented")
        XCTAssertEqual(implemented.subtracting(declared), [], "implemented with @_cdecl but not declared in qarep.h")
        XCTAssertEqual(Set(Self.typeChecked.map(\.name)), declared, "every function's signature is compared above")
    }

    func testCdeclSignaturesEqualTheHeaders() {
        for (name, same) in Self.typeChecked { XCTAssertTrue(same, "\(name): the @_cdecl signature differs from qarep.h") }
    }

    /// The kernel values of the header are the table's: value i + 1 is the kernels' path i, named as the
    /// constant says.
    func testHeaderKernelConstantsFollowTheTableOfPaths() throws {
        let header = try String(contentsOf: Self.root.appendingPathComponent("include/qarep.h"), encoding: .utf8)
        let regex = try NSRegularExpression(pattern: #"QAREP_KERNEL_([A-Z0-9_]+)\s*=\s*([0-9]+)"#)
        let constants = regex.matches(in: header, range: NSRange(header.startIndex..., in: header)).compactMap { match in
            Range(match.range(at: 1), in: header).flatMap { name in
                Range(match.range(at: 2), in: header).map { (String(header[name]).lowercased(), Int32(header[$0]) ?? -1) }
            }
        }
        XCTAssertGreaterThanOrEqual(constants.count, 4)
        for (name, value) in constants {
            XCTAssertEqual(qarep_kernel_name(qarep_kernel(rawValue: UInt32(value))).map { String(cString: $0) }, name,
                           "QAREP_KERNEL_\(name.uppercased()) = \(value)")
        }
    }
}

// Which CPU path a session runs. The paths are the kernels' table (Sources/CQARepKernels/include/
// qk_paths.h): names, order and support all come from there, so a new path needs no change here.
import CQARepKernels

/// A kernel path, by name. `auto` picks the environment's QAREP_KERNEL if set, else the fastest path
/// this CPU supports; every path gives byte-identical results.
///
/// A struct rather than an enum, so that paths added later do not break code that switches over it.
public struct Kernel: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: String

    public init(rawValue: String) { self.rawValue = rawValue }

    /// A path of this library's table, or `auto`; nil for any other name.
    public init?(name: String) {
        guard name == Kernel.auto.rawValue || Kernel.path(named: name) != nil else { return nil }
        self.init(rawValue: name)
    }

    /// QAREP_KERNEL if set, else the fastest path this CPU supports.
    public static let auto = Kernel(rawValue: "auto")
    /// Plain C, the reference every other path is tested against; runs everywhere.
    public static let scalar = Kernel(rawValue: "scalar")
    /// x86-64 AVX2, exact int16 multiply-adds.
    public static let avx2 = Kernel(rawValue: "avx2")
    /// x86-64 AVX-512 with VNNI (`vpdpbusd` on zmm).
    public static let avx512vnni = Kernel(rawValue: "avx512vnni")
    /// ARMv8 NEON, exact int16 multiply-adds.
    public static let neon = Kernel(rawValue: "neon")
    /// ARMv8.2 dot product (`sdot`).
    public static let neondot = Kernel(rawValue: "neondot")
    /// ARMv8.6 int8 matrix multiply (`smmla`).
    public static let i8mm = Kernel(rawValue: "i8mm")
    /// x86-64 AVX-512BW without VNNI, exact int16 multiply-adds on zmm.
    public static let avx512bw = Kernel(rawValue: "avx512bw")
    /// x86-64 AVX-VNNI (VEX-encoded `vpdpbusd` on ymm), for CPUs without AVX-512 (Alder Lake and later).
    public static let avxvnni = Kernel(rawValue: "avxvnni")

    /// Every path of this library, in the table's order (not `auto`), whether or not this CPU runs it.
    public static var all: [Kernel] {
        (0..<Int(QK_PATH_COUNT.rawValue)).compactMap { index in
            qk_path_name(qk_path(rawValue: UInt32(index))).map { Kernel(rawValue: String(cString: $0)) }
        }
    }

    /// The path's name, as QAREP_KERNEL and `--kernel` take it.
    public var name: String { rawValue }
    /// The name.
    public var description: String { rawValue }

    /// Whether this CPU can run the path (`auto` always can; an unknown name cannot).
    public var isSupported: Bool {
        if self == .auto { return true }
        guard let path else { return false }
        return qk_path_supported(path) != 0
    }

    /// The instruction mix whose throughput `bench --peak` measures for this path.
    public var peakInstructionMix: String? {
        guard let path, let mix = qk_path_peak_mix(path) else { return nil }
        return String(cString: mix)
    }

    /// The concrete path a session with this request runs.
    public func resolved() throws(QARepError) -> Kernel {
        var kernel = self
        if kernel == .auto, let requested = Platform.environment("QAREP_KERNEL"), !requested.isEmpty {
            guard let named = Kernel(name: requested), named != .auto else {
                let known = Kernel.all.map { $0.name }.joined(separator: ", ")
                throw QARepError(.invalidArgument, "QAREP_KERNEL=\"\(requested.prefix(40))\" is not one of \(known)")
            }
            kernel = named
        }
        if kernel == .auto { return Kernel(path: qk_best_path()) }
        guard let path = kernel.path else {
            throw QARepError(.invalidArgument, "\"\(kernel.name.prefix(40))\" is not a kernel path of this library")
        }
        guard qk_path_supported(path) != 0 else {
            throw QARepError(.unsupportedKernel, "kernel path \(kernel.name) cannot run on this CPU")
        }
        return kernel
    }

    /// The kernels' number for this path; nil for `auto` and unknown names.
    var path: qk_path? { Kernel.path(named: rawValue) }

    init(path: qk_path) {
        self.init(rawValue: qk_path_name(path).map { String(cString: $0) } ?? Kernel.scalar.rawValue)
    }

    private static func path(named name: String) -> qk_path? {
        var path = QK_PATH_COUNT
        return qk_path_from_name(name, &path) == QK_OK ? path : nil
    }
}

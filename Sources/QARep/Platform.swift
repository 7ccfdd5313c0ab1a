// The few POSIX services the runtime needs, without Foundation.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// 64-byte aligned, uninitialized memory that the kernels read and write; freed with its owner.
final class AlignedBuffer: @unchecked Sendable {
    // @unchecked: the pointer is written only by the owner that holds the buffer exclusively (a session), or
    // only before publication (packed weights, immutable once built).
    let pointer: UnsafeMutableRawPointer
    let count: Int

    init(count: Int) throws(QARepError) {
        var raw: UnsafeMutableRawPointer? = nil
        guard count >= 0, posix_memalign(&raw, 64, max(count, 64)) == 0, let raw else {
            throw QARepError(.outOfMemory, "could not allocate \(count) bytes")
        }
        pointer = raw
        self.count = count
    }

    deinit { free(pointer) }

    var bytes: UnsafeMutablePointer<UInt8> { pointer.assumingMemoryBound(to: UInt8.self) }
}

enum Platform {
    static func onlineCPUs() -> Int {
        let n = sysconf(Int32(_SC_NPROCESSORS_ONLN))
        return n > 0 ? n : 1
    }

    static func physicalMemoryBytes() -> Int? {
        let pages = sysconf(Int32(_SC_PHYS_PAGES)), pageSize = sysconf(Int32(_SC_PAGESIZE))
        guard pages > 0, pageSize > 0 else { return nil }
        let (bytes, overflow) = pages.multipliedReportingOverflow(by: pageSize)
        return overflow ? Int.max : bytes
    }

    static func environment(_ name: String) -> String? {
        guard let value = getenv(name) else { return nil }
        return String(cString: value)
    }

    static func monotonicSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    static func errnoDescription() -> String {
        guard let text = strerror(errno) else { return "errno \(errno)" }
        return String(cString: text)
    }
}

/// Reads a whole file. The size comes from fstat and is re-checked against what read returns, so a file
/// that changes while being read gives an error rather than a short model.
public func readFileBytes(path: String) throws(QARepError) -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw QARepError(.io, "cannot open \"\(path)\": \(Platform.errnoDescription())") }
    defer { close(fd) }
    var info = stat()
    guard fstat(fd, &info) == 0 else { throw QARepError(.io, "cannot stat \"\(path)\": \(Platform.errnoDescription())") }
    guard (info.st_mode & S_IFMT) == S_IFREG else { throw QARepError(.io, "\"\(path)\" is not a regular file") }
    let size = Int(info.st_size)
    if let memory = Platform.physicalMemoryBytes(), size > memory {
        throw QARepError(.outOfMemory, "\"\(path)\" is \(size) bytes, more than this machine's memory")
    }
    var bytes = [UInt8](repeating: 0, count: size)
    var done = 0
    var failure: String? = nil
    bytes.withUnsafeMutableBytes { buffer in
        guard let base = buffer.baseAddress else { return }
        while done < size {
            let n = read(fd, base + done, size - done)
            if n < 0 {
                if errno == EINTR { continue }
                failure = Platform.errnoDescription()
                return
            }
            if n == 0 { break }
            done += n
        }
    }
    if let failure { throw QARepError(.io, "cannot read \"\(path)\": \(failure)") }
    guard done == size else { throw QARepError(.io, "\"\(path)\" shrank while being read (\(done) of \(size) bytes)") }
    return bytes
}

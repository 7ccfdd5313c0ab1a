// The few POSIX services the runtime needs, without Foundation.
#if hasFeature(Embedded)
import CQARepLibc  // packaging/embedded: Embedded Swift has no Glibc overlay, so libc comes through a module map
#elseif canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

#if hasFeature(Embedded)
// The Glibc overlay's Swift forms of errno (a C macro) and of the variadic open and fcntl, which Swift cannot
// import; the shim header (packaging/embedded/qarep_libc.h) wraps the C ones.
var errno: Int32 { qarep_libc_errno() }
func open(_ path: UnsafePointer<CChar>, _ flags: Int32) -> Int32 { qarep_libc_open(path, flags) }
func fcntl(_ descriptor: Int32, _ command: Int32) -> Int32 { qarep_libc_fcntl(descriptor, command, 0) }
func fcntl(_ descriptor: Int32, _ command: Int32, _ value: Int32) -> Int32 { qarep_libc_fcntl(descriptor, command, value) }
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

    /// A buffer whose bytes are all zero.
    convenience init(zeroedCount count: Int) throws(QARepError) {
        try self.init(count: count)
        pointer.initializeMemory(as: UInt8.self, repeating: 0, count: max(count, 64))
    }

    deinit { free(pointer) }

    var bytes: UnsafeMutablePointer<UInt8> { pointer.assumingMemoryBound(to: UInt8.self) }
}

/// A value behind a pthread mutex. Embedded Swift has no Synchronization.Mutex on Linux, and one lock type in
/// both builds keeps the code the tests run the code the C library ships.
final class Locked<Value>: @unchecked Sendable {
    // @unchecked: `value` is only reached inside withLock, under the mutex.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    init(_ value: Value) {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())  // all zero bytes: glibc's PTHREAD_MUTEX_INITIALIZER
        pthread_mutex_init(mutex, nil)
        self.value = value
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    func withLock<Result>(_ body: (inout Value) throws(QARepError) -> Result) throws(QARepError) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
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

/// An open regular file read at offsets with pread, so a model loads tensor by tensor without the whole
/// file in memory. The size comes from fstat; a read that ends early (the file shrank) is an error, never a
/// short model.
final class FileByteSource: ByteSource {
    let path: String
    let count: Int
    private let descriptor: Int32

    init(path: String) throws(QARepError) {
        // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever, before fstat could
        // refuse it. Cleared below once the file is known to be regular (where only odd file systems heed it).
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw QARepError(.io, "cannot open \"\(path)\": \(Platform.errnoDescription())") }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let reason = Platform.errnoDescription()
            close(fd)
            throw QARepError(.io, "cannot stat \"\(path)\": \(reason)")
        }
        guard (info.st_mode & mode_t(S_IFMT)) == mode_t(S_IFREG) else {
            close(fd)
            throw QARepError(.io, "\"\(path)\" is not a regular file")
        }
        let flags = fcntl(fd, F_GETFL)
        guard flags >= 0, fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) == 0 else {
            let reason = Platform.errnoDescription()
            close(fd)
            throw QARepError(.io, "cannot set up reading \"\(path)\": \(reason)")
        }
        let size = Int(info.st_size)
        if let memory = Platform.physicalMemoryBytes(), size > memory {
            close(fd)
            throw QARepError(.outOfMemory, "\"\(path)\" is \(size) bytes, more than this machine's memory")
        }
        self.path = path
        self.count = size
        self.descriptor = fd
    }

    deinit { close(descriptor) }

    func read(at offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(QARepError) {
        guard buffer.count > 0, let base = buffer.baseAddress else { return }
        var done = 0
        while done < buffer.count {
            let n = pread(descriptor, base + done, buffer.count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw QARepError(.io, "cannot read \"\(path)\": \(Platform.errnoDescription())")
            }
            if n == 0 {
                throw QARepError(.io, "\"\(path)\" shrank while being read (\(offset + done) of \(count) bytes)")
            }
            done += n
        }
    }
}

/// Reads a whole file (through the same checks as FileByteSource).
package func readFileBytes(path: String) throws(QARepError) -> [UInt8] {
    let file = try FileByteSource(path: path)
    return try file.bytes(at: 0, count: file.count)
}

/// Reads a whole file of at most maxBytes bytes; a larger one is refused before anything is read.
package func readFileBytes(path: String, maxBytes: Int) throws(QARepError) -> [UInt8] {
    let file = try FileByteSource(path: path)
    guard file.count <= maxBytes else {
        throw QARepError(.outOfMemory, "\"\(path)\" is \(file.count) bytes, above the limit of \(maxBytes)")
    }
    return try file.bytes(at: 0, count: file.count)
}

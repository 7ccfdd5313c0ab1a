// --busy-core: a busy loop pinned to one CPU while the model runs, so that anyone can reproduce "another
// process holds one of the cores" (docs/performance.md, "Under load"). A thread of this process, not a second
// process: the scheduler treats both alike (each is one task on that CPU's run queue), and it ends with bench.
import Foundation
import Synchronization

final class BusyCore: @unchecked Sendable {
    let cpu: Int
    private let stopping = Atomic<Bool>(false)
    private let pinned = DispatchSemaphore(value: 0)
    private var pinError: Int32 = 0

    /// Starts the loop on `cpu` and returns once it is pinned there.
    init(cpu: Int) throws {
        self.cpu = cpu
        guard cpu >= 0, cpu < 1024 else { throw BenchFailure(description: "--busy-core \(cpu): no such CPU") }
        let thread = Thread { [self] in
            var set = cpu_set_t()
            withUnsafeMutableBytes(of: &set) { $0.bindMemory(to: UInt.self)[cpu / UInt.bitWidth] |= 1 << (cpu % UInt.bitWidth) }
            // pid 0: the calling thread only. Through dlsym: Glibc declares sched_setaffinity only under _GNU_SOURCE,
            // which Swift's Glibc module does not define.
            typealias SetAffinity = @convention(c) (pid_t, Int, UnsafeRawPointer) -> Int32
            guard let symbol = dlsym(nil, "sched_setaffinity") else {
                pinError = ENOSYS
                pinned.signal()
                return
            }
            let setAffinity = unsafeBitCast(symbol, to: SetAffinity.self)
            pinError = withUnsafeBytes(of: &set) { setAffinity(0, MemoryLayout<cpu_set_t>.size, $0.baseAddress!) } == 0 ? 0 : errno
            pinned.signal()
            guard pinError == 0 else { return }
            var spins: UInt64 = 0
            while !stopping.load(ordering: .relaxed) { spins &+= 1 }
        }
        thread.start()
        pinned.wait()
        guard pinError == 0 else {
            throw BenchFailure(description: "--busy-core \(cpu): cannot pin a thread there (\(String(cString: strerror(pinError))))")
        }
    }

    func stop() { stopping.store(true, ordering: .relaxed) }
}

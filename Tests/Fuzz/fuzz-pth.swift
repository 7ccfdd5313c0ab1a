// libFuzzer target: the .pth reader (Sources/QARepOffline/Import): the zip archive reader, the restricted
// unpickler and the tensor decoding behind them, as `qarep import` runs them on a torch.save file. An input
// that does not start like a zip goes to the unpickler alone, so mutations reach its opcodes directly.
@testable import QARepOffline

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPthTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if bytes.starts(with: [0x50, 0x4B]) {
        _ = try? readTorchZipStateDict(bytes)
    } else {
        _ = bytes.withUnsafeBytes { try? RestrictedUnpickler.load($0) }
    }
    return 0
}

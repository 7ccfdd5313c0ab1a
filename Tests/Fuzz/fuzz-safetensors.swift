// libFuzzer target: the safetensors checkpoint reader as `qarep import` runs it (Sources/QARep/Safetensors.swift's
// header parser under Sources/QARepOffline/Import's tensor decoding: every dtype, shape and offset from the file).
@testable import QARepOffline

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSafetensorsTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if let stateDict = try? readSafetensorsStateDict(bytes) {
        // Every decoded tensor must hold as many values as its shape says.
        for (name, tensor) in stateDict.tensors {
            let count: Int
            switch tensor.values {
            case .float(let v): count = v.count
            case .double(let v): count = v.count
            case .integer(let n): count = n
            }
            guard count == tensor.elementCount else {
                fatalError("tensor \(name) of shape \(tensor.shape) decoded to \(count) values")
            }
        }
    }
    return 0
}

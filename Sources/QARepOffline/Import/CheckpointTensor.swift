// A tensor as read from a checkpoint: shape plus values decoded to Float or Double. Half and bfloat16
// widen to Float exactly; float64 stays Double so that fusion in double precision loses nothing.

import QARep

/// Checkpoint element types share the safetensors names; torch storages map onto the same set.
typealias CheckpointDType = SafetensorsDType

enum CheckpointTensorValues: Sendable {
    case float(ContiguousArray<Float>)
    case double(ContiguousArray<Double>)
    /// Integer tensors (num_batches_tracked and the like) carry no weights; only their count is kept.
    case integer(count: Int)
}

struct CheckpointTensor: Sendable {
    var dtype: CheckpointDType
    var shape: [Int]
    var values: CheckpointTensorValues

    var elementCount: Int { shape.reduce(1, *) }

    /// Values as Double, or nil for integer tensors.
    func doubles() -> [Double]? {
        switch values {
        case .float(let v): return v.map { Double($0) }
        case .double(let v): return Array(v)
        case .integer: return nil
        }
    }

    var shapeDescription: String { "[" + shape.map(String.init).joined(separator: ", ") + "]" }
}

/// Decodes little-endian elements at `indices` (element indices into `bytes`, already bounds-checked by the
/// caller) into a tensor of the given shape.
func decodeTensor(dtype: CheckpointDType, shape: [Int], bytes: UnsafeRawBufferPointer,
                  elementIndices: [Int]? = nil) -> CheckpointTensor {
    let count = elementIndices?.count ?? shape.reduce(1, *)
    @inline(__always) func index(_ i: Int) -> Int { elementIndices?[i] ?? i }
    switch dtype {
    case .f32:
        var out = ContiguousArray<Float>(repeating: 0, count: count)
        for i in 0..<count {
            out[i] = Float(bitPattern: loadLittleEndian(UInt32.self, bytes, at: index(i) * 4))
        }
        return CheckpointTensor(dtype: dtype, shape: shape, values: .float(out))
    case .f16:
        var out = ContiguousArray<Float>(repeating: 0, count: count)
        for i in 0..<count {
            out[i] = floatFromHalfBits(loadLittleEndian(UInt16.self, bytes, at: index(i) * 2))
        }
        return CheckpointTensor(dtype: dtype, shape: shape, values: .float(out))
    case .bf16:
        var out = ContiguousArray<Float>(repeating: 0, count: count)
        for i in 0..<count {
            out[i] = Float(bitPattern: UInt32(loadLittleEndian(UInt16.self, bytes, at: index(i) * 2)) << 16)
        }
        return CheckpointTensor(dtype: dtype, shape: shape, values: .float(out))
    case .f64:
        var out = ContiguousArray<Double>(repeating: 0, count: count)
        for i in 0..<count {
            out[i] = Double(bitPattern: loadLittleEndian(UInt64.self, bytes, at: index(i) * 8))
        }
        return CheckpointTensor(dtype: dtype, shape: shape, values: .double(out))
    default:
        return CheckpointTensor(dtype: dtype, shape: shape, values: .integer(count: count))
    }
}

@inline(__always)
func loadLittleEndian<T: FixedWidthInteger>(_ type: T.Type, _ bytes: UnsafeRawBufferPointer, at offset: Int) -> T {
    T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
}

/// IEEE 754 binary16 -> binary32, exact for every input (subnormals, infinities and NaNs included).
func floatFromHalfBits(_ bits: UInt16) -> Float {
    let sign = UInt32(bits & 0x8000) << 16
    let exponent = Int((bits >> 10) & 0x1F)
    let mantissa = UInt32(bits & 0x3FF)
    if exponent == 0x1F {
        return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
    }
    if exponent == 0 {
        // Subnormal (or zero): mantissa * 2^-24 is exact in binary32.
        let magnitude = Float(mantissa) * Float(sign: .plus, exponent: -24, significand: 1)
        return sign == 0 ? magnitude : -magnitude
    }
    return Float(bitPattern: sign | UInt32(exponent - 15 + 127) << 23 | (mantissa << 13))
}

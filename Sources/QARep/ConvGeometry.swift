// Geometry shared by the runtime and the offline module, stated once.
import CQARepKernels

/// Output height or width of a 3x3, padding-1 conv (docs/model-format.md): the kernels' own qk_conv_out_dim,
/// so the Swift side cannot disagree with the C side. 0 for an input below 1, a stride other than 1 or 2, or
/// a value beyond int32.
package func convOutputSize(_ input: Int, stride: Int) -> Int {
    guard let input = Int32(exactly: input), let stride = Int32(exactly: stride) else { return 0 }
    return Int(qk_conv_out_dim(input, stride))
}

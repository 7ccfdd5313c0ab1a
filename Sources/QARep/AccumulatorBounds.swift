// The int32 overflow bound on biases (docs/model-format.md, "Derived at load time"), stated once for the loader
// and for the offline module, which clamps the biases it writes so that the loader accepts them.

/// Largest |B| a conv layer may have: B plus the largest possible accumulation of uint8 inputs and int8
/// weights over the 3x3 taps and a group's input channels must stay below 2^31.
package func convBiasLimit(inChannelsPerGroup: Int) -> Int64 {
    Int64(Int32.max) - Int64(9 * inChannelsPerGroup * 255 * 127)
}

/// Largest |fc.bias| for an FC layer of `inChannels` uint8 inputs.
package func fcBiasLimit(inChannels: Int) -> Int64 {
    Int64(Int32.max) - Int64(inChannels * 255 * 127)
}

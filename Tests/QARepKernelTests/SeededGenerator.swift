// Deterministic random numbers so a failing case reproduces from the seed printed with it.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    // SplitMix64: tiny, fast, and good enough to spread test data.
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func bytes(_ count: Int) -> [UInt8] {
        (0..<count).map { _ in UInt8.random(in: .min ... .max, using: &self) }
    }

    mutating func weights(_ count: Int, magnitude: Int8 = 127) -> [Int8] {
        (0..<count).map { _ in Int8.random(in: -magnitude ... magnitude, using: &self) }
    }
}

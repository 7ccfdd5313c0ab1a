// Deterministic random numbers so a failing case reproduces from the seed printed with it: the project's
// SplitMix64 (RepVGGArchitectures), with the draws these tests need.
@_exported import RepVGGArchitectures

extension SeededGenerator {
    mutating func bytes(_ count: Int) -> [UInt8] {
        (0..<count).map { _ in UInt8.random(in: .min ... .max, using: &self) }
    }

    mutating func weights(_ count: Int, magnitude: Int8 = 127) -> [Int8] {
        (0..<count).map { _ in Int8.random(in: -magnitude ... magnitude, using: &self) }
    }
}

// GPTQ's tiled linear algebra computes what it claims (against plain loops in Double), and gives the same bytes
// on 1, 2 and 3 workers, so that a calibration's output does not depend on --threads.
import XCTest
import QARep
@testable import QARepOffline

final class TiledLinearAlgebraTests: XCTestCase {
    /// Sizes: one partial tile, exactly one tile, and several with a partial last one.
    private let sizes = [5, 128, 300]

    private func randomMatrix(rows: Int, columns: Int, seed: UInt64) -> [Float] {
        var random = CalibRandom(seed: seed)
        return (0..<(rows * columns)).map { _ in Float(random.gaussian()) }
    }

    /// A symmetric positive definite H = X X^T / columns, full (both triangles), in Double.
    private func spd(_ n: Int, seed: UInt64) -> [Double] {
        let columns = n + 7
        let x = randomMatrix(rows: n, columns: columns, seed: seed)
        var h = [Double](repeating: 0, count: n * n)
        for i in 0..<n {
            for j in 0...i {
                var sum = 0.0
                for k in 0..<columns { sum += Double(x[i * columns + k]) * Double(x[j * columns + k]) }
                h[i * n + j] = sum / Double(columns)
                h[j * n + i] = h[i * n + j]
            }
        }
        return h
    }

    private func factor(_ h: [Double], size n: Int, workers: Int) -> [Double]? {
        h.map(Float.init).withUnsafeBufferPointer { inverseCholeskyUpper($0.baseAddress!, size: n, workers: workers) }
    }

    private func forms(_ v: [Double], _ h: [Double], rows: Int, size: Int, workers: Int) -> [Double] {
        v.map(Float.init).withUnsafeBufferPointer { vectors in
            h.map(Float.init).withUnsafeBufferPointer { rowQuadraticForms(vectors.baseAddress!, $0.baseAddress!, rows: rows, size: size, workers: workers) }
        }
    }

    func testSymmetricFromUpperMirrorsAndDivides() {
        for n in sizes {
            let upper = randomMatrix(rows: n, columns: n, seed: UInt64(40 + n))
            var full = [Float](repeating: .nan, count: n * n)
            upper.withUnsafeBufferPointer { source in
                full.withUnsafeMutableBufferPointer { symmetricFromUpper(source.baseAddress!, size: n, dividedBy: 3, into: $0.baseAddress!, workers: 2) }
            }
            for i in 0..<n {
                for j in i..<n {
                    XCTAssertEqual(full[i * n + j], upper[i * n + j] / 3, "n \(n) at (\(i), \(j))")
                    XCTAssertEqual(full[j * n + i], upper[i * n + j] / 3, "n \(n) at (\(j), \(i))")
                }
            }
        }
    }

    func testGramAddsToTheUpperTriangleOnly() {
        for n in sizes {
            let columns = 37
            let x = randomMatrix(rows: n, columns: columns, seed: UInt64(n))
            var h = [Float](repeating: -1, count: n * n)
            x.withUnsafeBufferPointer { source in
                h.withUnsafeMutableBufferPointer { addGram(source.baseAddress!, rows: n, columns: columns, into: $0.baseAddress!, workers: 2) }
            }
            for i in 0..<n {
                for j in 0..<n {
                    if j < i {
                        XCTAssertEqual(h[i * n + j], -1, "n \(n): the lower triangle was written at (\(i), \(j))")
                        continue
                    }
                    var sum = -1.0
                    for k in 0..<columns { sum += Double(x[i * columns + k]) * Double(x[j * columns + k]) }
                    XCTAssertEqual(Double(h[i * n + j]), sum, accuracy: 1e-3 * (1 + abs(sum)), "n \(n) at (\(i), \(j))")
                }
            }
        }
    }

    func testInverseCholeskyUpperFactorsTheDampedInverse() throws {
        for n in sizes {
            let h = spd(n, seed: UInt64(100 + n))
            let u = try XCTUnwrap(factor(h, size: n, workers: 3), "n \(n)")
            var meanDiagonal = 0.0
            for i in 0..<n { meanDiagonal += h[i * n + i] / Double(n) }
            for i in 0..<n {
                XCTAssertGreaterThan(u[i * n + i], 0, "n \(n): diagonal \(i)")
                for j in 0..<i { XCTAssertEqual(u[i * n + j], 0, "n \(n): U is not upper at (\(i), \(j))") }
            }
            // H + 1% of the mean diagonal = (U^T U)^-1, so U (H + damping) U^T = I.
            var left = [Double](repeating: 0, count: n * n)  // U (H + damping)
            for i in 0..<n {
                for k in i..<n {
                    let value = u[i * n + k]
                    for j in 0..<n { left[i * n + j] += value * (h[k * n + j] + (k == j ? 0.01 * meanDiagonal : 0)) }
                }
            }
            var worst = 0.0
            for i in 0..<n {
                for j in 0..<n {
                    var sum = 0.0
                    for k in j..<n { sum += left[i * n + k] * u[j * n + k] }
                    worst = max(worst, abs(sum - (i == j ? 1 : 0)))
                }
            }
            XCTAssertLessThan(worst, 1e-3, "n \(n)")
        }
    }

    func testNotPositiveDefiniteIsNil() {
        XCTAssertNil(factor([0, 0, 0, 0], size: 2, workers: 2))
        XCTAssertNil(factor([.nan, 0, 0, 1], size: 2, workers: 2))
    }

    /// GPTQ column by column, one weight at a time, in Double: the algorithm without its blocks.
    private func plainGPTQ(_ target: [Double], rows: Int, depth: Int, u: [Double]) -> [Double] {
        var t = target, rounded = target
        for r in 0..<rows {
            for j in 0..<depth {
                let level = min(max(t[r * depth + j].rounded(.toNearestOrEven), -127), 127)
                rounded[r * depth + j] = level
                let error = (t[r * depth + j] - level) / u[j * depth + j]
                for k in (j + 1)..<max(j + 1, depth) { t[r * depth + k] -= error * u[j * depth + k] }
            }
        }
        return rounded
    }

    func testGPTQRoundingMatchesTheColumnByColumnAlgorithm() throws {
        for (rows, depth) in [(3, 5), (40, 300)] {
            let u = try XCTUnwrap(factor(spd(depth, seed: UInt64(depth)), size: depth, workers: 2))
            var random = CalibRandom(seed: UInt64(rows))
            let target = (0..<(rows * depth)).map { _ in random.gaussian() * 40 }
            let expected = plainGPTQ(target, rows: rows, depth: depth, u: u)
            var work = target, rounded = [Double](repeating: 0, count: rows * depth)
            u.withUnsafeBufferPointer { factor in
                work.withUnsafeMutableBufferPointer { t in
                    rounded.withUnsafeMutableBufferPointer {
                        gptqRound(t.baseAddress!, into: $0.baseAddress!, rows: rows, depth: depth, inverse: factor.baseAddress!, workers: 3)
                    }
                }
            }
            let differing = zip(rounded, expected).filter { $0 != $1 }.count
            XCTAssertEqual(differing, 0, "\(rows) x \(depth)")
            // With H = I, U = I: each column's error goes nowhere, and GPTQ is nearest rounding.
            var identity = [Double](repeating: 0, count: depth * depth)
            for i in 0..<depth { identity[i * depth + i] = 1 }
            let nearest = target.map { min(max($0.rounded(.toNearestOrEven), -127), 127) }
            XCTAssertEqual(plainGPTQ(target, rows: rows, depth: depth, u: identity), nearest)
        }
    }

    func testEveryWorkerCountGivesTheSameBytes() throws {
        let n = 300, rows = 40, columns = 53
        let x = randomMatrix(rows: n, columns: columns, seed: 5)
        let h = spd(n, seed: 6)
        var random = CalibRandom(seed: 7)
        let target = (0..<(rows * n)).map { _ in random.gaussian() * 40 }
        var results: [[[UInt64]]] = []
        for workers in 1...3 {
            var gram = [Float](repeating: 0, count: n * n)
            x.withUnsafeBufferPointer { source in
                gram.withUnsafeMutableBufferPointer { addGram(source.baseAddress!, rows: n, columns: columns, into: $0.baseAddress!, workers: workers) }
            }
            let u = try XCTUnwrap(factor(h, size: n, workers: workers))
            var work = target, rounded = [Double](repeating: 0, count: rows * n)
            u.withUnsafeBufferPointer { factor in
                work.withUnsafeMutableBufferPointer { t in
                    rounded.withUnsafeMutableBufferPointer {
                        gptqRound(t.baseAddress!, into: $0.baseAddress!, rows: rows, depth: n, inverse: factor.baseAddress!, workers: workers)
                    }
                }
            }
            let quadratic = forms(target, h, rows: rows, size: n, workers: workers)
            results.append([gram.map { UInt64($0.bitPattern) }, u.map(\.bitPattern), work.map(\.bitPattern),
                            rounded.map(\.bitPattern), quadratic.map(\.bitPattern)])
        }
        let names = ["Gram", "inverse factor", "updated weights", "rounded weights", "quadratic forms"]
        for workers in 2...3 {
            for (which, name) in names.enumerated() {
                let differing = zip(results[workers - 1][which], results[0][which]).filter { $0 != $1 }.count
                XCTAssertEqual(differing, 0, "\(name): \(differing) values differ between 1 and \(workers) workers")
            }
        }
    }

    func testQuadraticFormsMatchPlainSums() {
        let n = 300, rows = 70
        let h = spd(n, seed: 8)
        var random = CalibRandom(seed: 9)
        let v = (0..<(rows * n)).map { _ in random.gaussian() }
        let quadratic = forms(v, h, rows: rows, size: n, workers: 2)
        for r in 0..<rows {
            var sum = 0.0
            for i in 0..<n { for j in 0..<n { sum += v[r * n + i] * h[i * n + j] * v[r * n + j] } }
            XCTAssertEqual(quadratic[r], sum, accuracy: 1e-4 * abs(sum), "row \(r)")
        }
    }

    func testCalibrationIsTheSameForEveryThreadCount() throws {
        // 48 input channels make a 432-row H: four tiles, the last partial.
        let plan = [CalibLayerPlan(out: 48, stride: 2, groups: 1), CalibLayerPlan(out: 48, stride: 1, groups: 1),
                    CalibLayerPlan(out: 40, stride: 1, groups: 2)]
        let network = calibTestNetwork(plan: plan, height: 16, width: 16, classes: 5, seed: 31)
        let data = try calibTestData(network, count: 12, seed: 32)
        var descriptions: [QuantizedModelDescription] = []
        for threads in [1, 3] {
            var options = CalibrationOptions()
            options.threads = threads
            options.weightRounding = .gptq
            options.holdoutFraction = 0
            descriptions.append(try calibrateAndQuantize(network: network, calibration: data, options: options).0)
        }
        XCTAssertEqual(descriptions[0], descriptions[1], "--threads 1 and 3 calibrate different models")
    }
}

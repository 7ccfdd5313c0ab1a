// GPTQ's dense linear algebra (LayerRefinement.swift) on every calibration thread, with the same bytes for any
// thread count. Each operation is cut into tiles whose shapes depend only on the matrix size, each tile is one
// single-threaded BLAS or LAPACK call, and the tiles a value passes through come in a fixed order. OpenBLAS's
// own threads split the work by their count, and so summed in another order for another `--threads`
// (docs/calibration.md, "Calibration time").
import COpenBLAS
import Dispatch  // concurrentPerform, which Foundation re-exported
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Side of the square tiles: wide enough for the BLAS kernels' full speed, small enough that a 432-row stage-0
/// Hessian still makes several.
let linearAlgebraTile = 128

/// `body(item)` for every item in 0..<count, each on one of up to `workers` threads (the caller's among them),
/// in the order the workers claim them; OpenBLAS on one thread meanwhile. Items must not depend on each other.
func forEachTile(_ count: Int, workers: Int, _ body: @Sendable (Int) -> Void) {
    guard count > 0 else { return }
    withSingleThreadedBLAS {
        let threads = min(workers, count)
        if threads <= 1 {
            for item in 0..<count { body(item) }
            return
        }
        let next = WorkCounter()
        DispatchQueue.concurrentPerform(iterations: threads) { _ in
            while true {
                let item = next.take()
                guard item < count else { break }
                body(item)
            }
        }
    }
}

/// Tiles of `side` (linearAlgebraTile by default) over 0..<n: first index and size.
func tiles(_ n: Int, _ side: Int = linearAlgebraTile) -> [(start: Int, size: Int)] {
    stride(from: 0, to: n, by: side).map { ($0, min(side, n - $0)) }
}

/// The pairs (row tile, column tile) of the upper triangle, diagonal included, as indices into `sides`.
private func upperTilePairs(_ sides: [(start: Int, size: Int)]) -> [(row: Int, column: Int)] {
    sides.indices.flatMap { i in (i..<sides.count).map { (i, $0) } }
}

/// The upper triangle of row-major `h` (n x n, leading dimension n) += X X^T, X row-major n x `columns`.
func addGram(_ x: UnsafePointer<Float>, rows n: Int, columns: Int, into h: UnsafeMutablePointer<Float>, workers: Int) {
    let sides = tiles(n), pairs = upperTilePairs(sides)
    let source = SendablePointer(x), target = SendableMutablePointer(h)
    forEachTile(pairs.count, workers: workers) { item in
        let (row, column) = (sides[pairs[item].row], sides[pairs[item].column])
        let a = source.base + row.start * columns, out = target.base + row.start * n + column.start
        if row.start == column.start {
            cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, Int32(row.size), Int32(columns), 1, a, Int32(columns),
                        1, out, Int32(n))
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(row.size), Int32(column.size), Int32(columns), 1,
                        a, Int32(columns), source.base + column.start * columns, Int32(columns), 1, out, Int32(n))
        }
    }
}

/// Factors row-major symmetric `a` (n x n, its lower triangle read) in place into L, A = L L^T, in its lower
/// triangle; the strict upper triangle is left as it was. false if A is not positive definite.
func choleskyLower(_ a: UnsafeMutablePointer<Float>, size n: Int, workers: Int) -> Bool {
    let sides = tiles(n)
    let matrix = SendableMutablePointer(a)
    for (k, pivot) in sides.enumerated() {
        // The diagonal tile: LAPACK's column-major upper factor is this row-major lower one.
        var order = Int32(pivot.size), leading = Int32(n), info: Int32 = 0
        let upper: [CChar] = [CChar(UInt8(ascii: "U")), 0]
        spotrf_(upper, &order, a + pivot.start * n + pivot.start, &leading, &info)
        guard info == 0 else { return false }
        let below = Array(sides[(k + 1)...])
        // The tiles under it: A_ik <- A_ik L_kk^-T.
        forEachTile(below.count, workers: workers) { item in
            let rows = below[item]
            cblas_strsm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, Int32(rows.size), Int32(pivot.size), 1,
                        matrix.base + pivot.start * n + pivot.start, Int32(n), matrix.base + rows.start * n + pivot.start, Int32(n))
        }
        // The trailing lower triangle: A_ij -= L_ik L_jk^T.
        let pairs = below.indices.flatMap { i in (0...i).map { (i, $0) } }
        forEachTile(pairs.count, workers: workers) { item in
            let (row, column) = (below[pairs[item].0], below[pairs[item].1])
            let left = matrix.base + row.start * n + pivot.start, out = matrix.base + row.start * n + column.start
            if row.start == column.start {
                cblas_ssyrk(CblasRowMajor, CblasLower, CblasNoTrans, Int32(row.size), Int32(pivot.size), -1, left, Int32(n),
                            1, out, Int32(n))
            } else {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(row.size), Int32(column.size), Int32(pivot.size), -1,
                            left, Int32(n), matrix.base + column.start * n + pivot.start, Int32(n), 1, out, Int32(n))
            }
        }
    }
    return true
}

/// X = L^-1 of the lower triangle of row-major `l` (n x n) into `x`, row-major and lower (its strict upper
/// triangle zero): one triangular solve per block of columns, L[j:, j:] X[j:, block] = I[j:, block].
func lowerInverse(_ l: UnsafePointer<Float>, size n: Int, into x: UnsafeMutablePointer<Float>, workers: Int) {
    x.initialize(repeating: 0, count: n * n)
    for i in 0..<n { x[i * n + i] = 1 }
    let sides = tiles(n)
    let factor = SendablePointer(l), target = SendableMutablePointer(x)
    // The widest solves first, so that the last ones to be claimed are the shortest.
    forEachTile(sides.count, workers: workers) { item in
        let block = sides[item]
        cblas_strsm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, Int32(n - block.start), Int32(block.size),
                    1, factor.base + block.start * n + block.start, Int32(n), target.base + block.start * n + block.start, Int32(n))
    }
}

/// Both triangles of row-major `full` (n x n) from the upper triangle of `upper`, each value divided by `divisor`.
func symmetricFromUpper(_ upper: UnsafePointer<Float>, size n: Int, dividedBy divisor: Float, into full: UnsafeMutablePointer<Float>,
                        workers: Int) {
    let sides = tiles(n), pairs = upperTilePairs(sides)
    let source = SendablePointer(upper), target = SendableMutablePointer(full)
    forEachTile(pairs.count, workers: workers) { item in
        let (rows, columns) = (sides[pairs[item].row], sides[pairs[item].column])
        for i in rows.start..<(rows.start + rows.size) {
            for j in max(i, columns.start)..<(columns.start + columns.size) {
                let value = source.base[i * n + j] / divisor
                target.base[i * n + j] = value
                target.base[j * n + i] = value
            }
        }
    }
}

/// Per row r of the rows x size row-major matrix `v`: v_r^T H v_r, H size x size (symmetric), summed in Double.
/// Tiles of 64 rows by 256 columns of V H, each summing its part of its rows' forms; the parts are added in
/// column order. Consecutive items share their columns of H (7 MB for B3's 6,912-row H), which each row tile
/// reads again.
func rowQuadraticForms(_ v: UnsafePointer<Float>, _ h: UnsafePointer<Float>, rows: Int, size: Int, workers: Int) -> [Double] {
    let rowTiles = tiles(rows, 64), columnTiles = tiles(size, 256)
    let parts = UnsafeMutablePointer<Double>.allocate(capacity: max(1, rows * columnTiles.count))
    defer { parts.deallocate() }
    let vectors = SendablePointer(v), matrix = SendablePointer(h), out = SendableMutablePointer(parts)
    forEachTile(rowTiles.count * columnTiles.count, workers: workers) { item in
        let tile = rowTiles[item % rowTiles.count], part = item / rowTiles.count, columns = columnTiles[part]
        let product = UnsafeMutablePointer<Float>.allocate(capacity: tile.size * columns.size)
        defer { product.deallocate() }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(tile.size), Int32(columns.size), Int32(size), 1,
                    vectors.base + tile.start * size, Int32(size), matrix.base + columns.start, Int32(size), 0, product,
                    Int32(columns.size))
        for r in 0..<tile.size {
            var sum = 0.0
            for c in 0..<columns.size {
                sum += Double(vectors.base[(tile.start + r) * size + columns.start + c]) * Double(product[r * columns.size + c])
            }
            out.base[(tile.start + r) * columnTiles.count + part] = sum
        }
    }
    return (0..<rows).map { r in (0..<columnTiles.count).reduce(0.0) { $0 + parts[r * columnTiles.count + $1] } }
}

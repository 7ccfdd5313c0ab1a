// Softmax and the k best classes of a row of logits.
#if hasFeature(Embedded)
import CQARepLibc  // packaging/embedded: Embedded Swift has no Glibc overlay, so libc comes through a module map
#elseif canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// One class of a classified image.
public struct Prediction: Sendable, Equatable {
    /// The class's index in the logits.
    public var classIndex: Int
    /// The class's label from the model file.
    public var label: String
    /// Softmax over all classes.
    public var probability: Float
}

/// Softmax (max subtracted first, so large logits cannot overflow) and the k best classes, most probable
/// first, ties lower index first.
func topKPredictions(logits: ArraySlice<Float>, k: Int, labels: [String]) -> [Prediction] {
    guard let maxLogit = logits.max() else { return [] }
    let first = logits.startIndex
    var exps = logits.map { exp(Double($0) - Double(maxLogit)) }
    let sum = exps.reduce(0, +)
    for i in exps.indices { exps[i] /= sum }
    let order = logits.indices.sorted { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
    return order.prefix(k).map {
        Prediction(classIndex: $0 - first, label: labels[$0 - first], probability: Float(exps[$0 - first]))
    }
}

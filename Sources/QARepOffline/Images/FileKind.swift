// What is at a path, from stat/lstat: FoundationEssentials has neither ObjCBool (FileManager.fileExists's
// isDirectory on Foundation) nor FileManager.enumerator, so the offline module and the CLI ask the OS.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

package enum FileKind: Equatable {
    case missing, directory, regularFile, other
}

/// With `followLinks` (like FileManager.fileExists) a symbolic link reports its target; without, it is `other`
/// (so that a folder walk, like FileManager's enumerator, does not descend into linked folders).
package func fileKind(atPath path: String, followLinks: Bool = true) -> FileKind {
    var info = stat()
    guard (followLinks ? stat(path, &info) : lstat(path, &info)) == 0 else { return .missing }
    switch info.st_mode & S_IFMT {
    case S_IFDIR: return .directory
    case S_IFREG: return .regularFile
    default: return .other
    }
}

/// `name` inside `directory`, with one slash between them.
package func joinedPath(_ directory: String, _ name: String) -> String {
    directory.hasSuffix("/") ? directory + name : directory + "/" + name
}

extension StringProtocol {
    /// Without leading and trailing whitespace (CharacterSet, for trimmingCharacters(in:), is Foundation's).
    package var trimmedWhitespace: String {
        String(drop(while: { $0.isWhitespace }).reversed().drop(while: { $0.isWhitespace }).reversed())
    }
}

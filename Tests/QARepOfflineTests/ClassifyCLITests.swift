// qarep classify as a user runs it: the built qarep-cli (next to the test bundle) on a folder with good and bad
// files: one record per file in input order, one stderr line per bad file, and the documented exit statuses.
import Foundation
import XCTest

final class ClassifyCLITests: XCTestCase {
    nonisolated(unsafe) private static var directory: URL?
    nonisolated(unsafe) private static var model = ""

    private func cli() throws -> String {
        // The products sit next to the test bundle (.build/<triple>/debug/qarepPackageTests.xctest); on Linux
        // the bundle path is that directory itself.
        let bundle = URL(fileURLWithPath: Bundle(for: ClassifyCLITests.self).bundlePath)
        let path = [bundle, bundle.deletingLastPathComponent()].map { $0.appendingPathComponent("qarep-cli").path }
            .first { FileManager.default.isExecutableFile(atPath: $0) } ?? bundle.appendingPathComponent("qarep-cli").path
        guard FileManager.default.isExecutableFile(atPath: path) else { throw XCTSkip("qarep-cli not built at \(path)") }
        return path
    }

    @discardableResult
    private func run(_ arguments: [String], stdin: String? = nil) throws -> (status: Int32, out: String, err: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try cli())
        process.arguments = arguments
        let out = Pipe(), err = Pipe(), input = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = input
        try process.run()
        if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
        try input.fileHandleForWriting.close()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self))
    }

    /// A 32x32 A0 (random weights) calibrated on a few generated images, made once by the CLI itself.
    private func setUpModel() throws -> (URL, String) {
        if let directory = Self.directory { return (directory, Self.model) }
        let directory = try calibTemporaryDirectory()
        let calib = directory.appendingPathComponent("calib")
        try FileManager.default.createDirectory(at: calib, withIntermediateDirectories: true)
        for i in 0..<6 {
            let pixels = photoLikeImage(width: 40 + i, height: 36).map { $0 &+ UInt8(i * 20) }
            try Data(try imagesEncodePNG(width: 40 + i, height: 36, format: 2, pixels: pixels)).write(to: calib.appendingPathComponent("c\(i).png"))
        }
        let fused = directory.appendingPathComponent("a0.safetensors").path
        let model = directory.appendingPathComponent("a0.qarep").path
        XCTAssertEqual(try run(["synthesize", "--arch", "A0", "--size", "32", "--classes", "10", "-o", fused]).status, 0)
        let quantized = try run(["quantize", fused, "--calib", calib.path, "--holdout", "0", "--no-bias-correction",
                                     "--no-equalization", "--weight-rounding", "nearest", "-o", model])
        XCTAssertEqual(quantized.status, 0, quantized.err)
        Self.directory = directory
        Self.model = model
        return (directory, model)
    }

    override class func tearDown() {
        if let directory { try? FileManager.default.removeItem(at: directory) }
        directory = nil
    }

    /// Good and bad files interleaved; returns the paths in input order and which are bad.
    private func mixedFolder(_ root: URL, count: Int) throws -> (files: [String], bad: Set<String>) {
        let folder = root.appendingPathComponent("mixed-\(count)")
        try? FileManager.default.removeItem(at: folder)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        var files: [String] = [], bad: Set<String> = []
        for i in 0..<count {
            // Sizes vary a lot so that decode times differ and workers finish out of order.
            let (w, h) = i % 5 == 0 ? (900, 700) : (30 + i, 20 + i)
            let pixels = photoLikeImage(width: w, height: h)
            let path: String
            switch i % 7 {
            case 3:
                path = folder.appendingPathComponent(String(format: "%03d-truncated.jpg", i)).path
                let jpeg = try imagesEncodeJPEG(width: w, height: h, components: 3, pixels: pixels)
                try Data(jpeg.prefix(jpeg.count / 3)).write(to: URL(fileURLWithPath: path))
                bad.insert(path)
            case 5:
                path = folder.appendingPathComponent(String(format: "%03d-text.png", i)).path
                try Data("hello".utf8).write(to: URL(fileURLWithPath: path))
                bad.insert(path)
            case 6:
                path = folder.appendingPathComponent(String(format: "%03d.webp", i)).path
                try Data(try imagesEncodeWebP(width: w, height: h, pixels: pixels)).write(to: URL(fileURLWithPath: path))
            case 1:
                path = folder.appendingPathComponent(String(format: "%03d.png", i)).path
                try Data(try imagesEncodePNG(width: w, height: h, format: 2, pixels: pixels)).write(to: URL(fileURLWithPath: path))
            default:
                path = folder.appendingPathComponent(String(format: "%03d.jpg", i)).path
                try Data(try imagesEncodeJPEG(width: w, height: h, components: 3, pixels: pixels)).write(to: URL(fileURLWithPath: path))
            }
            files.append(path)
        }
        return (files, bad)
    }

    private func records(_ jsonl: String) throws -> [[String: Any]] {
        try jsonl.split(separator: "\n").map {
            try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
    }

    func testBadFilesGiveOneErrorRecordAndLineEachInInputOrderAndExitStatus2() throws {
        let (root, model) = try setUpModel()
        let (files, bad) = try mixedFolder(root, count: 30)
        for threads in ["1", "3"] {
            let result = try run(["classify", model, "--jsonl", "--batch", "4", "--decode-threads", threads, "--top", "2"] + files)
            XCTAssertEqual(result.status, 2, result.err)
            let lines = try records(result.out)
            XCTAssertEqual(lines.map { $0["image"] as? String ?? "" }, files)
            for line in lines {
                let path = line["image"] as? String ?? ""
                XCTAssertEqual(line["error"] != nil, bad.contains(path), path)
                XCTAssertEqual(line["top"] != nil, !bad.contains(path), path)
            }
            let errorLines = result.err.split(separator: "\n").filter { $0.hasPrefix("qarep: error: ") }
            XCTAssertEqual(errorLines.count, bad.count, result.err)
            for path in bad { XCTAssertEqual(errorLines.filter { $0.contains(path) }.count, 1, path) }
            XCTAssertTrue(result.err.contains("\(files.count - bad.count) images, \(bad.count) errors"), result.err)
        }
        // The same folder as a folder argument, and as --files-from - : the same records.
        let viaStdin = try run(["classify", model, "--jsonl", "--files-from", "-"], stdin: files.joined(separator: "\n") + "\n")
        XCTAssertEqual(viaStdin.status, 2)
        XCTAssertEqual(try records(viaStdin.out).map { $0["image"] as? String ?? "" }, files)
        let viaFolder = try run(["classify", model, "--jsonl", URL(fileURLWithPath: files[0]).deletingLastPathComponent().path])
        XCTAssertEqual(try records(viaFolder.out).map { $0["image"] as? String ?? "" }, files)
    }

    func testResultsDoNotDependOnBatchOrThreads() throws {
        let (root, model) = try setUpModel()
        let good = try mixedFolder(root, count: 30).files.filter { !$0.contains("truncated") && !$0.contains("text") }
        let one = try run(["classify", model, "--json", "--batch", "1", "--threads", "1", "--decode-threads", "1"] + good)
        let many = try run(["classify", model, "--json", "--batch", "7", "--decode-threads", "4"] + good)
        // The packing options change memory and speed only.
        let direct = try run(["classify", model, "--json", "--batch", "7", "--winograd", "off"] + good)
        XCTAssertEqual(one.status, 0, one.err)
        XCTAssertEqual(many.status, 0, many.err)
        XCTAssertEqual(direct.status, 0, direct.err)
        func results(_ text: String) throws -> String {
            let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
            let data = try JSONSerialization.data(withJSONObject: object["results"] as Any, options: [.sortedKeys])
            return String(decoding: data, as: UTF8.self)
        }
        XCTAssertEqual(try results(one.out), try results(many.out))
        XCTAssertEqual(try results(one.out), try results(direct.out))
    }

    func testFailFastStopsAtTheFirstBadFile() throws {
        let (root, model) = try setUpModel()
        let (files, bad) = try mixedFolder(root, count: 14)
        let firstBad = try XCTUnwrap(files.firstIndex { bad.contains($0) })
        let result = try run(["classify", model, "--jsonl", "--fail-fast", "--batch", "2"] + files)
        XCTAssertEqual(result.status, 2)
        XCTAssertEqual(try records(result.out).map { $0["image"] as? String ?? "" }, Array(files[...firstBad]))
    }

    func testExitStatuses() throws {
        let (root, model) = try setUpModel()
        let good = try mixedFolder(root, count: 3).files.filter { !$0.contains("truncated") && !$0.contains("text") }
        XCTAssertEqual(try run(["classify", model] + good).status, 0)
        XCTAssertEqual(try run(["classify", model, "--exact-decode"] + good).status, 0)
        XCTAssertEqual(try run(["classify", model, root.appendingPathComponent("missing.jpg").path]).status, 2)
        XCTAssertEqual(try run(["classify", root.appendingPathComponent("missing.qarep").path] + good).status, 1)
        XCTAssertEqual(try run(["classify", model, "--no-such-flag"] + good).status, 1)
        XCTAssertEqual(try run(["classify", model, "--batch", "0"] + good).status, 1)
        XCTAssertEqual(try run(["classify", model, "--winograd", "sometimes"] + good).status, 1)
        XCTAssertEqual(try run(["classify", model]).status, 1)
    }

    func testAnalyzeBadInputGivesOneLineAndStatus1() throws {
        let (directory, _) = try setUpModel()
        let fused = directory.appendingPathComponent("a0.safetensors").path
        let calib = directory.appendingPathComponent("calib").path
        let empty = directory.appendingPathComponent("empty-folder")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        let garbage = directory.appendingPathComponent("garbage.safetensors")
        try Data("not a checkpoint".utf8).write(to: garbage)
        let cases: [[String]] = [
            ["analyze", directory.appendingPathComponent("missing.pth").path, "--calib", calib],
            ["analyze", garbage.path, "--calib", calib],
            ["analyze", fused, "--calib", empty.path, "--input-size", "32"],
            ["analyze", fused, "--calib", calib, "--input-size", "32", "--method", "median"],
            ["analyze", fused, "--calib", calib, "--input-size", "32", "--holdout", "0"],
            ["analyze", fused, "--calib", calib, "--input-size", "32", "--images", empty.path],
            ["analyze", fused, "--calib", calib, "--input-size", "32", "--images", directory.appendingPathComponent("missing").path],
            ["analyze", fused, "--calib", calib, "--input-size", "32", "--compare", "mse,median"],
        ]
        for arguments in cases {
            let result = try run(arguments)
            XCTAssertEqual(result.status, 1, "\(arguments): \(result.err)")
            let lines = result.err.split(separator: "\n")
            XCTAssertEqual(lines.count, 1, "\(arguments): \(result.err)")
            XCTAssertTrue(lines.first?.hasPrefix("qarep: error: ") ?? false, result.err)
        }
    }
}

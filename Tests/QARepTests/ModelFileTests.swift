import XCTest
@testable import QARep

final class ModelFileTests: XCTestCase {
    func testWriterLoaderRoundTrip() throws {
        let model = smallModel()
        let bytes = try model.serialized()
        let loaded = try QuantizedModelDescription(fileBytes: bytes)
        XCTAssertEqual(loaded, model)
        // Writing is deterministic, so a reloaded model serializes to the same bytes.
        XCTAssertEqual(try loaded.serialized(), bytes)
    }

    func testLabelsDefaultWhenAbsent() throws {
        var model = smallModel()
        let archive = try SafetensorsArchive(bytes: model.serialized())
        var writer = SafetensorsWriter(metadata: archive.metadata)
        writer.metadata["labels"] = nil
        for name in archive.tensorNamesInFileOrder {
            let info = try XCTUnwrap(archive.tensors[name])
            try writer.add(name: name, dtype: info.dtype, shape: info.shape, data: Array(archive.tensorBytes(info)))
        }
        let loaded = try QuantizedModelDescription(fileBytes: writer.serialized())
        model.labels = (0..<5).map { "class_\($0)" }
        XCTAssertEqual(loaded, model)
    }
}

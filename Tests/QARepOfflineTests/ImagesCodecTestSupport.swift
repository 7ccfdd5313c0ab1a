// Test-side encoders: the image tests write their own JPEG and PNG files with libjpeg / libpng.
import CImageCodecs
import Foundation

enum ImagesTestEncodeError: Error { case failed(String) }

/// PNG via libpng's simplified writer. format: 0 gray, 2 RGB, 3 RGBA (PNG_FORMAT_* values).
func imagesEncodePNG(width: Int, height: Int, format: UInt32, pixels: [UInt8]) throws -> [UInt8] {
    var image = png_image()
    image.version = 1  // PNG_IMAGE_VERSION
    image.width = UInt32(width)
    image.height = UInt32(height)
    image.format = format
    let channels = Int(format & 1) + (format & 2 != 0 ? 3 : 1)
    var size = 0
    try pixels.withUnsafeBytes { raw in
        guard png_image_write_to_memory(&image, nil, &size, 0, raw.baseAddress, Int32(width * channels), nil) != 0 else {
            throw ImagesTestEncodeError.failed("png size")
        }
    }
    var output = [UInt8](repeating: 0, count: size)
    try pixels.withUnsafeBytes { raw in
        try output.withUnsafeMutableBytes { target in
            guard png_image_write_to_memory(&image, target.baseAddress, &size, 0, raw.baseAddress, Int32(width * channels), nil) != 0 else {
                throw ImagesTestEncodeError.failed("png write")
            }
        }
    }
    return Array(output[0..<size])
}

/// Baseline JPEG at quality 100. components 1 (gray), 3 (RGB) or 4 (CMYK, written with libjpeg's Adobe marker).
func imagesEncodeJPEG(width: Int, height: Int, components: Int, pixels: [UInt8]) throws -> [UInt8] {
    // libjpeg keeps pointers to these, so they must not move while it runs.
    let info = UnsafeMutablePointer<jpeg_compress_struct>.allocate(capacity: 1)
    let errors = UnsafeMutablePointer<jpeg_error_mgr>.allocate(capacity: 1)
    let buffer = UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>.allocate(capacity: 1)
    let size = UnsafeMutablePointer<UInt>.allocate(capacity: 1)
    defer {
        info.deallocate(); errors.deallocate(); buffer.deallocate(); size.deallocate()
    }
    info.initialize(to: jpeg_compress_struct())
    buffer.initialize(to: nil)
    size.initialize(to: 0)
    info.pointee.err = jpeg_std_error(errors)
    jpeg_CreateCompress(info, JPEG_LIB_VERSION, MemoryLayout<jpeg_compress_struct>.size)
    jpeg_mem_dest(info, buffer, size)
    info.pointee.image_width = JDIMENSION(width)
    info.pointee.image_height = JDIMENSION(height)
    info.pointee.input_components = Int32(components)
    info.pointee.in_color_space = components == 1 ? JCS_GRAYSCALE : components == 3 ? JCS_RGB : JCS_CMYK
    jpeg_set_defaults(info)
    jpeg_set_quality(info, 100, 1)
    jpeg_start_compress(info, 1)
    var rows = pixels
    rows.withUnsafeMutableBufferPointer { all in
        while info.pointee.next_scanline < info.pointee.image_height {
            var row: JSAMPROW? = all.baseAddress.map { $0 + Int(info.pointee.next_scanline) * width * components }
            _ = jpeg_write_scanlines(info, &row, 1)
        }
    }
    jpeg_finish_compress(info)
    jpeg_destroy_compress(info)
    guard let data = buffer.pointee else { throw ImagesTestEncodeError.failed("jpeg") }
    let bytes = Array(UnsafeBufferPointer(start: data, count: Int(size.pointee)))
    free(data)
    return bytes
}

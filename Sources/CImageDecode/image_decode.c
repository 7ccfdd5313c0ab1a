#include "qarep_image_reader.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <jpeglib.h>
#include <jerror.h>
#include <png.h>
#include <webp/decode.h>

static void copy_message(char *message, size_t capacity, const char *text) {
    if (message == NULL || capacity == 0) return;
    snprintf(message, capacity, "%s", text);
}

struct jpeg_error_context {
    struct jpeg_error_mgr manager;  /* first member: libjpeg hands back a pointer to it */
    jmp_buf resume;
};

struct qarep_image_reader {
    qarep_image_format format;
    const uint8_t *data;
    size_t size;
    int64_t max_memory;
    int width, height;            /* nominal */
    int out_width, out_height;    /* after start */
    int started, failed, rows_read;
    char text[JMSG_LENGTH_MAX > 200 ? JMSG_LENGTH_MAX : 200];

    /* JPEG */
    struct jpeg_decompress_struct cinfo;
    struct jpeg_error_context jerr;
    int jpeg_created, is_cmyk;
    uint8_t *cmyk_row;

    /* PNG */
    png_structp png;
    png_infop info;
    size_t offset;
    uint8_t *whole;               /* interlaced PNG only: the whole image, out_width * 3 bytes a row */

    /* WebP */
    WebPDecoderConfig webp;
    int webp_decoded;
};

qarep_image_format qarep_image_detect(const uint8_t *data, size_t size) {
    static const uint8_t png_signature[8] = {0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A};
    if (data == NULL) return QAREP_IMAGE_UNKNOWN;
    if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) return QAREP_IMAGE_JPEG;
    if (size >= 8 && memcmp(data, png_signature, 8) == 0) return QAREP_IMAGE_PNG;
    if (size >= 12 && memcmp(data, "RIFF", 4) == 0 && memcmp(data + 8, "WEBP", 4) == 0) return QAREP_IMAGE_WEBP;
    return QAREP_IMAGE_UNKNOWN;
}

static qarep_decode_status fail(qarep_image_reader *r, qarep_decode_status status, const char *text, char *message,
                                size_t capacity) {
    r->failed = 1;
    copy_message(message, capacity, text);
    return status;
}

/* ---- JPEG ---- */

static void jpeg_error_to_longjmp(j_common_ptr cinfo) {
    struct jpeg_error_context *context = (struct jpeg_error_context *)cinfo->err;
    qarep_image_reader *r = (qarep_image_reader *)cinfo->client_data;
    if (cinfo->err->msg_code == JERR_NO_BACKING_STORE) {
        snprintf(r->text, sizeof(r->text), "decoding needs more than the %lld MB memory limit (progressive or multi-scan JPEG)",
                 (long long)(r->max_memory >> 20));
    } else {
        (*cinfo->err->format_message)(cinfo, r->text);
    }
    longjmp(context->resume, 1);
}

/* Warnings must not print to stderr. Most (e.g. extraneous bytes before a marker) are common in real photo
   collections and harmless, as other decoders treat them; premature end of data (the file ends, or a marker
   comes where entropy-coded data should), which libjpeg would pad with gray, makes a truncated file an error
   instead of a silently half-gray image. */
static void jpeg_warning_to_error(j_common_ptr cinfo, int level) {
    if (level < 0 && (cinfo->err->msg_code == JWRN_JPEG_EOF || cinfo->err->msg_code == JWRN_HIT_MARKER)) {
        struct jpeg_error_context *context = (struct jpeg_error_context *)cinfo->err;
        qarep_image_reader *r = (qarep_image_reader *)cinfo->client_data;
        (*cinfo->err->format_message)(cinfo, r->text);
        longjmp(context->resume, 1);
    }
}

/* Adobe CMYK JPEGs store inverted ink values; libjpeg passes them through. RGB = inverted C/M/Y scaled by K. */
static void cmyk_row_to_rgb(const uint8_t *cmyk, uint8_t *rgb, int width, int inverted) {
    for (int x = 0; x < width; x++) {
        int c = cmyk[4 * x], m = cmyk[4 * x + 1], y = cmyk[4 * x + 2], k = cmyk[4 * x + 3];
        if (!inverted) { c = 255 - c; m = 255 - m; y = 255 - y; k = 255 - k; }
        rgb[3 * x] = (uint8_t)((c * k + 127) / 255);
        rgb[3 * x + 1] = (uint8_t)((m * k + 127) / 255);
        rgb[3 * x + 2] = (uint8_t)((y * k + 127) / 255);
    }
}

static qarep_decode_status jpeg_open(qarep_image_reader *r, char *message, size_t capacity) {
    r->cinfo.err = jpeg_std_error(&r->jerr.manager);
    r->jerr.manager.error_exit = jpeg_error_to_longjmp;
    r->jerr.manager.emit_message = jpeg_warning_to_error;
    if (setjmp(r->jerr.resume)) return fail(r, QAREP_DECODE_CORRUPT, r->text, message, capacity);
    r->cinfo.client_data = r;  /* before create: its own errors already reach jpeg_error_to_longjmp */
    jpeg_create_decompress(&r->cinfo);
    r->jpeg_created = 1;
    /* Bounds the whole-image coefficient buffers; with no backing store, more is an error (see above). */
    r->cinfo.mem->max_memory_to_use = (long)r->max_memory;
    jpeg_mem_src(&r->cinfo, r->data, (unsigned long)r->size);
    jpeg_read_header(&r->cinfo, TRUE);
    r->width = (int)r->cinfo.image_width;
    r->height = (int)r->cinfo.image_height;
    return QAREP_DECODE_OK;
}

static qarep_decode_status jpeg_start(qarep_image_reader *r, int denominator, char *message, size_t capacity) {
    if (setjmp(r->jerr.resume)) return fail(r, QAREP_DECODE_CORRUPT, r->text, message, capacity);
    r->is_cmyk = r->cinfo.jpeg_color_space == JCS_CMYK || r->cinfo.jpeg_color_space == JCS_YCCK;
    r->cinfo.out_color_space = r->is_cmyk ? JCS_CMYK : JCS_RGB;
    r->cinfo.scale_num = 1;
    r->cinfo.scale_denom = (unsigned int)denominator;
    jpeg_start_decompress(&r->cinfo);
    if (r->cinfo.output_components != (r->is_cmyk ? 4 : 3)) {
        return fail(r, QAREP_DECODE_UNSUPPORTED, "unsupported JPEG color space", message, capacity);
    }
    r->out_width = (int)r->cinfo.output_width;
    r->out_height = (int)r->cinfo.output_height;
    if (r->is_cmyk) {
        r->cmyk_row = malloc((size_t)r->out_width * 4);
        if (r->cmyk_row == NULL) return fail(r, QAREP_DECODE_OUT_OF_MEMORY, "out of memory", message, capacity);
    }
    return QAREP_DECODE_OK;
}

static qarep_decode_status jpeg_row(qarep_image_reader *r, uint8_t *row, char *message, size_t capacity) {
    if (setjmp(r->jerr.resume)) return fail(r, QAREP_DECODE_CORRUPT, r->text, message, capacity);
    JSAMPROW target = r->is_cmyk ? r->cmyk_row : row;
    if (jpeg_read_scanlines(&r->cinfo, &target, 1) != 1) {
        return fail(r, QAREP_DECODE_CORRUPT, "decoder returned no row", message, capacity);
    }
    if (r->is_cmyk) cmyk_row_to_rgb(r->cmyk_row, row, r->out_width, r->cinfo.saw_Adobe_marker);
    if (r->cinfo.output_scanline == r->cinfo.output_height) jpeg_finish_decompress(&r->cinfo);
    return QAREP_DECODE_OK;
}

/* ---- PNG ---- */

static void png_error_to_longjmp(png_structp png, png_const_charp text) {
    qarep_image_reader *r = (qarep_image_reader *)png_get_error_ptr(png);
    snprintf(r->text, sizeof(r->text), "%s", text);
    png_longjmp(png, 1);
}

static void png_quiet_warning(png_structp png, png_const_charp text) {
    (void)png;
    (void)text;
}

static void png_read_memory(png_structp png, png_bytep out, size_t count) {
    qarep_image_reader *r = (qarep_image_reader *)png_get_io_ptr(png);
    if (r->size - r->offset < count) png_error(png, "unexpected end of file (truncated PNG)");
    memcpy(out, r->data + r->offset, count);
    r->offset += count;
}

static qarep_decode_status png_open(qarep_image_reader *r, char *message, size_t capacity) {
    r->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, r, png_error_to_longjmp, png_quiet_warning);
    if (r->png == NULL) return fail(r, QAREP_DECODE_OUT_OF_MEMORY, "out of memory", message, capacity);
    r->info = png_create_info_struct(r->png);
    if (r->info == NULL) return fail(r, QAREP_DECODE_OUT_OF_MEMORY, "out of memory", message, capacity);
    if (setjmp(png_jmpbuf(r->png))) return fail(r, QAREP_DECODE_CORRUPT, r->text, message, capacity);
    png_set_read_fn(r->png, r, png_read_memory);
    png_set_user_limits(r->png, 0x7fffffff, 0x7fffffff);  /* the caller applies its own limits */
    png_read_info(r->png, r->info);
    r->width = (int)png_get_image_width(r->png, r->info);
    r->height = (int)png_get_image_height(r->png, r->info);
    return QAREP_DECODE_OK;
}

static qarep_decode_status png_start(qarep_image_reader *r, char *message, size_t capacity) {
    if (setjmp(png_jmpbuf(r->png))) return fail(r, QAREP_DECODE_CORRUPT, r->text, message, capacity);
    int color_type = png_get_color_type(r->png, r->info);
    /* Palette and low-bit gray to 8 bits, 16 bits to the high byte, alpha (and tRNS) dropped, gray to RGB:
       what PIL's convert("RGB") gives for 8-bit files; no gamma conversion, as PIL. */
    png_set_expand(r->png);
    png_set_strip_16(r->png);
    png_set_strip_alpha(r->png);
    if (color_type == PNG_COLOR_TYPE_GRAY || color_type == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(r->png);
    int passes = png_set_interlace_handling(r->png);
    png_read_update_info(r->png, r->info);
    r->out_width = r->width;
    r->out_height = r->height;
    if (png_get_channels(r->png, r->info) != 3 || png_get_bit_depth(r->png, r->info) != 8 ||
        png_get_rowbytes(r->png, r->info) != (size_t)r->width * 3) {
        return fail(r, QAREP_DECODE_UNSUPPORTED, "PNG did not convert to 8-bit RGB", message, capacity);
    }
    if (passes > 1) {
        /* Adam7: rows are complete only after the last pass, so the whole image is held. */
        int64_t bytes = (int64_t)r->width * r->height * 3 + (int64_t)r->height * (int64_t)sizeof(png_bytep);
        if (bytes > r->max_memory) {
            snprintf(r->text, sizeof(r->text), "interlaced PNG of %dx%d needs %lld MB, above the %lld MB memory limit",
                     r->width, r->height, (long long)(bytes >> 20), (long long)(r->max_memory >> 20));
            return fail(r, QAREP_DECODE_TOO_LARGE, r->text, message, capacity);
        }
        r->whole = malloc((size_t)r->width * (size_t)r->height * 3);
        png_bytep *rows = malloc((size_t)r->height * sizeof(png_bytep));
        if (r->whole == NULL || rows == NULL) {
            free(rows);
            return fail(r, QAREP_DECODE_OUT_OF_MEMORY, "out of memory", message, capacity);
        }
        for (int y = 0; y < r->height; y++) rows[y] = r->whole + (size_t)y * (size_t)r->width * 3;
        if (setjmp(png_jmpbuf(r->png))) {
            free(rows);
            return fail(r, QAREP_DECODE_CORRUPT, r->text, message, capacity);
        }
        png_read_image(r->png, rows);
        free(rows);
    }
    return QAREP_DECODE_OK;
}

static qarep_decode_status png_row(qarep_image_reader *r, uint8_t *row, char *message, size_t capacity) {
    if (r->whole != NULL) {
        memcpy(row, r->whole + (size_t)r->rows_read * (size_t)r->out_width * 3, (size_t)r->out_width * 3);
        return QAREP_DECODE_OK;
    }
    if (setjmp(png_jmpbuf(r->png))) return fail(r, QAREP_DECODE_CORRUPT, r->text, message, capacity);
    png_read_row(r->png, row, NULL);
    if (r->rows_read + 1 == r->out_height) png_read_end(r->png, NULL);
    return QAREP_DECODE_OK;
}

/* ---- WebP ---- */

static qarep_decode_status webp_open(qarep_image_reader *r, char *message, size_t capacity) {
    if (!WebPInitDecoderConfig(&r->webp)) return fail(r, QAREP_DECODE_UNSUPPORTED, "libwebp version mismatch", message, capacity);
    VP8StatusCode status = WebPGetFeatures(r->data, r->size, &r->webp.input);
    if (status != VP8_STATUS_OK) {
        snprintf(r->text, sizeof(r->text), "%s", status == VP8_STATUS_NOT_ENOUGH_DATA ? "truncated WebP header" : "invalid WebP header");
        return fail(r, QAREP_DECODE_CORRUPT, r->text, message, capacity);
    }
    if (r->webp.input.has_animation) return fail(r, QAREP_DECODE_UNSUPPORTED, "animated WebP", message, capacity);
    r->width = r->webp.input.width;
    r->height = r->webp.input.height;
    return QAREP_DECODE_OK;
}

static qarep_decode_status webp_start(qarep_image_reader *r, int denominator, char *message, size_t capacity) {
    r->out_width = (r->width + denominator - 1) / denominator;
    r->out_height = (r->height + denominator - 1) / denominator;
    /* libwebp decodes into one output image; a lossless file also holds its ARGB image at full size. */
    int64_t bytes = (int64_t)r->out_width * r->out_height * 3;
    if (r->webp.input.format == 2) bytes += (int64_t)r->width * r->height * 4;
    if (bytes > r->max_memory) {
        snprintf(r->text, sizeof(r->text), "WebP of %dx%d needs %lld MB to decode at 1/%d, above the %lld MB memory limit",
                 r->width, r->height, (long long)(bytes >> 20), denominator, (long long)(r->max_memory >> 20));
        return fail(r, QAREP_DECODE_TOO_LARGE, r->text, message, capacity);
    }
    r->webp.output.colorspace = MODE_RGB;
    if (denominator > 1) {
        r->webp.options.use_scaling = 1;
        r->webp.options.scaled_width = r->out_width;
        r->webp.options.scaled_height = r->out_height;
    }
    VP8StatusCode status = WebPDecode(r->data, r->size, &r->webp);
    r->webp_decoded = 1;
    if (status != VP8_STATUS_OK) {
        snprintf(r->text, sizeof(r->text), "%s (libwebp status %d)",
                 status == VP8_STATUS_NOT_ENOUGH_DATA ? "truncated WebP" : "corrupt WebP", (int)status);
        return fail(r, status == VP8_STATUS_OUT_OF_MEMORY ? QAREP_DECODE_OUT_OF_MEMORY : QAREP_DECODE_CORRUPT, r->text, message,
                    capacity);
    }
    return QAREP_DECODE_OK;
}

static qarep_decode_status webp_row(qarep_image_reader *r, uint8_t *row) {
    const WebPRGBABuffer *buffer = &r->webp.output.u.RGBA;
    memcpy(row, buffer->rgba + (size_t)r->rows_read * (size_t)buffer->stride, (size_t)r->out_width * 3);
    return QAREP_DECODE_OK;
}

/* ---- entry points ---- */

qarep_decode_status qarep_image_reader_open(const uint8_t *data, size_t size, int64_t max_memory,
                                            qarep_image_reader **reader, int *width, int *height,
                                            char *message, size_t message_capacity) {
    if (reader == NULL || width == NULL || height == NULL) {
        copy_message(message, message_capacity, "invalid arguments");
        return QAREP_DECODE_CORRUPT;
    }
    *reader = NULL;
    if (data == NULL || size == 0) {
        copy_message(message, message_capacity, "empty file");
        return QAREP_DECODE_CORRUPT;
    }
    qarep_image_format format = qarep_image_detect(data, size);
    if (format == QAREP_IMAGE_UNKNOWN) {
        copy_message(message, message_capacity, "not a JPEG, PNG or WebP file (unrecognized signature)");
        return QAREP_DECODE_UNSUPPORTED;
    }
    qarep_image_reader *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        copy_message(message, message_capacity, "out of memory");
        return QAREP_DECODE_OUT_OF_MEMORY;
    }
    *reader = r;
    r->format = format;
    r->data = data;
    r->size = size;
    r->max_memory = max_memory > 0 ? max_memory : INT64_MAX;
    if (r->max_memory > (int64_t)(((unsigned long)-1) >> 1)) r->max_memory = (int64_t)(((unsigned long)-1) >> 1);
    qarep_decode_status status;
    switch (format) {
    case QAREP_IMAGE_JPEG: status = jpeg_open(r, message, message_capacity); break;
    case QAREP_IMAGE_PNG: status = png_open(r, message, message_capacity); break;
    default: status = webp_open(r, message, message_capacity); break;
    }
    if (status == QAREP_DECODE_OK && (r->width <= 0 || r->height <= 0)) {
        status = fail(r, QAREP_DECODE_CORRUPT, "image has no pixels", message, message_capacity);
    }
    *width = r->width;
    *height = r->height;
    return status;
}

int qarep_image_reader_can_scale(const qarep_image_reader *reader) {
    return reader != NULL && (reader->format == QAREP_IMAGE_JPEG || reader->format == QAREP_IMAGE_WEBP);
}

qarep_decode_status qarep_image_reader_start(qarep_image_reader *reader, int denominator, int *out_width,
                                             int *out_height, char *message, size_t message_capacity) {
    if (reader == NULL || reader->failed || reader->started || out_width == NULL || out_height == NULL) {
        copy_message(message, message_capacity, "reader not ready to start");
        return QAREP_DECODE_CORRUPT;
    }
    if (!(denominator == 1 || denominator == 2 || denominator == 4 || denominator == 8) ||
        (denominator != 1 && !qarep_image_reader_can_scale(reader))) {
        copy_message(message, message_capacity, "unsupported scale");
        return QAREP_DECODE_UNSUPPORTED;
    }
    reader->started = 1;
    qarep_decode_status status;
    switch (reader->format) {
    case QAREP_IMAGE_JPEG: status = jpeg_start(reader, denominator, message, message_capacity); break;
    case QAREP_IMAGE_PNG: status = png_start(reader, message, message_capacity); break;
    default: status = webp_start(reader, denominator, message, message_capacity); break;
    }
    *out_width = reader->out_width;
    *out_height = reader->out_height;
    return status;
}

qarep_decode_status qarep_image_reader_read_row(qarep_image_reader *reader, uint8_t *row, char *message,
                                                size_t message_capacity) {
    if (reader == NULL || row == NULL || reader->failed || !reader->started || reader->rows_read >= reader->out_height) {
        copy_message(message, message_capacity, "no row to read");
        return QAREP_DECODE_CORRUPT;
    }
    qarep_decode_status status;
    switch (reader->format) {
    case QAREP_IMAGE_JPEG: status = jpeg_row(reader, row, message, message_capacity); break;
    case QAREP_IMAGE_PNG: status = png_row(reader, row, message, message_capacity); break;
    default: status = webp_row(reader, row); break;
    }
    if (status == QAREP_DECODE_OK) reader->rows_read++;
    return status;
}

void qarep_image_reader_close(qarep_image_reader *reader) {
    if (reader == NULL) return;
    if (reader->jpeg_created) jpeg_destroy_decompress(&reader->cinfo);
    free(reader->cmyk_row);
    if (reader->png != NULL) png_destroy_read_struct(&reader->png, reader->info != NULL ? &reader->info : NULL, NULL);
    free(reader->whole);
    if (reader->webp_decoded) WebPFreeDecBuffer(&reader->webp.output);
    free(reader);
}

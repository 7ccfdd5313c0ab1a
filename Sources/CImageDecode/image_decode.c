#include "qarep_image_decode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

static void copy_message(char *message, size_t capacity, const char *text) {
    if (message == NULL || capacity == 0) return;
    snprintf(message, capacity, "%s", text);
}

static int dimensions_allowed(int64_t width, int64_t height, int max_side, int64_t max_pixels) {
    return width > 0 && height > 0 && width <= max_side && height <= max_side && width * height <= max_pixels;
}

/* ---- JPEG ---- */

struct jpeg_error_context {
    struct jpeg_error_mgr manager;  /* first member: libjpeg hands back a pointer to it */
    jmp_buf resume;
    char text[JMSG_LENGTH_MAX];
};

static void jpeg_error_to_longjmp(j_common_ptr cinfo) {
    struct jpeg_error_context *context = (struct jpeg_error_context *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, context->text);
    longjmp(context->resume, 1);
}

/* Warnings must not print to stderr. Most (e.g. extraneous bytes before a marker) are common in real photo
   collections and harmless, as other decoders treat them; premature end of data, which libjpeg would pad with
   gray, makes a truncated file an error instead of a silently half-gray image. */
static void jpeg_warning_to_error(j_common_ptr cinfo, int level) {
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
        struct jpeg_error_context *context = (struct jpeg_error_context *)cinfo->err;
        (*cinfo->err->format_message)(cinfo, context->text);
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

qarep_decode_status qarep_decode_jpeg(const uint8_t *data, size_t size, int max_side, int64_t max_pixels,
                                      qarep_decoded_image *out, char *message, size_t message_capacity) {
    /* volatile: modified between setjmp and a possible longjmp. */
    uint8_t *volatile pixels = NULL;
    uint8_t *volatile cmyk_row = NULL;
    struct jpeg_decompress_struct cinfo;
    struct jpeg_error_context error;
    qarep_decode_status status = QAREP_DECODE_OK;

    if (out == NULL || data == NULL || size == 0) {
        copy_message(message, message_capacity, "empty input");
        return QAREP_DECODE_CORRUPT;
    }
    memset(out, 0, sizeof(*out));
    memset(&cinfo, 0, sizeof(cinfo));
    cinfo.err = jpeg_std_error(&error.manager);
    error.manager.error_exit = jpeg_error_to_longjmp;
    error.manager.emit_message = jpeg_warning_to_error;
    error.text[0] = 0;
    if (setjmp(error.resume)) {
        copy_message(message, message_capacity, error.text);
        jpeg_destroy_decompress(&cinfo);
        free(pixels);
        free(cmyk_row);
        return QAREP_DECODE_CORRUPT;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    if (!dimensions_allowed(cinfo.image_width, cinfo.image_height, max_side, max_pixels)) {
        snprintf(message, message_capacity, "image is %ux%u, above the limit", cinfo.image_width, cinfo.image_height);
        jpeg_destroy_decompress(&cinfo);
        return QAREP_DECODE_TOO_LARGE;
    }
    int is_cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    cinfo.out_color_space = is_cmyk ? JCS_CMYK : JCS_RGB;
    jpeg_start_decompress(&cinfo);
    int width = (int)cinfo.output_width, height = (int)cinfo.output_height;
    if (cinfo.output_components != (is_cmyk ? 4 : 3)) {
        copy_message(message, message_capacity, "unsupported JPEG color space");
        jpeg_destroy_decompress(&cinfo);
        return QAREP_DECODE_UNSUPPORTED;
    }
    pixels = malloc((size_t)width * (size_t)height * 3);
    if (is_cmyk) cmyk_row = malloc((size_t)width * 4);
    if (pixels == NULL || (is_cmyk && cmyk_row == NULL)) {
        status = QAREP_DECODE_OUT_OF_MEMORY;
        copy_message(message, message_capacity, "out of memory");
    } else {
        while (cinfo.output_scanline < cinfo.output_height) {
            uint8_t *row = pixels + (size_t)cinfo.output_scanline * (size_t)width * 3;
            JSAMPROW target = is_cmyk ? cmyk_row : row;
            if (jpeg_read_scanlines(&cinfo, &target, 1) != 1) {
                longjmp(error.resume, 1);  /* cannot happen with a memory source; treated as corruption */
            }
            if (is_cmyk) cmyk_row_to_rgb(cmyk_row, row, width, cinfo.saw_Adobe_marker);
        }
        jpeg_finish_decompress(&cinfo);
    }
    jpeg_destroy_decompress(&cinfo);
    free(cmyk_row);
    if (status != QAREP_DECODE_OK) {
        free(pixels);
        return status;
    }
    out->pixels = pixels;
    out->width = width;
    out->height = height;
    return QAREP_DECODE_OK;
}

/* ---- PNG ---- */

qarep_decode_status qarep_decode_png(const uint8_t *data, size_t size, int max_side, int64_t max_pixels,
                                     qarep_decoded_image *out, char *message, size_t message_capacity) {
    if (out == NULL || data == NULL || size == 0) {
        copy_message(message, message_capacity, "empty input");
        return QAREP_DECODE_CORRUPT;
    }
    memset(out, 0, sizeof(*out));
    png_image image;
    memset(&image, 0, sizeof(image));
    image.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&image, data, size)) {
        copy_message(message, message_capacity, image.message);
        png_image_free(&image);
        return QAREP_DECODE_CORRUPT;
    }
    if (!dimensions_allowed(image.width, image.height, max_side, max_pixels)) {
        snprintf(message, message_capacity, "image is %ux%u, above the limit", image.width, image.height);
        png_image_free(&image);
        return QAREP_DECODE_TOO_LARGE;
    }
    /* 8-bit sRGB RGBA output is not premultiplied, so dropping alpha leaves the stored colors. */
    image.format = PNG_FORMAT_RGBA;
    size_t width = image.width, height = image.height;
    uint8_t *rgba = malloc(width * height * 4);
    uint8_t *pixels = malloc(width * height * 3);
    if (rgba == NULL || pixels == NULL) {
        free(rgba);
        free(pixels);
        png_image_free(&image);
        copy_message(message, message_capacity, "out of memory");
        return QAREP_DECODE_OUT_OF_MEMORY;
    }
    if (!png_image_finish_read(&image, NULL, rgba, (png_int_32)(width * 4), NULL)) {
        copy_message(message, message_capacity, image.message);
        free(rgba);
        free(pixels);
        png_image_free(&image);
        return QAREP_DECODE_CORRUPT;
    }
    for (size_t i = 0; i < width * height; i++) {
        pixels[3 * i] = rgba[4 * i];
        pixels[3 * i + 1] = rgba[4 * i + 1];
        pixels[3 * i + 2] = rgba[4 * i + 2];
    }
    free(rgba);
    png_image_free(&image);
    out->pixels = pixels;
    out->width = (int)width;
    out->height = (int)height;
    return QAREP_DECODE_OK;
}

void qarep_decoded_image_free(qarep_decoded_image *image) {
    if (image == NULL) return;
    free(image->pixels);
    image->pixels = NULL;
}

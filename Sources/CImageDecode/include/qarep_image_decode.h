// Decoding of JPEG and PNG into packed RGB8 for the offline tools. libjpeg reports errors through an
// error_exit callback that must not return, which Swift cannot implement safely (no longjmp out of Swift
// frames), so the whole decode runs here, in C, behind a setjmp boundary; PNG uses libpng's simplified API.
#ifndef QAREP_IMAGE_DECODE_H
#define QAREP_IMAGE_DECODE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    QAREP_DECODE_OK = 0,
    QAREP_DECODE_CORRUPT = 1,      /* the codec rejected the data; message says why */
    QAREP_DECODE_TOO_LARGE = 2,    /* declared dimensions exceed the caller's limits (nothing allocated) */
    QAREP_DECODE_OUT_OF_MEMORY = 3,
    QAREP_DECODE_UNSUPPORTED = 4,  /* e.g. a JPEG color space we cannot turn into RGB */
} qarep_decode_status;

typedef struct {
    uint8_t *pixels;  /* width * height * 3 bytes, RGB, row-major; free with qarep_decoded_image_free */
    int width;
    int height;
} qarep_decoded_image;

/* Checked before any pixel buffer is allocated: each side <= max_side and width * height <= max_pixels. */
qarep_decode_status qarep_decode_jpeg(const uint8_t *data, size_t size, int max_side, int64_t max_pixels,
                                      qarep_decoded_image *out, char *message, size_t message_capacity);
/* Alpha is dropped (not composited), as PIL's convert("RGB") does; palette and gray become RGB. */
qarep_decode_status qarep_decode_png(const uint8_t *data, size_t size, int max_side, int64_t max_pixels,
                                     qarep_decoded_image *out, char *message, size_t message_capacity);
void qarep_decoded_image_free(qarep_decoded_image *image);

#ifdef __cplusplus
}
#endif
#endif

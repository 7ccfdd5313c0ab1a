// A row reader for JPEG, PNG and WebP: open (header), start (at a scale), one RGB row at a time, close.
// libjpeg and libpng report errors by longjmp; each entry point sets its own setjmp in its own frame, so an
// error in any of them comes back as a status, never unwinds a caller's (Swift) frame. A reader that
// returned an error must still be closed, and only closed.
#ifndef QAREP_IMAGE_READER_H
#define QAREP_IMAGE_READER_H

#include <stddef.h>
#include <stdint.h>

#include "qarep_image_decode.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    QAREP_IMAGE_UNKNOWN = 0,
    QAREP_IMAGE_JPEG = 1,
    QAREP_IMAGE_PNG = 2,
    QAREP_IMAGE_WEBP = 3,
} qarep_image_format;

typedef struct qarep_image_reader qarep_image_reader;

/* By signature, not by name. */
qarep_image_format qarep_image_detect(const uint8_t *data, size_t size);

/* Reads the header. `data` must stay valid until close. `max_memory` bounds what the codec may hold beyond
   one row: libjpeg's whole-image coefficient buffers (progressive and multi-scan files, full size whatever the
   scale), an interlaced PNG's whole image, a WebP's output image and a lossless WebP's internal ARGB image.
   `*width`, `*height`: the nominal size. On error, *reader may be non-NULL and must be closed. */
qarep_decode_status qarep_image_reader_open(const uint8_t *data, size_t size, int64_t max_memory,
                                            qarep_image_reader **reader, int *width, int *height,
                                            char *message, size_t message_capacity);

/* Whether the format can shrink while decoding (JPEG: 1/2, 1/4, 1/8 in the DCT domain; WebP: its rescaler). */
int qarep_image_reader_can_scale(const qarep_image_reader *reader);

/* Starts decoding at scale 1/denominator (1, 2, 4 or 8; 1 for PNG). The output is ceil(width / denominator) x
   ceil(height / denominator), written to *out_width, *out_height. */
qarep_decode_status qarep_image_reader_start(qarep_image_reader *reader, int denominator, int *out_width,
                                             int *out_height, char *message, size_t message_capacity);

/* The next output row, out_width * 3 bytes of RGB (gray, palette and CMYK converted; alpha dropped, 16-bit
   reduced to its high byte). */
qarep_decode_status qarep_image_reader_read_row(qarep_image_reader *reader, uint8_t *row, char *message,
                                                size_t message_capacity);

void qarep_image_reader_close(qarep_image_reader *reader);

#ifdef __cplusplus
}
#endif
#endif

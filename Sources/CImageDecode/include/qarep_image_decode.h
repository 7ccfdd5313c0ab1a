// Decoding of JPEG, PNG and WebP into RGB8 rows for the offline tools. libjpeg and libpng report errors
// through callbacks that must not return, which Swift cannot implement safely (no longjmp out of Swift
// frames), so every call into them runs here, in C, behind a setjmp in the calling frame.
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
    QAREP_DECODE_TOO_LARGE = 2,    /* decoding would hold more memory than the caller's limit */
    QAREP_DECODE_OUT_OF_MEMORY = 3,
    QAREP_DECODE_UNSUPPORTED = 4,  /* e.g. a JPEG color space we cannot turn into RGB */
} qarep_decode_status;

/* The decoder itself is the row reader in qarep_image_reader.h. */

#ifdef __cplusplus
}
#endif
#endif

// jpeglib.h needs stdio.h (FILE, size_t) before it.
#include <stdio.h>
#include <stddef.h>
#include <setjmp.h>
#include <jpeglib.h>
#include <png.h>
#include <webp/encode.h>
#include <webp/decode.h>

/*
 * classify - the QARep C API end to end: load a model, decode JPEG/PNG files, preprocess them to the
 * model's input, run them in batches and print the top-5 classes of each.
 *
 *   classify MODEL.qarep [OPTIONS] IMAGE.jpg|IMAGE.png...
 *   classify MODEL.qarep [OPTIONS] --random N
 *   classify --list-kernels
 *
 * Options: --threads N, --batch N, --kernel NAME (force a CPU path), --winograd auto|no-4x4|off (what the
 * packed weights may give up for memory, QAREP_LOAD_*; the same results), --logits (print every logit's float
 * bits after the top-5, for bitwise comparisons), --timing (load, session-create and per-batch times, the packed
 * weights' size and the peak RSS, on stderr). --list-kernels prints the paths this CPU runs, as the library
 * numbers them.
 *
 * --random N classifies N images of random pixels and random sizes instead of files: CI has a model
 * (bench --save) but no image files, and the random sizes still exercise qarep_model_preprocess.
 * Built with -DCLASSIFY_NO_CODECS (make NO_CODECS=1) it has --random only and needs neither libjpeg nor
 * libpng: a cross build has the target's libc and libqarep but not its image libraries.
 *
 * The same file compiles as C99 and as C++ (make cpp), so it sticks to the common subset: explicit casts
 * from void *, no designated initializers, no variable-length arrays.
 */
/* clock_gettime and getrusage are POSIX, outside strict C99. */
#define _POSIX_C_SOURCE 200809L
#include <qarep.h>

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#ifndef CLASSIFY_NO_CODECS
#include <jpeglib.h> /* needs stdio.h first */
#include <png.h>
#endif

enum { TOP_K = 5, ERROR_TEXT_SIZE = 256 };

/* Decoded images larger than this are refused before allocating: a corrupt header must not be able to
   ask for gigabytes. */
#define MAX_IMAGE_SIDE 16384u
#define MAX_IMAGE_PIXELS (64u * 1024u * 1024u)

typedef struct rgb_image {
    unsigned char *pixels; /* height rows of width * 3 bytes */
    int width;
    int height;
} rgb_image;

#ifndef CLASSIFY_NO_CODECS
static int image_size_ok(unsigned long width, unsigned long height, char *error) {
    if (width == 0 || height == 0 || width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE ||
        width * height > MAX_IMAGE_PIXELS) {
        snprintf(error, ERROR_TEXT_SIZE, "image size %lux%lu is outside the supported range", width, height);
        return 0;
    }
    return 1;
}

/* ---- JPEG (libjpeg-turbo) ----------------------------------------------------------------------- */

/* libjpeg's default error_exit calls exit(); this one jumps back to the decoder with the message. */
typedef struct jpeg_error_trap {
    struct jpeg_error_mgr manager; /* first, so a j_common_ptr's err can be cast to this */
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
} jpeg_error_trap;

static void jpeg_trap_error_exit(j_common_ptr info) {
    jpeg_error_trap *trap = (jpeg_error_trap *)info->err;
    (*info->err->format_message)(info, trap->message);
    longjmp(trap->jump, 1);
}

/* Warnings (level -1) mean corrupt data, e.g. a truncated file that libjpeg would pad with gray: treat
   them as errors rather than classify a half-gray picture. Trace messages (level >= 0) are ignored. */
static void jpeg_trap_emit_message(j_common_ptr info, int level) {
    if (level < 0) jpeg_trap_error_exit(info);
}

static int load_jpeg(FILE *file, rgb_image *out, char *error) {
    struct jpeg_decompress_struct decoder;
    jpeg_error_trap trap;
    /* volatile: assigned after setjmp and freed after a longjmp back to it. */
    unsigned char *volatile pixels = NULL;

    decoder.err = jpeg_std_error(&trap.manager);
    trap.manager.error_exit = jpeg_trap_error_exit;
    trap.manager.emit_message = jpeg_trap_emit_message;
    if (setjmp(trap.jump)) {
        snprintf(error, ERROR_TEXT_SIZE, "JPEG: %s", trap.message);
        jpeg_destroy_decompress(&decoder);
        free(pixels);
        return 0;
    }
    jpeg_create_decompress(&decoder);
    jpeg_stdio_src(&decoder, file);
    jpeg_read_header(&decoder, TRUE);
    if (!image_size_ok(decoder.image_width, decoder.image_height, error)) {
        jpeg_destroy_decompress(&decoder);
        return 0;
    }
    decoder.out_color_space = JCS_RGB; /* grayscale and YCbCr both come out as RGB */
    jpeg_start_decompress(&decoder);
    {
        const size_t row_bytes = (size_t)decoder.output_width * 3;
        pixels = (unsigned char *)malloc(row_bytes * decoder.output_height);
        if (pixels == NULL) {
            snprintf(error, ERROR_TEXT_SIZE, "out of memory");
            jpeg_destroy_decompress(&decoder);
            return 0;
        }
        while (decoder.output_scanline < decoder.output_height) {
            JSAMPROW row = pixels + (size_t)decoder.output_scanline * row_bytes;
            jpeg_read_scanlines(&decoder, &row, 1);
        }
    }
    jpeg_finish_decompress(&decoder);
    out->pixels = pixels;
    out->width = (int)decoder.output_width;
    out->height = (int)decoder.output_height;
    jpeg_destroy_decompress(&decoder);
    return 1;
}

/* ---- PNG (libpng's simplified API: no setjmp needed, errors come back in image.message) ---------- */

static int load_png(const char *path, rgb_image *out, char *error) {
    png_image image;
    unsigned char *pixels;

    memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&image, path)) {
        snprintf(error, ERROR_TEXT_SIZE, "PNG: %s", image.message);
        return 0;
    }
    if (!image_size_ok(image.width, image.height, error)) {
        png_image_free(&image);
        return 0;
    }
    /* RGB without alpha: transparent pixels are composited onto black, as libpng does with no background. */
    image.format = PNG_FORMAT_RGB;
    pixels = (unsigned char *)malloc(PNG_IMAGE_SIZE(image));
    if (pixels == NULL) {
        snprintf(error, ERROR_TEXT_SIZE, "out of memory");
        png_image_free(&image);
        return 0;
    }
    if (!png_image_finish_read(&image, NULL, pixels, 0, NULL)) {
        snprintf(error, ERROR_TEXT_SIZE, "PNG: %s", image.message);
        png_image_free(&image);
        free(pixels);
        return 0;
    }
    out->pixels = pixels;
    out->width = (int)image.width;
    out->height = (int)image.height;
    return 1;
}

/* Picks the decoder by the file's signature, not its name. */
static int load_image(const char *path, rgb_image *out, char *error) {
    static const unsigned char jpeg_signature[3] = {0xFF, 0xD8, 0xFF};
    static const unsigned char png_signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    unsigned char head[8];
    size_t head_size;
    int ok = 0;
    FILE *file = fopen(path, "rb");

    if (file == NULL) {
        snprintf(error, ERROR_TEXT_SIZE, "cannot open the file");
        return 0;
    }
    head_size = fread(head, 1, sizeof head, file);
    if (head_size >= sizeof jpeg_signature && memcmp(head, jpeg_signature, sizeof jpeg_signature) == 0) {
        rewind(file);
        ok = load_jpeg(file, out, error);
    } else if (head_size == sizeof png_signature && memcmp(head, png_signature, sizeof png_signature) == 0) {
        ok = load_png(path, out, error);
    } else {
        snprintf(error, ERROR_TEXT_SIZE, "not a JPEG or PNG file");
    }
    fclose(file);
    return ok;
}
#else
static int load_image(const char *path, rgb_image *out, char *error) {
    (void)path;
    (void)out;
    snprintf(error, ERROR_TEXT_SIZE, "this build has no JPEG/PNG decoding (CLASSIFY_NO_CODECS); use --random");
    return 0;
}
#endif

/* ---- Timing (--timing) --------------------------------------------------------------------------- */

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* ru_maxrss is in kilobytes on Linux. */
static double peak_rss_mb(void) {
    struct rusage usage;
    if (getrusage(RUSAGE_SELF, &usage) != 0) return -1.0;
    return (double)usage.ru_maxrss / 1024.0;
}

/* Random pixels at a random size between 64 and 511 per side, so preprocessing has real work to do. */
static int make_random_image(rgb_image *out, unsigned *state) {
    size_t i, count;
    *state = *state * 1103515245u + 12345u;
    out->width = 64 + (int)((*state >> 16) % 448u);
    *state = *state * 1103515245u + 12345u;
    out->height = 64 + (int)((*state >> 16) % 448u);
    count = (size_t)out->width * (size_t)out->height * 3;
    out->pixels = (unsigned char *)malloc(count);
    if (out->pixels == NULL) return 0;
    for (i = 0; i < count; i++) {
        *state = *state * 1103515245u + 12345u;
        out->pixels[i] = (unsigned char)(*state >> 16);
    }
    return 1;
}

/* ---- Classification ------------------------------------------------------------------------------ */

static void print_api_error(const char *what, qarep_status status) {
    fprintf(stderr, "classify: %s: %s: %s\n", what, qarep_status_string(status), qarep_last_error_message());
}

typedef struct run_report {
    int timing;      /* print each batch's run time on stderr */
    int logits;      /* print each image's logits as float bit patterns */
    int batches;     /* batches run so far */
    float *logits_buffer; /* batch * classes floats, for --logits */
    int32_t classes;
} run_report;

/* Runs the first `count` images of the batch buffer and prints their top-5. */
static int classify_batch(qarep_session *session, const unsigned char *batch_pixels, size_t image_bytes,
                          int count, const char *const *names, run_report *report) {
    int i, k;
    double started = now_ms();
    qarep_status status = qarep_session_run_u8(session, batch_pixels, image_bytes * (size_t)count, count);
    if (status != QAREP_OK) {
        print_api_error("run", status);
        return 0;
    }
    report->batches++;
    if (report->timing) {
        fprintf(stderr, "classify: timing: run %d (batch %d) %.3f ms\n", report->batches, count, now_ms() - started);
    }
    if (report->logits) {
        status = qarep_session_get_logits(session, report->logits_buffer, (size_t)count * (size_t)report->classes);
        if (status != QAREP_OK) {
            print_api_error("get_logits", status);
            return 0;
        }
    }
    for (i = 0; i < count; i++) {
        qarep_prediction top[TOP_K];
        int32_t found = 0;
        status = qarep_session_top_k(session, i, TOP_K, top, &found);
        if (status != QAREP_OK) {
            print_api_error("top_k", status);
            return 0;
        }
        printf("%s\n", names[i]);
        for (k = 0; k < found; k++) {
            printf("  %d. %6.2f%%  %s (%d)\n", k + 1, 100.0 * top[k].probability, top[k].label,
                   (int)top[k].class_index);
        }
        if (report->logits) {
            /* The bit patterns, so that two builds compare exactly (a printed decimal could round). */
            const float *row = report->logits_buffer + (size_t)i * (size_t)report->classes;
            printf("  logits:");
            for (k = 0; k < report->classes; k++) {
                uint32_t bits;
                memcpy(&bits, &row[k], sizeof bits);
                printf(" %08lx", (unsigned long)bits);
            }
            printf("\n");
        }
    }
    return 1;
}

static int parse_count(const char *text, long minimum, long *out) {
    char *end;
    long value = strtol(text, &end, 10);
    if (*text == '\0' || *end != '\0' || value < minimum || value > 1000000) return 0;
    *out = value;
    return 1;
}

static void usage(void) {
    fprintf(stderr,
            "usage: classify MODEL.qarep [OPTIONS] IMAGE.jpg|IMAGE.png...\n"
            "       classify MODEL.qarep [OPTIONS] --random N\n"
            "       classify --list-kernels\n"
            "options: --threads N  --batch N  --kernel NAME  --winograd auto|no-4x4|off  --logits  --timing\n");
}

/* The paths this CPU runs, from the library's own numbering 1..qarep_kernel_count(). */
static int list_kernels(void) {
    int32_t value, count = qarep_kernel_count();
    for (value = 1; value <= count; value++) {
        if (qarep_kernel_supported((qarep_kernel)value)) printf("%s\n", qarep_kernel_name((qarep_kernel)value));
    }
    return 0;
}

int main(int argc, char **argv) {
    long threads = 0, batch_size = 8, random_count = 0;
    int first_image = argc, arg, failures = 0, image_count, filled = 0, next;
    qarep_model *model = NULL;
    qarep_session *session = NULL;
    qarep_model_info info;
    qarep_session_options options;
    qarep_status status;
    unsigned char *batch_pixels = NULL;
    const char **batch_names = NULL;
    char (*random_names)[32] = NULL;
    size_t image_bytes;
    unsigned random_state = 12345u;
    const char *kernel_name = NULL;
    uint32_t load_flags = 0;
    size_t packed_bytes = 0;
    run_report report;
    double started;

    memset(&report, 0, sizeof report);
    if (argc == 2 && strcmp(argv[1], "--list-kernels") == 0) return list_kernels();
    if (argc < 3) {
        usage();
        return 2;
    }
    for (arg = 2; arg < argc; arg++) {
        long *target = NULL;
        long minimum = 1;
        if (strcmp(argv[arg], "--timing") == 0) {
            report.timing = 1;
            continue;
        } else if (strcmp(argv[arg], "--logits") == 0) {
            report.logits = 1;
            continue;
        } else if (strcmp(argv[arg], "--kernel") == 0) {
            if (arg + 1 >= argc) {
                fprintf(stderr, "classify: --kernel needs a name\n");
                return 2;
            }
            kernel_name = argv[++arg];
            continue;
        } else if (strcmp(argv[arg], "--winograd") == 0) {
            const char *choice = arg + 1 < argc ? argv[++arg] : "";
            if (strcmp(choice, "auto") == 0) {
                load_flags = 0;
            } else if (strcmp(choice, "no-4x4") == 0) {
                load_flags = QAREP_LOAD_NO_WINOGRAD_4X4;
            } else if (strcmp(choice, "off") == 0) {
                load_flags = QAREP_LOAD_NO_WINOGRAD;
            } else {
                fprintf(stderr, "classify: --winograd takes auto, no-4x4 or off\n");
                return 2;
            }
            continue;
        } else if (strcmp(argv[arg], "--threads") == 0) {
            target = &threads;
            minimum = 0;
        } else if (strcmp(argv[arg], "--batch") == 0) {
            target = &batch_size;
        } else if (strcmp(argv[arg], "--random") == 0) {
            target = &random_count;
        } else {
            first_image = arg;
            break;
        }
        if (arg + 1 >= argc || !parse_count(argv[arg + 1], minimum, target)) {
            fprintf(stderr, "classify: %s needs a number\n", argv[arg]);
            return 2;
        }
        arg++;
    }
    image_count = random_count > 0 ? (int)random_count : argc - first_image;
    if (image_count == 0 || (random_count > 0 && first_image < argc)) {
        usage();
        return 2;
    }

    started = now_ms();
    status = qarep_model_load_file_with_flags(argv[1], load_flags, &model);
    if (status != QAREP_OK) {
        print_api_error(argv[1], status);
        return 1;
    }
    if (report.timing) {
        fprintf(stderr, "classify: timing: load %.3f ms\n", now_ms() - started);
        if (qarep_model_packed_bytes(model, &packed_bytes) == QAREP_OK)
            fprintf(stderr, "classify: packed weights %.1f MiB\n", (double)packed_bytes / 1048576.0);
    }
    status = qarep_model_get_info(model, &info);
    if (status != QAREP_OK) {
        print_api_error("model info", status);
        qarep_model_release(model);
        return 1;
    }
    if (batch_size > image_count) batch_size = image_count;
    options = qarep_session_options_default();
    options.num_threads = (int32_t)threads;
    options.max_batch = (int32_t)batch_size;
    if (kernel_name != NULL) {
        status = qarep_kernel_from_name(kernel_name, &options.kernel);
        if (status != QAREP_OK) {
            print_api_error("--kernel", status);
            qarep_model_release(model);
            return 2;
        }
    }
    started = now_ms();
    status = qarep_session_create(model, &options, &session);
    if (status != QAREP_OK) {
        print_api_error("session", status);
        qarep_model_release(model);
        return 1;
    }
    if (report.timing) fprintf(stderr, "classify: timing: session create %.3f ms\n", now_ms() - started);
    fprintf(stderr, "classify: QARep %s, %dx%d input, %d classes, kernel %s\n", qarep_version_string(),
            (int)info.input_width, (int)info.input_height, (int)info.num_classes,
            qarep_kernel_name(qarep_session_kernel(session)));

    image_bytes = (size_t)info.input_height * (size_t)info.input_width * 3;
    batch_pixels = (unsigned char *)malloc(image_bytes * (size_t)batch_size);
    batch_names = (const char **)malloc(sizeof(const char *) * (size_t)batch_size);
    if (random_count > 0) random_names = (char (*)[32])malloc(sizeof *random_names * (size_t)random_count);
    report.classes = info.num_classes;
    if (report.logits) report.logits_buffer = (float *)malloc(sizeof(float) * (size_t)batch_size * (size_t)info.num_classes);
    if (batch_pixels == NULL || batch_names == NULL || (random_count > 0 && random_names == NULL) ||
        (report.logits && report.logits_buffer == NULL)) {
        fprintf(stderr, "classify: out of memory\n");
        failures = 1;
        goto done;
    }

    for (next = 0; next < image_count; next++) {
        rgb_image image;
        char error[ERROR_TEXT_SIZE];
        const char *name;
        int loaded;
        if (random_count > 0) {
            snprintf(random_names[next], sizeof random_names[next], "random image %d", next + 1);
            name = random_names[next];
            loaded = make_random_image(&image, &random_state);
            if (!loaded) snprintf(error, sizeof error, "out of memory");
        } else {
            name = argv[first_image + next];
            loaded = load_image(name, &image, error);
        }
        if (!loaded) {
            fprintf(stderr, "classify: %s: %s\n", name, error);
            failures++;
            continue;
        }
        status = qarep_model_preprocess(model, image.pixels, image.width, image.height, (size_t)image.width * 3,
                                        batch_pixels + image_bytes * (size_t)filled, image_bytes);
        free(image.pixels);
        if (status != QAREP_OK) {
            print_api_error(name, status);
            failures++;
            continue;
        }
        batch_names[filled++] = name;
        if (filled == batch_size) {
            if (!classify_batch(session, batch_pixels, image_bytes, filled, batch_names, &report)) failures++;
            filled = 0;
        }
    }
    if (filled > 0 && !classify_batch(session, batch_pixels, image_bytes, filled, batch_names, &report)) failures++;
    if (report.timing) fprintf(stderr, "classify: timing: peak RSS %.1f MB\n", peak_rss_mb());

done:
    free(report.logits_buffer);
    free(random_names);
    free(batch_names);
    free(batch_pixels);
    qarep_session_destroy(session);
    qarep_model_release(model);
    return failures == 0 ? 0 : 1;
}

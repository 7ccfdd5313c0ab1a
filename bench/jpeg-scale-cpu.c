/* CPU time of libjpeg-turbo alone decoding one JPEG at a DCT scale: the floor under `qarep classify`'s decode.

     cc -O2 -o /tmp/jpeg-scale-cpu bench/jpeg-scale-cpu.c -ljpeg
     /tmp/jpeg-scale-cpu PHOTO.jpg DENOM [ROWS] [FANCY] [DCT] [RUNS] [--hash | --raw]

   DENOM 1, 2, 4 or 8; ROWS per jpeg_read_scanlines call (default 16); FANCY 1/0 (do_fancy_upsampling);
   DCT 0 islow, 1 ifast, 2 float; RUNS (default 30). Prints the median and minimum thread CPU time per decode.
   --hash prints an FNV-1a hash of the decoded rows instead (which settings change the pixels at a scale);
   --raw writes "WIDTH HEIGHT\n" and the RGB rows to stdout (bench/decode-fidelity's noise floor).
   JSIMD_FORCENONE=1 turns libjpeg-turbo's SIMD off. docs/performance.md, "Photo pipeline", has the figures. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <jpeglib.h>

static double thread_cpu(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s PHOTO.jpg DENOM [ROWS] [FANCY] [DCT] [RUNS] [--hash | --raw]\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (f == NULL) { perror(argv[1]); return 1; }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *data = malloc((size_t)size);
    if (data == NULL || fread(data, 1, (size_t)size, f) != (size_t)size) { fprintf(stderr, "cannot read\n"); return 1; }
    fclose(f);
    int denom = atoi(argv[2]);
    int rows = argc > 3 ? atoi(argv[3]) : 16;
    int fancy = argc > 4 ? atoi(argv[4]) : 1;
    int dct = argc > 5 ? atoi(argv[5]) : 0;
    int runs = argc > 6 ? atoi(argv[6]) : 30;
    int hash = argc > 7 && strcmp(argv[7], "--hash") == 0;
    int raw = argc > 7 && strcmp(argv[7], "--raw") == 0;
    if (rows < 1 || rows > 64 || runs < 1 || runs > 1000) { fprintf(stderr, "ROWS 1...64, RUNS 1...1000\n"); return 2; }
    if (hash || raw) runs = 1;
    double *times = malloc(sizeof(double) * (size_t)runs);
    unsigned long long h = 1469598103934665603ULL;
    unsigned width = 0, height = 0;
    for (int i = 0; i < runs; i++) {
        double start = thread_cpu();
        struct jpeg_decompress_struct c;
        struct jpeg_error_mgr e;
        c.err = jpeg_std_error(&e);  /* exits on a corrupt file: a benchmark's input is known to be good */
        jpeg_create_decompress(&c);
        jpeg_mem_src(&c, data, (unsigned long)size);
        jpeg_read_header(&c, TRUE);
        c.out_color_space = JCS_RGB;
        c.scale_num = 1;
        c.scale_denom = (unsigned)denom;
        c.do_fancy_upsampling = fancy ? TRUE : FALSE;
        c.dct_method = dct == 0 ? JDCT_ISLOW : dct == 1 ? JDCT_IFAST : JDCT_FLOAT;
        jpeg_start_decompress(&c);
        if (raw) printf("%u %u\n", c.output_width, c.output_height);
        width = c.output_width;
        height = c.output_height;
        size_t stride = (size_t)c.output_width * (size_t)c.output_components;
        unsigned char *buffer = malloc(stride * (size_t)rows);
        JSAMPROW pointers[64];
        for (int r = 0; r < rows; r++) pointers[r] = buffer + stride * (size_t)r;
        while (c.output_scanline < c.output_height) {
            JDIMENSION got = jpeg_read_scanlines(&c, pointers, (JDIMENSION)rows);
            if (hash) {
                for (size_t k = 0; k < stride * got; k++) { h ^= buffer[k]; h *= 1099511628211ULL; }
            }
            if (raw) fwrite(buffer, 1, stride * got, stdout);
        }
        jpeg_finish_decompress(&c);
        jpeg_destroy_decompress(&c);
        free(buffer);
        times[i] = thread_cpu() - start;
    }
    if (raw) return 0;
    if (hash) {
        printf("%s 1/%d fancy=%d dct=%d %ux%u %016llx\n", argv[1], denom, fancy, dct, width, height, h);
        return 0;
    }
    qsort(times, (size_t)runs, sizeof(double), compare);
    printf("%s 1/%d (%ux%u) rows=%d fancy=%d dct=%d: median %.2f ms, min %.2f ms CPU over %d decodes\n", argv[1], denom,
           width, height, rows, fancy, dct, times[runs / 2] * 1e3, times[0] * 1e3, runs);
    return 0;
}

/*
 * load_models - loads each model file given through the C API and prints one line per file: its status and
 * message, or, for a file that loads, the top class of a gray image on the scalar path. CI runs it on the
 * loader-rejection cases (Tests/QARepTests/LoaderRejectionTests.swift, QAREP_REJECTION_CASES) against the
 * Embedded Swift library and the SwiftPM build, and requires identical output: same statuses, same messages,
 * and no crash on any file.
 *
 *   load_models FILE.qarep...
 */
#include <qarep.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash != NULL ? slash + 1 : path;
}

static void report(const char *path) {
    qarep_model *model = NULL;
    qarep_session *session = NULL;
    qarep_model_info info;
    qarep_session_options options = qarep_session_options_default();
    qarep_prediction top;
    int32_t found = 0;
    unsigned char *image;
    size_t image_bytes;
    qarep_status status = qarep_model_load_file(path, &model);

    if (status != QAREP_OK) {
        printf("%s: %s: %s\n", base_name(path), qarep_status_string(status), qarep_last_error_message());
        return;
    }
    qarep_model_get_info(model, &info);
    image_bytes = (size_t)info.input_height * (size_t)info.input_width * 3;
    image = (unsigned char *)malloc(image_bytes);
    options.num_threads = 1;
    options.kernel = QAREP_KERNEL_SCALAR;
    if (image == NULL) {
        printf("%s: loads; out of memory for the image\n", base_name(path));
    } else if ((status = qarep_session_create(model, &options, &session)) != QAREP_OK ||
               (memset(image, 128, image_bytes), status = qarep_session_run_u8(session, image, image_bytes, 1)) != QAREP_OK ||
               (status = qarep_session_top_k(session, 0, 1, &top, &found)) != QAREP_OK) {
        printf("%s: loads; run: %s: %s\n", base_name(path), qarep_status_string(status), qarep_last_error_message());
    } else {
        printf("%s: loads; top class %d\n", base_name(path), (int)top.class_index);
    }
    free(image);
    qarep_session_destroy(session);
    qarep_model_release(model);
}

int main(int argc, char **argv) {
    int i;
    if (argc < 2) {
        fprintf(stderr, "usage: load_models FILE.qarep...\n");
        return 2;
    }
    for (i = 1; i < argc; i++) report(argv[i]);
    return 0;
}

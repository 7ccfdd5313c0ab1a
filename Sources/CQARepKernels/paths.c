// The table of paths (qk_paths.h) as an array, and which of them this CPU runs.
#include "common/qk-path.h"

#include <string.h>

#define QK_PATH_ADDRESS(id, config) &config,
static const qk_path_config *const paths[QK_PATH_COUNT] = {QK_PATH_TABLE(QK_PATH_ADDRESS)};
// With a trailing NULL, so that the array is never empty (a build without test paths).
static const qk_path_config *const test_paths[QK_PATH_TEST_END - QK_PATH_COUNT] = {
    QK_TEST_PATH_TABLE(QK_PATH_ADDRESS) NULL};
#undef QK_PATH_ADDRESS

// A path of the table or a test-only path; NULL for any other value (QK_PATH_COUNT included).
static const qk_path_config *config_at(unsigned path) {
    if (path < QK_PATH_COUNT) return paths[path];
    if (path > QK_PATH_COUNT && path < QK_PATH_TEST_END) return test_paths[path - QK_PATH_COUNT - 1];
    return NULL;
}

// Bit (1 << path) set for each supported path, plus a "detected" bit. CPUID and XGETBV trap to the
// hypervisor in a VM, too slow for every kernel call, so detection runs once; concurrent first calls
// compute the same value, so a relaxed race is harmless.
#define QK_DETECTED (1u << 31)
_Static_assert(QK_PATH_TEST_END <= 31, "one bit per path");
static unsigned detected_paths;

static unsigned supported_paths(void) {
    unsigned bits = __atomic_load_n(&detected_paths, __ATOMIC_RELAXED);
    if (bits != 0) return bits;
    bits = QK_DETECTED;
    for (unsigned path = 0; path < QK_PATH_TEST_END; path++) {
        const qk_path_config *config = config_at(path);
        if (config != NULL && config->supported != NULL && config->supported()) bits |= 1u << path;
    }
    __atomic_store_n(&detected_paths, bits, __ATOMIC_RELAXED);
    return bits;
}

const qk_path_config *qk_path_config_of(qk_path path) {
    return config_at((unsigned)path);
}

const qk_path_config *qk_supported_path_config(qk_path path) {
    return qk_path_supported(path) ? config_at((unsigned)path) : NULL;
}

const char *qk_path_name(qk_path path) {
    const qk_path_config *config = qk_path_config_of(path);
    return config != NULL ? config->name : NULL;
}

// The table's paths only: a test-only path has no name a user could give.
qk_status qk_path_from_name(const char *name, qk_path *path) {
    if (name == NULL || path == NULL) return QK_ERROR_INVALID_ARGUMENT;
    for (int i = 0; i < QK_PATH_COUNT; i++) {
        if (strcmp(paths[i]->name, name) == 0) {
            *path = (qk_path)i;
            return QK_OK;
        }
    }
    return QK_ERROR_INVALID_ARGUMENT;
}

const char *qk_path_linux_cpu_flags(qk_path path) {
    const qk_path_config *config = qk_path_config_of(path);
    return config != NULL ? config->linux_cpu_flags : NULL;
}

int qk_path_supported(qk_path path) {
    if (config_at((unsigned)path) == NULL) return 0;
    return (supported_paths() >> path) & 1;
}

qk_path qk_best_path(void) {
    qk_path best = QK_PATH_SCALAR;
    for (int path = 0; path < QK_PATH_COUNT; path++)
        if (qk_path_supported((qk_path)path) && paths[path]->preference > paths[best]->preference) best = (qk_path)path;
    return best;
}

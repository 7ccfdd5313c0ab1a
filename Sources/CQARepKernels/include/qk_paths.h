// The one table of CPU paths. Each line names a path and the qk_path_config (common/qk-path.h) that
// describes it: name, CPU check, microkernels, packing geometry, cost constants, peak instruction mix.
// Everything above the kernels (the C API's qarep_kernel values and names, the Swift Kernel type,
// QAREP_KERNEL, bench --kernel, the CLI's --kernel, the tests' loops) takes its paths from here.
//
// The order is the ABI numbering (qk_path value i; qarep_kernel value i + 1), so lines are only ever
// appended. Which path runs by default is the config's `preference`, not its place here.
// Adding a path: docs/architecture.md, "Adding a CPU path".
#ifndef QK_PATHS_H
#define QK_PATHS_H

#define QK_PATH_TABLE(X)                     \
    X(SCALAR, qk_path_config_scalar)         \
    X(AVX2, qk_path_config_avx2)             \
    X(AVX512VNNI, qk_path_config_avx512vnni) \
    X(NEON, qk_path_config_neon)             \
    X(NEONDOT, qk_path_config_neondot)       \
    X(I8MM, qk_path_config_i8mm)             \
    X(AVX512BW, qk_path_config_avx512bw)

#endif  // QK_PATHS_H

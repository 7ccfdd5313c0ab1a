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
    X(AVX512BW, qk_path_config_avx512bw)     \
    X(AVXVNNI, qk_path_config_avxvnni)

// Test-only paths: code that no CPU path is but that the kernel tests run like one, numbered after
// QK_PATH_COUNT (qarep_kernels.h). No name lookup, default choice or C API value leads to them. The AVX-VNNI
// microkernels compiled as their EVEX twin run on CPUs with AVX-512 VNNI but without AVX-VNNI
// (x86/avxvnni/avxvnni.h), so their C is tested where the real path cannot run. The library `make lib`
// ships (QK_NO_TEST_PATHS) leaves them out: nothing there could reach them.
#if defined(QK_NO_TEST_PATHS) && QK_NO_TEST_PATHS
#define QK_TEST_PATH_TABLE(X)
#else
#define QK_TEST_PATH_TABLE(X) X(AVXVNNI_EVEX, qk_path_config_avxvnni_evex)
#endif

#endif  // QK_PATHS_H

// The EVEX twin of path-avxvnni.c (avxvnni.h): the same source with the 256-bit vpdpbusd EVEX-encoded, a
// test-only path for CPUs with AVX-512 VNNI and VL but without AVX-VNNI.
#define QK_AVXVNNI_EVEX_TWIN 1
#if !(defined(QK_NO_TEST_PATHS) && QK_NO_TEST_PATHS)  // the shipped library leaves the twin out (Makefile)
#include "x86/avxvnni/path-avxvnni.c"
#endif

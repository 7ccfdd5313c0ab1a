// The CPU check every ARM path's `supported` makes (see arm.h): the kernel's hwcaps, which Linux sets only
// for features it also enables for user space.
#include "arm/arm.h"

#if QK_HAVE_ARM64
#include <sys/auxv.h>

bool qk_arm_has(unsigned long hwcap, unsigned long hwcap2) {
    return (getauxval(AT_HWCAP) & hwcap) == hwcap && (getauxval(AT_HWCAP2) & hwcap2) == hwcap2;
}
#endif

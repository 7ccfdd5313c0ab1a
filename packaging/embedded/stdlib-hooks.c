/* What the Embedded Swift standard library expects its platform to provide and the C library must therefore
   bring itself: Float(String) and Double(String) call these, which the full Swift runtime implements
   (stdlib/public/stubs/Stubs.cpp). Same behavior as that implementation: "snan" is a signaling NaN, everything
   else is strtof/strtod in the C locale (not the process's, which a host program may have changed), and the
   returned end pointer lets Swift refuse trailing characters. Leading whitespace is refused on the Swift side. */
#define _GNU_SOURCE
#include <errno.h>
#include <locale.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void make_c_locale(void) { c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0); }

static locale_t get_c_locale(void) {
    pthread_once(&c_locale_once, make_c_locale);
    return c_locale;
}

static int is_signaling_nan(const char *text) {
    if (text[0] == '+' || text[0] == '-') text++;
    return strcasecmp(text, "snan") == 0;
}

/* One definition for both types, so that they cannot behave differently. */
#define QAREP_STRTO_CLOCALE(name, type, signaling_nan, parse, parse_in_locale)                 \
    const char *name(const char *text, type *out) {                                           \
        char *end;                                                                            \
        locale_t locale;                                                                      \
        if (is_signaling_nan(text)) {                                                         \
            *out = signaling_nan; /* positive even for "-snan", as the runtime's */           \
            return text + strlen(text);                                                       \
        }                                                                                     \
        locale = get_c_locale();                                                              \
        errno = 0;                                                                            \
        *out = locale != (locale_t)0 ? parse_in_locale(text, &end, locale) : parse(text, &end); \
        return end;                                                                           \
    }

QAREP_STRTO_CLOCALE(_swift_stdlib_strtod_clocale, double, __builtin_nans(""), strtod, strtod_l)
QAREP_STRTO_CLOCALE(_swift_stdlib_strtof_clocale, float, __builtin_nansf(""), strtof, strtof_l)

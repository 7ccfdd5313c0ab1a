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

const char *_swift_stdlib_strtod_clocale(const char *text, double *out) {
    char *end;
    locale_t locale;
    if (is_signaling_nan(text)) {
        *out = text[0] == '-' ? -__builtin_nans("") : __builtin_nans("");
        return text + strlen(text);
    }
    locale = get_c_locale();
    errno = 0;
    *out = locale != (locale_t)0 ? strtod_l(text, &end, locale) : strtod(text, &end);
    return end;
}

const char *_swift_stdlib_strtof_clocale(const char *text, float *out) {
    char *end;
    locale_t locale;
    if (is_signaling_nan(text)) {
        *out = text[0] == '-' ? -__builtin_nansf("") : __builtin_nansf("");
        return text + strlen(text);
    }
    locale = get_c_locale();
    errno = 0;
    *out = locale != (locale_t)0 ? strtof_l(text, &end, locale) : strtof(text, &end);
    return end;
}

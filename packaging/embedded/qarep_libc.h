#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* What Swift cannot import as it stands: errno is a macro, open and fcntl are variadic. The Glibc overlay
   wraps them for the SwiftPM build; Platform.swift gives these the overlay's names in the Embedded build. */
static inline int qarep_libc_errno(void) { return errno; }
static inline int qarep_libc_open(const char *path, int flags) { return open(path, flags); }
static inline int qarep_libc_fcntl(int fd, int command, int value) { return fcntl(fd, command, value); }

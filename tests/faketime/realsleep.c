/* libfaketime 0.9.10 with FAKETIME_DONT_FAKE_MONOTONIC=1 still shifts the deadline of an absolute
   clock_nanosleep on CLOCK_MONOTONIC by the fake offset, so CPython's time.sleep() gets EINVAL.
   Preloaded before libfaketime, this sends that one case straight to the kernel (monotonic is real)
   and everything else on to libfaketime. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int clock_nanosleep(clockid_t clock, int flags, const struct timespec *req, struct timespec *rem) {
    if (clock == CLOCK_MONOTONIC) {
        long r = syscall(SYS_clock_nanosleep, clock, flags, req, rem);
        return r == 0 ? 0 : errno;
    }
    static int (*next)(clockid_t, int, const struct timespec *, struct timespec *);
    if (!next) next = dlsym(RTLD_NEXT, "clock_nanosleep");
    return next(clock, flags, req, rem);
}

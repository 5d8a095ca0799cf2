/* Shared bits of the benchmark helpers: a monotonic clock and fatal-error reporting.
 * CLOCK_MONOTONIC is system-wide, so a timestamp taken in one process can be compared with one
 * taken in another (clock_gettime(2)); the signal-latency figure depends on that. */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static inline int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline void sleep_ns(int64_t ns)
{
    struct timespec ts = { .tv_sec = ns / 1000000000LL, .tv_nsec = ns % 1000000000LL };
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

/* Exit code 70 (EX_SOFTWARE) marks "the measurement itself broke", distinct from anything an init
 * passes through from its child, so the driver can tell the two apart. */
#define EXIT_BROKEN 70

/* die_errno: a system call failed, append strerror(errno). die: a logic failure, no errno. */
#define die(who, ...) die_impl(who, 0, __VA_ARGS__)
#define die_errno(who, ...) die_impl(who, errno, __VA_ARGS__)

__attribute__((noreturn, format(printf, 3, 4))) static inline void die_impl(const char *who, int err,
                                                                           const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", who);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (err != 0)
        fprintf(stderr, ": %s", strerror(err));
    fputc('\n', stderr);
    exit(EXIT_BROKEN);
}

#endif

/* sigchild FIFO [CLEANUP_MS]
 *
 * The service run under each init for the signal-latency and "sh start.sh" figures. It reports
 * on FIFO (a path, because catatonit and handoff-init close inherited fds above 2):
 *   "R <pid>\n"  once SIGTERM is blocked, i.e. from now on a SIGTERM cannot be lost;
 *   "T <ns>\n"   CLOCK_MONOTONIC when SIGTERM was taken, the moment the sender compares with;
 *   "X\n"        after CLEANUP_MS of simulated clean-up, just before a clean exit 0.
 * A service killed before it finished its clean-up leaves no "X": the driver reads that as an
 * unclean stop. */
#include "common.h"

#include <fcntl.h>
#include <signal.h>

static void say(int fd, const char *line)
{
    size_t len = strlen(line);
    if (write(fd, line, len) != (ssize_t)len)
        die_errno("sigchild", "write to fifo");
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3)
        die("sigchild", "usage: sigchild FIFO [CLEANUP_MS]");
    long cleanup_ms = argc == 3 ? strtol(argv[2], NULL, 10) : 0;

    /* Blocked before "R" and taken with sigwaitinfo: a signal sent after "R" is pending until we
     * take it, and a sleeping sigwaitinfo wakes as soon as it is queued (no handler latency). */
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &term, NULL) == -1)
        die_errno("sigchild", "sigprocmask");

    int fd = open(argv[1], O_WRONLY | O_CLOEXEC);
    if (fd == -1)
        die_errno("sigchild", "open %s", argv[1]);

    char line[64];
    snprintf(line, sizeof line, "R %ld\n", (long)getpid());
    say(fd, line);

    int sig;
    do {
        sig = sigwaitinfo(&term, NULL);
    } while (sig == -1 && errno == EINTR);
    int64_t got = now_ns();
    if (sig != SIGTERM)
        die_errno("sigchild", "sigwaitinfo");

    snprintf(line, sizeof line, "T %lld\n", (long long)got);
    say(fd, line);
    if (cleanup_ms > 0)
        sleep_ns(cleanup_ms * 1000000LL);
    say(fd, "X\n");
    return 0;
}

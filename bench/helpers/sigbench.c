/* sigbench TRIALS FIFO -- COMMAND [ARG]...
 *
 * Signal-forwarding latency. COMMAND is `unshare --pid --fork --mount-proc INIT -- sigchild FIFO`
 * (the init as PID 1 of a fresh PID namespace, as in a container). Per trial:
 *   - create FIFO, spawn COMMAND, wait for sigchild's "R" (its SIGTERM is blocked: cannot be lost);
 *   - the init is unshare's only child: read its host pid from /proc/<unshare>/task/<unshare>/children;
 *   - take CLOCK_MONOTONIC, kill(init, SIGTERM); sigchild answers "T <its CLOCK_MONOTONIC>";
 *   - print the difference in ns, wait for the whole command to exit.
 * Exits 70 if a trial breaks (no "R", no "T" within the deadline, the command does not exit). */
#include "common.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

extern char **environ;

#define STEP_DEADLINE_MS 10000

/* Reads one '\n'-terminated line from the non-blocking fd into line, waiting at most
 * STEP_DEADLINE_MS. Returns 0 on success, -1 on EOF or timeout. */
static int read_line(int fd, char *line, size_t cap)
{
    size_t len = 0;
    int64_t deadline = now_ns() + STEP_DEADLINE_MS * 1000000LL;
    for (;;) {
        int64_t left_ms = (deadline - now_ns()) / 1000000LL;
        if (left_ms <= 0)
            return -1;
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int r = poll(&p, 1, (int)left_ms);
        if (r == -1 && errno == EINTR)
            continue;
        if (r == -1)
            die_errno("sigbench", "poll");
        if (r == 0)
            return -1;
        /* One byte at a time: the lines are tiny and we must not swallow the next one. */
        char c;
        ssize_t n = read(fd, &c, 1);
        if (n == -1 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n <= 0)
            return -1;
        if (c == '\n') {
            line[len] = '\0';
            return 0;
        }
        if (len + 1 < cap)
            line[len++] = c;
    }
}

static pid_t only_child_of(pid_t parent)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/task/%ld/children", (long)parent, (long)parent);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        die_errno("sigbench", "open %s", path);
    long pid = 0, extra = 0;
    int got = fscanf(f, "%ld %ld", &pid, &extra);
    fclose(f);
    if (got != 1)
        die("sigbench", "%s: expected exactly one child (the init), got %d", path, got);
    return (pid_t)pid;
}

/* Waits for pid to exit, at most STEP_DEADLINE_MS; SIGKILLs it (and fails) past the deadline. */
static int wait_exit(pid_t pid)
{
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd == -1)
        die_errno("sigbench", "pidfd_open");
    struct pollfd p = { .fd = pidfd, .events = POLLIN };
    int r;
    do {
        r = poll(&p, 1, STEP_DEADLINE_MS);
    } while (r == -1 && errno == EINTR);
    close(pidfd);
    if (r == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        die("sigbench", "command did not exit within %d ms after SIGTERM", STEP_DEADLINE_MS);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid)
        die_errno("sigbench", "waitpid");
    return status;
}

int main(int argc, char **argv)
{
    if (argc < 5 || strcmp(argv[3], "--") != 0)
        die("sigbench", "usage: sigbench TRIALS FIFO -- COMMAND [ARG]...");
    long trials = strtol(argv[1], NULL, 10);
    const char *fifo = argv[2];
    char **cmd = argv + 4;

    for (long t = 0; t < trials; t++) {
        unlink(fifo);
        if (mkfifo(fifo, 0600) == -1)
            die_errno("sigbench", "mkfifo %s", fifo);
        /* O_NONBLOCK: opening for reading must not wait for the writer, and Linux reports no
         * POLLHUP on a FIFO before its first writer has come, so poll() waits for "R". */
        int fd = open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd == -1)
            die_errno("sigbench", "open %s", fifo);

        pid_t wrapper;
        int err = posix_spawn(&wrapper, cmd[0], NULL, NULL, cmd, environ);
        if (err != 0) {
            errno = err;
            die_errno("sigbench", "spawn %s", cmd[0]);
        }
        char line[128];
        if (read_line(fd, line, sizeof line) != 0 || line[0] != 'R') {
            kill(wrapper, SIGKILL);
            die("sigbench", "trial %ld: the service never reported ready", t);
        }
        pid_t init = only_child_of(wrapper);

        int64_t sent = now_ns();
        if (kill(init, SIGTERM) == -1)
            die_errno("sigbench", "kill %ld", (long)init);
        long long got;
        if (read_line(fd, line, sizeof line) != 0 || sscanf(line, "T %lld", &got) != 1) {
            kill(init, SIGKILL);
            die("sigbench", "trial %ld: the service did not receive SIGTERM within %d ms", t,
                STEP_DEADLINE_MS);
        }
        printf("%lld\n", got - (long long)sent);
        wait_exit(wrapper);
        close(fd);
    }
    unlink(fifo);
    return 0;
}

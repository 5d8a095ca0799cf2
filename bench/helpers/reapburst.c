/* reapburst COUNT
 *
 * Run as the service under an init that is PID 1 of a fresh PID namespace. Measures how long the
 * init takes to reap a burst of COUNT orphans:
 *   1. fork a child C; C forks COUNT grandchildren that block reading a pipe, then C exits, so
 *      the kernel reparents every grandchild to PID 1 (the init under test);
 *   2. start the clock and close the pipe's write end: every grandchild reads EOF and exits at
 *      once, becoming a zombie that only PID 1 can reap;
 *   3. poll until every grandchild is gone, stop the clock, and confirm that PID 1 has no child
 *      but us (/proc/1/task/1/children keeps zombies until they are reaped) and that no process
 *      in the namespace is in state Z.
 * Polling: C records the grandchildren's pids in shared memory and we probe them with
 * kill(pid, 0), which succeeds on a zombie and fails with ESRCH once it has been reaped (the
 * pid is unhashed in release_task). That costs an RCU lookup; re-reading the 10 000-entry
 * children file instead would take tasklist_lock over and over and slow the very exits and
 * reaps being timed. No pid is reused meanwhile: nothing else forks in the namespace.
 * Prints "elapsed_ns=<n> orphans=<COUNT>" and exits 0; exits 70 if the measurement broke and 3
 * if the init did not reap everything within the cap. */
#include "common.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define CAP_NS (60LL * 1000000000LL)

static char buf[1 << 20];

/* Number of PID 1's children other than `self`; -1 if the file cannot be read. */
static long others_of_pid1(pid_t self)
{
    int fd = open("/proc/1/task/1/children", O_RDONLY | O_CLOEXEC);
    if (fd == -1)
        return -1;
    size_t len = 0;
    ssize_t n;
    while (len < sizeof buf - 1 && (n = read(fd, buf + len, sizeof buf - 1 - len)) > 0)
        len += (size_t)n;
    close(fd);
    buf[len] = '\0';
    long count = 0;
    for (char *p = buf; *p != '\0';) {
        char *end;
        long pid = strtol(p, &end, 10);
        if (end == p)
            break;
        if (pid != self)
            count++;
        p = end;
    }
    return count;
}

/* Processes in state Z anywhere in this PID namespace (our /proc is the namespace's own,
 * mounted by unshare --mount-proc). */
static long zombies_in_namespace(void)
{
    DIR *proc = opendir("/proc");
    if (proc == NULL)
        die_errno("reapburst", "opendir /proc");
    long zombies = 0;
    struct dirent *de;
    while ((de = readdir(proc)) != NULL) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        char path[300], stat[512];
        snprintf(path, sizeof path, "/proc/%s/stat", de->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd == -1)
            continue; /* exited meanwhile */
        ssize_t n = read(fd, stat, sizeof stat - 1);
        close(fd);
        if (n <= 0)
            continue;
        stat[n] = '\0';
        /* The state follows the last ')' (the command name may itself contain ')'). */
        char *rp = strrchr(stat, ')');
        if (rp != NULL && rp[1] == ' ' && rp[2] == 'Z')
            zombies++;
    }
    closedir(proc);
    return zombies;
}

int main(int argc, char **argv)
{
    if (argc != 2)
        die("reapburst", "usage: reapburst COUNT");
    long count = strtol(argv[1], NULL, 10);
    if (count <= 0)
        die("reapburst", "COUNT must be positive");
    pid_t self = getpid();
    if (self == 1)
        die("reapburst", "running as PID 1: start me under the init being measured");
    if (others_of_pid1(self) != 0)
        die("reapburst", "PID 1 has other children before the burst (or /proc/1/task/1/children is unreadable)");

    pid_t *pids = mmap(NULL, (size_t)count * sizeof(pid_t), PROT_READ | PROT_WRITE,
                       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (pids == MAP_FAILED)
        die_errno("reapburst", "mmap");

    int gate[2];
    if (pipe(gate) == -1)
        die_errno("reapburst", "pipe");

    pid_t c = fork();
    if (c == -1)
        die_errno("reapburst", "fork");
    if (c == 0) {
        close(gate[1]);
        for (long i = 0; i < count; i++) {
            pid_t g = fork();
            if (g == -1)
                die_errno("reapburst", "fork grandchild %ld", i);
            if (g == 0) {
                char byte;
                while (read(gate[0], &byte, 1) == -1 && errno == EINTR) {
                }
                _exit(0);
            }
            pids[i] = g;
        }
        _exit(0);
    }
    close(gate[0]);
    int status;
    if (waitpid(c, &status, 0) != c || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        die("reapburst", "the forking child failed (status 0x%x)", status);

    /* C is gone, so every grandchild has been reparented to PID 1 by now (that happens in C's
     * exit, before C could be waited for). */
    long orphans = others_of_pid1(self);
    if (orphans != count)
        die("reapburst", "expected %ld orphans under PID 1, found %ld", count, orphans);

    int64_t start = now_ns();
    close(gate[1]);
    int64_t end;
    long first_alive = 0; /* every pids[i] with i < first_alive has been reaped */
    for (;;) {
        while (first_alive < count && kill(pids[first_alive], 0) == -1 && errno == ESRCH)
            first_alive++;
        end = now_ns();
        if (first_alive == count)
            break;
        if (end - start > CAP_NS) {
            fprintf(stderr, "reapburst: %ld of %ld orphans still not reaped after %lld s\n",
                    count - first_alive, count, (long long)(CAP_NS / 1000000000LL));
            return 3;
        }
        /* Short naps: the poller must not take a core away from the init it is timing. */
        sleep_ns(200000);
    }
    long left = others_of_pid1(self);
    if (left != 0)
        die("reapburst", "all orphans gone but PID 1 still lists %ld other children", left);
    long z = zombies_in_namespace();
    if (z != 0)
        die("reapburst", "PID 1 has no children left but /proc shows %ld zombies", z);
    printf("elapsed_ns=%lld orphans=%ld\n", (long long)(end - start), count);
    return 0;
}

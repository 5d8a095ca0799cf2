/* loadgen HOST PORT THREADS MAX_SECONDS OUT_JSON
 *
 * HTTP load for the handoff figure. THREADS client threads each loop: connect, send
 * "GET / HTTP/1.1" with "Connection: close", read the whole response, count it as ok when the
 * status is 200 and as failed otherwise (refused, reset, timeout, short or non-200 answer). A
 * new connection per request is the point: it is what exercises the listening socket while
 * the service changes generations. After a failure a thread pauses 10 ms, so during an outage
 * failures count about THREADS x 100 per second of downtime instead of a spin of refusals.
 * Runs until SIGINT/SIGTERM or MAX_SECONDS, then writes per-100 ms counts as JSON. */
#include "common.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>

#define BUCKET_NS 100000000LL
#define IO_TIMEOUT_S 2

enum { F_CONNECT, F_IO, F_TIMEOUT, F_STATUS, F_KINDS };
static const char *kind_names[F_KINDS] = { "connect", "io", "timeout", "status" };

static struct sockaddr_in target;
static int64_t started;
static long nbuckets;
static long *ok_per_bucket, *fail_per_bucket;
static long fail_kinds[F_KINDS];
static volatile int stopping;

static void count(long *per_bucket)
{
    long b = (long)((now_ns() - started) / BUCKET_NS);
    if (b >= nbuckets)
        b = nbuckets - 1;
    __atomic_fetch_add(&per_bucket[b], 1, __ATOMIC_RELAXED);
}

/* One request on a fresh connection; returns -1 on success or the failure kind. */
static int one_request(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1)
        die_errno("loadgen", "socket");
    struct timeval tv = { .tv_sec = IO_TIMEOUT_S };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    /* Close with RST: tens of thousands of short connections would otherwise leave the client
     * side in TIME_WAIT and run out of ephemeral ports within the run. */
    struct linger lg = { .l_onoff = 1, .l_linger = 0 };
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);

    int kind = -1;
    if (connect(fd, (struct sockaddr *)&target, sizeof target) == -1) {
        kind = (errno == EINPROGRESS || errno == EAGAIN || errno == ETIMEDOUT) ? F_TIMEOUT : F_CONNECT;
        goto out;
    }
    static const char req[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if (send(fd, req, sizeof req - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof req - 1)) {
        kind = errno == EAGAIN ? F_TIMEOUT : F_IO;
        goto out;
    }
    char resp[8192];
    size_t len = 0;
    long need = -1; /* total bytes of head + body, once the head is complete */
    for (;;) {
        ssize_t n = recv(fd, resp + len, sizeof resp - 1 - len, 0);
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1) {
            kind = errno == EAGAIN ? F_TIMEOUT : F_IO;
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        resp[len] = '\0';
        if (need < 0) {
            char *head_end = strstr(resp, "\r\n\r\n");
            if (head_end != NULL) {
                char *cl = strcasestr(resp, "\r\ncontent-length:");
                if (cl != NULL && cl < head_end)
                    need = (head_end + 4 - resp) + strtol(cl + 17, NULL, 10);
            }
        }
        if ((need >= 0 && (long)len >= need) || len >= sizeof resp - 1)
            break;
    }
    if (need >= 0 && (long)len < need) {
        kind = F_IO; /* connection closed mid-body */
        goto out;
    }
    if (len < 12 || (strncmp(resp, "HTTP/1.1 200", 12) != 0 && strncmp(resp, "HTTP/1.0 200", 12) != 0))
        kind = len == 0 ? F_IO : F_STATUS;
out:
    close(fd);
    return kind;
}

static void *client(void *arg)
{
    (void)arg;
    while (!stopping) {
        int kind = one_request();
        if (kind < 0) {
            count(ok_per_bucket);
        } else {
            count(fail_per_bucket);
            __atomic_fetch_add(&fail_kinds[kind], 1, __ATOMIC_RELAXED);
            sleep_ns(10000000LL);
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 6)
        die("loadgen", "usage: loadgen HOST PORT THREADS MAX_SECONDS OUT_JSON");
    target.sin_family = AF_INET;
    target.sin_port = htons((uint16_t)strtol(argv[2], NULL, 10));
    if (inet_pton(AF_INET, argv[1], &target.sin_addr) != 1)
        die("loadgen", "bad IPv4 address %s", argv[1]);
    long threads = strtol(argv[3], NULL, 10);
    long max_s = strtol(argv[4], NULL, 10);
    if (threads <= 0 || threads > 64 || max_s <= 0)
        die("loadgen", "THREADS must be 1..64 and MAX_SECONDS positive");
    nbuckets = max_s * 10 + 1;
    ok_per_bucket = calloc((size_t)nbuckets, sizeof(long));
    fail_per_bucket = calloc((size_t)nbuckets, sizeof(long));
    if (ok_per_bucket == NULL || fail_per_bucket == NULL)
        die("loadgen", "out of memory");

    /* Workers inherit a mask with the stop signals blocked; only main takes them. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    started = now_ns();
    pthread_t tids[64];
    for (long i = 0; i < threads; i++) {
        int err = pthread_create(&tids[i], NULL, client, NULL);
        if (err != 0) {
            errno = err;
            die_errno("loadgen", "pthread_create");
        }
    }
    struct timespec cap = { .tv_sec = max_s };
    int sig;
    do {
        sig = sigtimedwait(&stop, NULL, &cap);
    } while (sig == -1 && errno == EINTR);
    stopping = 1;
    int64_t ended = now_ns();
    for (long i = 0; i < threads; i++)
        pthread_join(tids[i], NULL);

    long used = (long)((ended - started) / BUCKET_NS) + 1;
    if (used > nbuckets)
        used = nbuckets;
    FILE *out = fopen(argv[5], "we");
    if (out == NULL)
        die_errno("loadgen", "open %s", argv[5]);
    fprintf(out, "{\"bucket_ms\": 100, \"elapsed_s\": %.3f, \"threads\": %ld, \"capped\": %s,\n",
            (double)(ended - started) / 1e9, threads, sig == -1 ? "true" : "false");
    fprintf(out, "\"fail_kinds\": {");
    for (int k = 0; k < F_KINDS; k++)
        fprintf(out, "%s\"%s\": %ld", k ? ", " : "", kind_names[k], fail_kinds[k]);
    fprintf(out, "},\n\"ok\": [");
    for (long b = 0; b < used; b++)
        fprintf(out, "%s%ld", b ? "," : "", ok_per_bucket[b]);
    fprintf(out, "],\n\"fail\": [");
    for (long b = 0; b < used; b++)
        fprintf(out, "%s%ld", b ? "," : "", fail_per_bucket[b]);
    fprintf(out, "]}\n");
    if (fclose(out) != 0)
        die_errno("loadgen", "write %s", argv[5]);
    return 0;
}

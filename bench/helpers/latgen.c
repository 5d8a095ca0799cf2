/* latgen HOST PORT CLIENTS close|keepalive MAX_SECONDS OUT_FILE
 *
 * Latency load for the handoff-cost figures. CLIENTS threads, each with one request in flight
 * at a time: GET / and the whole response (by Content-Length). "close": a new connection per
 * request (Connection: close; the client closes with RST so that it does not run out of ports
 * in TIME_WAIT). "keepalive": one connection reused for request after request, as HTTP/1.1
 * says; when a response says Connection: close (a draining server does) the next request opens
 * a new connection. A request sent on a reused connection that gets no byte of answer is a
 * failure too ("stale"): a client would have to resend it.
 *
 * Every request is recorded: start (CLOCK_MONOTONIC ns, the same clock as the driver's),
 * latency in ns, and 0 for ok or the failure kind. After a failure a thread pauses 10 ms, so an
 * outage counts about CLIENTS x 100 failures per second instead of a spin of refused connects.
 * Runs until SIGINT/SIGTERM or MAX_SECONDS, then writes OUT_FILE: a line of JSON, then the
 * records as little-endian int64 triples (start_ns, latency_ns, kind).
 * C, not an interpreter: the client's own latency must stay far below the server's. */
#include "common.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>

#define IO_TIMEOUT_S 5
#define MAX_CLIENTS 1024

enum { OK, F_CONNECT, F_IO, F_TIMEOUT, F_STATUS, F_STALE, F_KINDS };
static const char *kind_names[F_KINDS] = { "ok", "connect", "io", "timeout", "status", "stale" };

struct rec {
    int64_t start, lat, kind;
};

struct client {
    pthread_t tid;
    struct rec *recs;
    size_t n, cap;
    int fd;    /* keep-alive connection, -1 when none */
    int reused; /* fd has served a request already */
};

static struct sockaddr_in target;
static int keepalive;
static volatile int stopping;

static int open_conn(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1)
        die_errno("latgen", "socket");
    struct timeval tv = { .tv_sec = IO_TIMEOUT_S };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (!keepalive) {
        struct linger lg = { .l_onoff = 1, .l_linger = 0 };
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    if (connect(fd, (struct sockaddr *)&target, sizeof target) == -1) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static void drop_conn(struct client *c)
{
    if (c->fd != -1)
        close(c->fd);
    c->fd = -1;
    c->reused = 0;
}

/* One request; returns OK or the failure kind. */
static int one_request(struct client *c)
{
    if (c->fd == -1) {
        c->fd = open_conn();
        if (c->fd == -1)
            return (errno == EINPROGRESS || errno == EAGAIN || errno == ETIMEDOUT) ? F_TIMEOUT : F_CONNECT;
    }
    static const char req_close[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    static const char req_keep[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    const char *req = keepalive ? req_keep : req_close;
    size_t reqlen = keepalive ? sizeof req_keep - 1 : sizeof req_close - 1;
    int reused = c->reused;
    int kind = OK;
    if (send(c->fd, req, reqlen, MSG_NOSIGNAL) != (ssize_t)reqlen) {
        kind = reused ? F_STALE : errno == EAGAIN ? F_TIMEOUT : F_IO;
        goto fail;
    }
    char resp[8192];
    size_t len = 0;
    long need = -1;
    int server_closes = !keepalive;
    for (;;) {
        ssize_t n = recv(c->fd, resp + len, sizeof resp - 1 - len, 0);
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1) {
            kind = (reused && len == 0) ? F_STALE : errno == EAGAIN ? F_TIMEOUT : F_IO;
            goto fail;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        resp[len] = '\0';
        if (need < 0) {
            char *head_end = strstr(resp, "\r\n\r\n");
            if (head_end != NULL) {
                *head_end = '\0';
                char *cl = strcasestr(resp, "\r\ncontent-length:");
                if (cl != NULL)
                    need = (head_end + 4 - resp) + strtol(cl + 17, NULL, 10);
                if (strcasestr(resp, "\r\nconnection: close") != NULL)
                    server_closes = 1;
                *head_end = '\r';
            }
        }
        if ((need >= 0 && (long)len >= need) || len >= sizeof resp - 1)
            break;
    }
    if (len == 0) {
        kind = reused ? F_STALE : F_IO;
        goto fail;
    }
    if (need < 0 || (long)len < need) {
        kind = F_IO; /* closed mid-answer */
        goto fail;
    }
    if (len < 12 || (strncmp(resp, "HTTP/1.1 200", 12) != 0 && strncmp(resp, "HTTP/1.0 200", 12) != 0)) {
        kind = F_STATUS;
        goto fail;
    }
    if (!keepalive || server_closes)
        drop_conn(c);
    else
        c->reused = 1;
    return OK;
fail:
    drop_conn(c);
    return kind;
}

static void *client_main(void *arg)
{
    struct client *c = arg;
    while (!stopping) {
        int64_t t0 = now_ns();
        int kind = one_request(c);
        int64_t t1 = now_ns();
        if (c->n == c->cap) {
            c->cap = c->cap ? c->cap * 2 : 4096;
            c->recs = realloc(c->recs, c->cap * sizeof *c->recs);
            if (c->recs == NULL)
                die("latgen", "out of memory");
        }
        c->recs[c->n++] = (struct rec){ t0, t1 - t0, kind };
        if (kind != OK)
            sleep_ns(10000000LL);
    }
    drop_conn(c);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 7)
        die("latgen", "usage: latgen HOST PORT CLIENTS close|keepalive MAX_SECONDS OUT_FILE");
    target.sin_family = AF_INET;
    target.sin_port = htons((uint16_t)strtol(argv[2], NULL, 10));
    if (inet_pton(AF_INET, argv[1], &target.sin_addr) != 1)
        die("latgen", "bad IPv4 address %s", argv[1]);
    long clients = strtol(argv[3], NULL, 10);
    if (strcmp(argv[4], "keepalive") == 0)
        keepalive = 1;
    else if (strcmp(argv[4], "close") != 0)
        die("latgen", "mode must be close or keepalive, not %s", argv[4]);
    long max_s = strtol(argv[5], NULL, 10);
    if (clients <= 0 || clients > MAX_CLIENTS || max_s <= 0)
        die("latgen", "CLIENTS must be 1..%d and MAX_SECONDS positive", MAX_CLIENTS);

    /* Workers inherit a mask with the stop signals blocked; only main takes them. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    static struct client cs[MAX_CLIENTS];
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    int64_t started = now_ns();
    for (long i = 0; i < clients; i++) {
        cs[i].fd = -1;
        int err = pthread_create(&cs[i].tid, &attr, client_main, &cs[i]);
        if (err != 0) {
            errno = err;
            die_errno("latgen", "pthread_create");
        }
    }
    /* Tell the driver the clients run (it waits for this line before its first handoff). */
    printf("started %lld\n", (long long)started);
    fflush(stdout);
    struct timespec cap = { .tv_sec = max_s };
    int sig;
    do {
        sig = sigtimedwait(&stop, NULL, &cap);
    } while (sig == -1 && errno == EINTR);
    stopping = 1;
    int64_t ended = now_ns();
    size_t total = 0;
    long kinds[F_KINDS] = { 0 };
    for (long i = 0; i < clients; i++) {
        pthread_join(cs[i].tid, NULL);
        total += cs[i].n;
        for (size_t k = 0; k < cs[i].n; k++)
            kinds[cs[i].recs[k].kind]++;
    }
    FILE *out = fopen(argv[6], "we");
    if (out == NULL)
        die_errno("latgen", "open %s", argv[6]);
    fprintf(out, "{\"started_ns\": %lld, \"ended_ns\": %lld, \"clients\": %ld, \"mode\": \"%s\", \"records\": %zu, "
                 "\"capped\": %s, \"kinds\": {",
            (long long)started, (long long)ended, clients, argv[4], total, sig == -1 ? "true" : "false");
    for (int k = 0; k < F_KINDS; k++)
        fprintf(out, "%s\"%s\": %ld", k ? ", " : "", kind_names[k], kinds[k]);
    fprintf(out, "}}\n");
    for (long i = 0; i < clients; i++)
        if (cs[i].n > 0 && fwrite(cs[i].recs, sizeof *cs[i].recs, cs[i].n, out) != cs[i].n)
            die_errno("latgen", "write %s", argv[6]);
    if (fclose(out) != 0)
        die_errno("latgen", "write %s", argv[6]);
    return 0;
}

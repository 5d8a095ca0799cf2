/* kaidle HOST PORT N MAX_SECONDS OUT_JSON
 *
 * Idle keep-alive clients for the drain figure. Opens N connections, sends one request on each
 * and reads its answer (so the server holds N idle keep-alive connections), prints "ready", and
 * then waits. Whenever the server closes one (a draining generation closes its idle ones), the
 * client does what a browser or a pooled HTTP client does: its next request goes on a new
 * connection. It sends it at once and counts the answer as ok or failed. A reset (RST) of an
 * idle connection counts as failed too. Ends when every one of the N was closed and re-asked,
 * at SIGTERM, or at MAX_SECONDS; writes counts and the first and last close (ms since "ready").
 * Needs N + a few file descriptors: it raises its soft RLIMIT_NOFILE to the hard limit. */
#include "common.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>

static struct sockaddr_in target;
static const char req[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
static const char req_close[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";

/* A blocking request on fd; 0 when a whole 200 answer came. */
static int request(int fd, const char *r, size_t rlen)
{
    if (send(fd, r, rlen, MSG_NOSIGNAL) != (ssize_t)rlen)
        return -1;
    char resp[4096];
    size_t len = 0;
    for (;;) {
        ssize_t n = recv(fd, resp + len, sizeof resp - 1 - len, 0);
        if (n == -1 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        len += (size_t)n;
        resp[len] = '\0';
        char *head_end = strstr(resp, "\r\n\r\n");
        if (head_end == NULL)
            continue;
        char *cl = strcasestr(resp, "\r\ncontent-length:");
        if (cl == NULL || cl > head_end)
            return -1;
        long need = (head_end + 4 - resp) + strtol(cl + 17, NULL, 10);
        if ((long)len >= need)
            return strncmp(resp, "HTTP/1.1 200", 12) == 0 ? 0 : -1;
    }
}

static int connect_one(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1)
        die_errno("kaidle", "socket");
    struct timeval tv = { .tv_sec = 5 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&target, sizeof target) == -1) {
        close(fd);
        return -1;
    }
    return fd;
}

int main(int argc, char **argv)
{
    if (argc != 6)
        die("kaidle", "usage: kaidle HOST PORT N MAX_SECONDS OUT_JSON");
    target.sin_family = AF_INET;
    target.sin_port = htons((uint16_t)strtol(argv[2], NULL, 10));
    if (inet_pton(AF_INET, argv[1], &target.sin_addr) != 1)
        die("kaidle", "bad IPv4 address %s", argv[1]);
    long n = strtol(argv[3], NULL, 10);
    long max_s = strtol(argv[4], NULL, 10);
    if (n <= 0 || max_s <= 0)
        die("kaidle", "N and MAX_SECONDS must be positive");
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if ((rlim_t)n + 16 > rl.rlim_cur)
        die("kaidle", "RLIMIT_NOFILE %llu is too low for %ld connections", (unsigned long long)rl.rlim_cur, n);

    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    sigprocmask(SIG_BLOCK, &stop, NULL);

    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep == -1)
        die_errno("kaidle", "epoll_create1");
    for (long i = 0; i < n; i++) {
        int fd = connect_one();
        if (fd == -1)
            die_errno("kaidle", "connection %ld of %ld", i + 1, n);
        if (request(fd, req, sizeof req - 1) != 0)
            die("kaidle", "the first request on connection %ld failed", i + 1);
        struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.fd = fd };
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == -1)
            die_errno("kaidle", "epoll_ctl");
    }
    int64_t ready = now_ns();
    printf("ready %ld\n", n);
    fflush(stdout);

    long closed = 0, resets = 0, ok = 0, failed = 0;
    int64_t first = -1, last = -1;
    int64_t end = ready + (int64_t)max_s * 1000000000LL;
    struct epoll_event evs[256];
    while (closed < n && now_ns() < end) {
        struct timespec zero = { 0 };
        if (sigtimedwait(&stop, NULL, &zero) > 0)
            break;
        int got = epoll_wait(ep, evs, 256, 100);
        if (got == -1 && errno == EINTR)
            continue;
        if (got == -1)
            die_errno("kaidle", "epoll_wait");
        for (int k = 0; k < got; k++) {
            int fd = evs[k].data.fd;
            char b[256];
            ssize_t r = recv(fd, b, sizeof b, MSG_DONTWAIT);
            if (r > 0)
                continue; /* unexpected bytes on an idle connection: ignore */
            if (r == -1 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (r == -1)
                resets++;
            int64_t t = now_ns() - ready;
            if (first < 0)
                first = t;
            last = t;
            epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
            close(fd);
            closed++;
            int nfd = connect_one();
            if (nfd != -1 && request(nfd, req_close, sizeof req_close - 1) == 0)
                ok++;
            else
                failed++;
            if (nfd != -1)
                close(nfd);
        }
    }
    FILE *out = fopen(argv[5], "we");
    if (out == NULL)
        die_errno("kaidle", "open %s", argv[5]);
    fprintf(out,
            "{\"connections\": %ld, \"closed_by_server\": %ld, \"resets\": %ld, \"reasked_ok\": %ld, "
            "\"reasked_failed\": %ld, \"first_close_ms\": %.1f, \"last_close_ms\": %.1f}\n",
            n, closed, resets, ok, failed, first / 1e6, last / 1e6);
    if (fclose(out) != 0)
        die_errno("kaidle", "write %s", argv[5]);
    return 0;
}

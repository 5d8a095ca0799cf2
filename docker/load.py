#!/usr/bin/env python3
"""Bounded HTTP load for docker/e2e.sh: CLIENTS threads, one request per connection (so every
request goes through the listening socket that the handoff must keep serving), until STOP_FILE
exists or MAX_SECONDS pass. Each request asks the service to hold its response for DELAY_MS, so
requests are in flight whenever a generation is told to drain.

While running, STATUS_FILE holds one line `requests failed newest_generation`, replaced atomically
every 50 ms, so the caller can wait until the load has reached a generation. At the end it prints
one JSON line: requests, failed, the generations seen and the first errors. Exit status 0 whatever
the counts: the caller asserts on them."""

import argparse
import json
import os
import re
import socket
import threading
import time

BODY = re.compile(rb"pid=(\d+) gen=(\d+)")


def one_request(port, timeout, delay_ms):
    """Returns the generation that answered; raises on any failure."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"GET /load?delay=%d HTTP/1.1\r\nHost: e2e\r\nConnection: close\r\n\r\n"
                     % delay_ms)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    reply = b"".join(chunks)
    if not reply.startswith(b"HTTP/1.1 200"):
        raise RuntimeError("bad reply %r" % reply[:80])
    match = BODY.search(reply)
    if not match:
        raise RuntimeError("no pid/gen in reply %r" % reply[:120])
    return int(match.group(2))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--stop-file", required=True)
    parser.add_argument("--max-seconds", type=float, default=300)
    parser.add_argument("--timeout", type=float, default=10)
    parser.add_argument("--delay-ms", type=int, default=20)
    parser.add_argument("--status-file")
    args = parser.parse_args()

    lock = threading.Lock()
    stats = {"requests": 0, "failed": 0, "gens": set(), "errors": []}
    deadline = time.monotonic() + args.max_seconds

    def client():
        while not os.path.exists(args.stop_file) and time.monotonic() < deadline:
            try:
                gen = one_request(args.port, args.timeout, args.delay_ms)
                err = None
            except (OSError, RuntimeError) as exc:
                gen, err = None, "%s: %s" % (type(exc).__name__, exc)
            with lock:
                stats["requests"] += 1
                if err is None:
                    stats["gens"].add(gen)
                else:
                    stats["failed"] += 1
                    if len(stats["errors"]) < 10:
                        stats["errors"].append(err)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(args.clients)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        if args.status_file:
            with lock:
                line = "%d %d %d\n" % (stats["requests"], stats["failed"], max(stats["gens"], default=0))
            tmp = args.status_file + ".tmp"
            with open(tmp, "w") as f:
                f.write(line)
            os.replace(tmp, args.status_file)
        time.sleep(0.05)
    for thread in threads:
        thread.join()
    stats["gens"] = sorted(stats["gens"])
    print(json.dumps(stats), flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A static file server on 127.0.0.1 for the ingest benchmark: `python -m http.server` with a
listen backlog of 1024 instead of socketserver's 5, so that 32–64 downloads opening connections
at once (img2dataset's threads, flipstream's `--concurrency`) are not held up by dropped SYNs and
their 1 s / 3 s retransmits — the benchmark measures the downloaders, not the toy server's queue.
Still HTTP/1.0, one connection per request, as most image hosts of a URL list are seen once.

usage: http_server.py DIR PORT
"""
import functools
import http.server
import sys


class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 1024
    daemon_threads = True


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def main():
    directory, port = sys.argv[1], int(sys.argv[2])
    handler = functools.partial(QuietHandler, directory=directory)
    with Server(("127.0.0.1", port), handler) as server:
        server.serve_forever()


main()

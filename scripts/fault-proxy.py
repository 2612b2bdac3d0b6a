#!/usr/bin/env python3
"""An HTTP proxy that injects the faults object stores really produce, for testing flipstream.

Put it between flipstream and an S3-compatible server (the tests use moto on 127.0.0.1):

    python3 scripts/fault-proxy.py --upstream http://127.0.0.1:5000 --port 5001 --rate 0.1 --seed 7
    AWS_ENDPOINT_URL=http://127.0.0.1:5001 flipstream shard verify s3://bucket/ds

Each request is, with probability --rate, given one of the --faults (chosen uniformly):
  503    "503 SlowDown" (throttling), the request is not forwarded
  500    "500 InternalError", the request is not forwarded
  reset  the connection is reset; half of the time after the request was forwarded (it took
         effect, its answer is lost), half of the time before
  cut    the request is forwarded and the answer's body is cut in half (the headers announce the
         full length); an answer without a body gets a reset instead

The draws come from one generator seeded by --seed, so a run with requests in the same order gets
the same faults. Control endpoints, not forwarded and not counted:
  GET /__fault-proxy/stats   JSON: requests, forwarded, faults by kind, stalled (held now)
  PUT /__fault-proxy/rate    body: the new rate (e.g. 1.0 for an outage, 0 to end it)
  PUT /__fault-proxy/stall   body: a substring; writes (PUT/POST) whose path holds it are held,
                             unanswered, until the stall is set to "" (then they go through): a
                             process killed meanwhile dies in the middle of that upload
The proxy prints "listening on PORT" on stdout once it accepts connections.
"""

import argparse
import http.client
import http.server
import json
import random
import socket
import struct
import sys
import threading
import urllib.parse

FAULTS = ("503", "500", "reset", "cut")
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade", "te"}
CONTROL = "/__fault-proxy/"


class Faults:
    """The fault schedule and its counters, shared by all connections."""

    def __init__(self, rate, seed, kinds):
        self.rate = rate
        self.kinds = kinds
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.counts = {"requests": 0, "forwarded": 0, "faults": {k: 0 for k in FAULTS}}
        self.stall = ""
        self.stalled = 0
        self.released = threading.Condition(self.lock)

    def hold(self, method, path):
        """Waits while writes to paths holding the stall substring are stalled."""
        with self.lock:
            if not self.stall or method not in ("PUT", "POST") or self.stall not in path:
                return
            self.stalled += 1
            while self.stall and self.stall in path:
                self.released.wait()
            self.stalled -= 1

    def set_stall(self, substring):
        with self.lock:
            self.stall = substring
            self.released.notify_all()

    def draw(self):
        """The fault for the next request (None for none) and, for resets, whether to forward."""
        with self.lock:
            self.counts["requests"] += 1
            if self.random.random() >= self.rate:
                return None, True
            kind = self.random.choice(self.kinds)
            forward_first = self.random.random() < 0.5
            self.counts["faults"][kind] += 1
            return kind, forward_first

    def forwarded(self):
        with self.lock:
            self.counts["forwarded"] += 1

    def snapshot(self):
        with self.lock:
            out = json.loads(json.dumps(self.counts))
            out["stalled"] = self.stalled
            return out


def error_xml(code, message):
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
        f"<Message>{message}</Message></Error>"
    ).encode()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    faults: Faults = None
    upstream = None  # (host, port)
    local = threading.local()

    def log_message(self, *args):
        pass

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(body)
                body += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def forward(self, body):
        """Sends the request upstream; returns (status, reason, headers, body)."""
        conn = getattr(self.local, "conn", None)
        for attempt in range(2):
            if conn is None:
                conn = http.client.HTTPConnection(*self.upstream, timeout=120)
                self.local.conn = conn
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            if body or self.command in ("PUT", "POST"):
                headers["Content-Length"] = str(len(body))
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.faults.forwarded()
                return resp.status, resp.reason, resp.getheaders(), data
            except (http.client.HTTPException, OSError):
                conn.close()
                conn = None
                self.local.conn = None
                if attempt == 1:
                    raise
        raise RuntimeError("unreachable")

    def send(self, status, reason, headers, body, cut=False):
        self.send_response_only(status, reason)
        length = None
        for k, v in headers:
            if k.lower() in HOP_BY_HOP:
                continue
            if k.lower() == "content-length":
                length = v
                continue
            self.send_header(k, v)
        if self.command == "HEAD":
            self.send_header("Content-Length", length or "0")
        else:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body[: len(body) // 2] if cut else body)
        self.wfile.flush()
        if cut:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)

    def reset(self):
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()

    def control(self, body):
        if self.path.startswith(CONTROL + "stats"):
            out = json.dumps(self.faults.snapshot()).encode()
        elif self.path.startswith(CONTROL + "rate") and self.command == "PUT":
            self.faults.rate = float(body.decode().strip())
            out = b"ok"
        elif self.path.startswith(CONTROL + "stall") and self.command == "PUT":
            self.faults.set_stall(body.decode().strip())
            out = b"ok"
        else:
            self.send(404, "Not Found", [], b"unknown control endpoint")
            return
        self.send(200, "OK", [("Content-Type", "application/json")], out)

    def handle_any(self):
        body = self.read_body()
        if self.path.startswith(CONTROL):
            return self.control(body)
        self.faults.hold(self.command, self.path)
        kind, forward_first = self.faults.draw()
        if kind == "503":
            xml = error_xml("SlowDown", "Please reduce your request rate.")
            return self.send(503, "Slow Down", [("Content-Type", "application/xml")], xml)
        if kind == "500":
            xml = error_xml("InternalError", "We encountered an internal error. Please try again.")
            return self.send(500, "Internal Server Error", [("Content-Type", "application/xml")], xml)
        if kind == "reset" and not forward_first:
            return self.reset()
        status, reason, headers, data = self.forward(body)
        if kind == "reset" or (kind == "cut" and (len(data) < 2 or self.command == "HEAD")):
            return self.reset()
        self.send(status, reason, headers, data, cut=kind == "cut")

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # a client that gave up on a faulted connection is expected; say nothing
        pass


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--upstream", required=True, help="the server to forward to, http://HOST:PORT")
    p.add_argument("--port", type=int, default=0, help="port to listen on, 127.0.0.1 (0: any free)")
    p.add_argument("--rate", type=float, default=0.1, help="share of requests given a fault (0..1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fault schedule")
    p.add_argument("--faults", default=",".join(FAULTS), help="comma-separated kinds: " + ", ".join(FAULTS))
    args = p.parse_args()
    kinds = [k for k in args.faults.split(",") if k]
    unknown = [k for k in kinds if k not in FAULTS]
    if unknown or not kinds or not 0.0 <= args.rate <= 1.0:
        p.error(f"--faults must name some of {', '.join(FAULTS)} and --rate lie in 0..1")
    up = urllib.parse.urlparse(args.upstream)
    Handler.faults = Faults(args.rate, args.seed, kinds)
    Handler.upstream = (up.hostname, up.port or 80)
    server = Server(("127.0.0.1", args.port), Handler)
    print(f"listening on {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

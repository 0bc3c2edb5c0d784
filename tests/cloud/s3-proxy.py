#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# A fault-injecting HTTP proxy in front of an S3 endpoint, for the retry
# tests of tests/cloud/s3-rgw.sh and cloud-faults.sh.  Requests pass through unchanged (the Host
# header too, so SigV4 signatures still verify upstream), except the first
# COUNT requests that RULE picks (among those whose path contains MATCH, if
# given):
#
#   s3-proxy.py UPSTREAM_PORT PORT_FILE RULE COUNT [MATCH]
#
#   status-503   answer 503 SlowDown without forwarding
#   lose-put     forward a PUT (the upstream applies it), then answer 500 as
#                if the reply had been lost
#
# It listens on a free port on 127.0.0.1, writes the port to PORT_FILE, and
# logs one line per request ("PUT /bucket/key -> 500 (injected)") to stderr.
# Each client connection is served by its own thread with its own upstream
# connection: push and pull keep several connections open at once.
import http.client
import http.server
import os
import sys
import threading

upstream_port = int(sys.argv[1])
port_file, rule, count = sys.argv[2], sys.argv[3], int(sys.argv[4])
match = sys.argv[5] if len(sys.argv) > 5 else ""
HOP = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "proxy-connection"}
lock = threading.Lock()


class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        self.upstream = None

    def finish(self):
        super().finish()
        if self.upstream is not None:
            self.upstream.close()

    def log_message(self, fmt, *args):
        pass

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        global count
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        with lock:
            picked = count > 0 and match in self.path and (
                rule == "status-503" or (rule == "lose-put" and self.command == "PUT"))
            if picked:
                count -= 1
        if picked and rule == "status-503":
            print(f"{self.command} {self.path} -> 503 (injected)", file=sys.stderr, flush=True)
            self.reply(503, b"<?xml version=\"1.0\"?><Error><Code>SlowDown</Code>"
                       b"<Message>Please reduce your request rate.</Message></Error>",
                       [("Content-Type", "application/xml")])
            return
        if self.upstream is None:
            self.upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        try:
            self.upstream.request(self.command, self.path, body=body if n else None,
                                  headers=headers)
            resp = self.upstream.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            self.upstream.close()
            self.upstream = None
            self.reply(502)
            return
        if picked:
            print(f"{self.command} {self.path} -> {resp.status} upstream, 500 (injected)",
                  file=sys.stderr, flush=True)
            self.reply(500)
            return
        print(f"{self.command} {self.path} -> {resp.status}", file=sys.stderr, flush=True)
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            # A HEAD reply's Content-Length is the object's size: keep it.
            if k.lower() not in HOP and (k.lower() != "content-length" or self.command == "HEAD"):
                self.send_header(k, v)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = handle_any


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
with open(port_file + ".tmp", "w") as f:
    f.write(f"{server.server_address[1]}\n")
os.rename(port_file + ".tmp", port_file)
server.serve_forever()

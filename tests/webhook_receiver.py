"""A real webhook receiver for tests: stdlib http.server on 127.0.0.1 in a thread, checking each
POST's signature the way a receiving service would and recording what it got."""

import hashlib
import hmac
import http.server
import json
import socket
import threading
import time


class Receiver:
    """Answers ``status`` (200 unless changed; ``hang`` = never answer until stopped) and keeps
    every request as a dict: headers, body, decoded event and whether the signature verified
    with ``secret``."""

    def __init__(self, port=0, secret=None):
        self.secret = secret
        self.status = 200
        self.hang = False
        self.requests = []
        self._release = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if receiver.hang:
                    receiver._release.wait()
                    return
                with receiver._lock:
                    receiver.requests.append(dict(headers=dict(self.headers), body=body, event=json.loads(body),
                                                  signed=receiver.verifies(self.headers, body)))
                    status = receiver.status
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def verifies(self, headers, body):
        if self.secret is None:
            return None
        expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(headers.get("X-Hub-Signature-256", ""), expected)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self._release.set()
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, predicate, deadline=30.0, what="the expected webhook requests"):
        """Poll until predicate(list of requests) is true; fails the test after ``deadline``."""
        end = time.monotonic() + deadline
        while True:
            with self._lock:
                requests = list(self.requests)
            if predicate(requests):
                return requests
            assert time.monotonic() < end, f"timed out waiting for {what}; got {[r['event']['type'] for r in requests]}"
            time.sleep(0.02)


def unused_port():
    """A port nothing listens on now (for a receiver that is down, then comes up there)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

"""A fake Perspective API on 127.0.0.1 for tests: scripted failures by markers in the text.

Markers (anywhere in the comment text): "[429xN]" / "[500xN]" / "[badjsonxN]" / "[slowxN]" make the
first N attempts at that text answer 429 / 500 / broken JSON / too slowly; "[always500]" never
succeeds; "[bad400]" is refused with a 400. Otherwise the reply carries a score derived from the
text's sha256, which `expected_score` reproduces.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PATH = "/v1alpha1/comments:analyze"


def expected_score(text: str, attribute: str) -> float:
    return round(hashlib.sha256(f"{attribute}:{text}".encode()).digest()[0] / 255, 6)


class FakePerspective:
    def __init__(self, key: str, slow_s: float = 0.6):
        self.key = key
        self.slow_s = slow_s
        self.requests: list[dict] = []  # one per request: t (monotonic), text, path, headers, body bytes
        self.attempts: Counter[str] = Counter()
        self._lock = threading.Lock()
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{PATH}"

    def __enter__(self) -> FakePerspective:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                arrived = time.monotonic()
                try:
                    body = json.loads(raw)
                    text = body["comment"]["text"]
                except (ValueError, KeyError):
                    return self._send(400, {"error": {"message": "bad request"}})
                with fake._lock:
                    fake.attempts[text] += 1
                    attempt = fake.attempts[text]
                    fake.requests.append(
                        {"t": arrived, "text": text, "path": self.path, "headers": dict(self.headers), "raw": raw}
                    )
                if self.path != PATH:
                    return self._send(404, {"error": {"message": "not found"}})
                if self.headers.get("X-Goog-Api-Key") != fake.key:
                    return self._send(403, {"error": {"message": "API key not valid"}})
                if "[always500]" in text:
                    return self._send(500, {"error": {"message": "backend error"}})
                if "[bad400]" in text:
                    return self._send(400, {"error": {"message": "Attribute TOXICITY does not support request languages"}})
                for marker, action in (("429", 429), ("500", 500), ("badjson", "badjson"), ("slow", "slow")):
                    m = re.search(rf"\[{marker}x(\d+)\]", text)
                    if m and attempt <= int(m.group(1)):
                        if action == "badjson":
                            return self._send_raw(200, b'{"attributeScores": {"TOXICITY": {"summaryScore": ')
                        if action == "slow":
                            time.sleep(fake.slow_s)
                            break
                        return self._send(action, {"error": {"message": "try later"}})
                scores = {
                    a: {"summaryScore": {"value": expected_score(text, a), "type": "PROBABILITY"}}
                    for a in body.get("requestedAttributes", {})
                }
                return self._send(200, {"attributeScores": scores, "languages": body.get("languages", [])})

            def _send(self, status, obj):
                self._send_raw(status, json.dumps(obj).encode())

            def _send_raw(self, status, data):
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass

        return Handler

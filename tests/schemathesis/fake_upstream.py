#!/usr/bin/env python3
"""A tiny OpenAI-compatible upstream for the schemathesis pass: one model,
`echo`, that answers chat completions (plain and streamed) and embeddings.
Listens on 127.0.0.1:PORT (argv[1]); no network beyond loopback."""

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = "echo"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_json(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            v = json.loads(raw or b"{}")
        except ValueError:
            return None
        return v if isinstance(v, dict) else None

    def do_GET(self):
        if self.path.rstrip("/") == "/v1/models":
            return self.send_json(
                200,
                {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "fake"}]},
            )
        self.send_json(404, {"error": {"message": "no such route", "type": "invalid_request_error"}})

    def do_POST(self):
        req = self.body()
        if req is None:
            return self.send_json(400, {"error": {"message": "bad json", "type": "invalid_request_error"}})
        now = int(time.time())
        usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        if self.path == "/v1/chat/completions":
            if req.get("stream") is True:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                chunks = [
                    {"id": "c1", "object": "chat.completion.chunk", "created": now, "model": MODEL,
                     "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi"}, "finish_reason": None}]},
                    {"id": "c1", "object": "chat.completion.chunk", "created": now, "model": MODEL,
                     "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": usage},
                ]
                for c in chunks:
                    self.chunk(f"data: {json.dumps(c)}\n\n".encode())
                self.chunk(b"data: [DONE]\n\n")
                self.chunk(b"")
                return
            return self.send_json(200, {
                "id": "c1", "object": "chat.completion", "created": now, "model": MODEL,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
                "usage": usage,
            })
        if self.path == "/v1/embeddings":
            return self.send_json(200, {
                "object": "list", "model": MODEL,
                "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}],
                "usage": {"prompt_tokens": 3, "total_tokens": 3},
            })
        self.send_json(404, {"error": {"message": "no such route", "type": "invalid_request_error"}})

    def chunk(self, data):
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()

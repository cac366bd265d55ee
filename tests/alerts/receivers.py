"""Local stand-ins for the vendors' webhook endpoints: real HTTP servers on 127.0.0.1.

Each receiver checks what the vendor checks, written from the vendor's documentation and not from
llmtally's code: the signature scheme (recomputed here), the token in the URL and the payload's shape,
and answers the way the vendor does, error codes included.  ``script`` holds canned answers served
first (e.g. two 503s before the real handling) to test retries.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Answer = tuple[int, dict[str, str], bytes]


@dataclass
class Request:
    """One request as received."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


def _json(status: int, obj: Any) -> Answer:
    return status, {"Content-Type": "application/json"}, json.dumps(obj).encode()


@dataclass
class Receiver:
    """``with Receiver(handler) as r: … r.url … r.requests``."""

    handler: Callable[[Request], Answer]
    script: list[Answer] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)

    def __enter__(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                parts = urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
                request = Request(parts.path, query, {k.lower(): v for k, v in self.headers.items()}, body)
                receiver.requests.append(request)
                status, headers, out = (
                    receiver.script.pop(0) if receiver.script else receiver.handler(request)
                )
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"


def closed_port_url(path: str = "/hook") -> str:
    """A URL nobody listens on (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


# ------------------------------------------------------------------ the vendors, from their docs
SLACK_PATH = "/services/T0000/B0000/XXXXXXXX"


def slack(request: Request) -> Answer:
    """Slack incoming webhook: 200 ``ok``; 404 ``no_service``; 400 ``invalid_payload``."""
    if request.path != SLACK_PATH:
        return 404, {}, b"no_service"
    try:
        payload = request.json()
    except ValueError:
        return 400, {}, b"invalid_payload"
    blocks = payload.get("blocks", [])
    if not isinstance(payload.get("text"), str) or not isinstance(blocks, list) or len(blocks) > 50:
        return 400, {}, b"invalid_payload"
    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            ok = block["text"]["type"] == "plain_text" and len(block["text"]["text"]) <= 150
        elif kind == "section":
            ok = block["text"]["type"] == "mrkdwn" and 0 < len(block["text"]["text"]) <= 3000
        elif kind == "context":
            ok = 0 < len(block["elements"]) <= 10
        else:
            ok = False
        if not ok:
            return 400, {}, b"invalid_blocks"
    return 200, {"Content-Type": "text/html"}, b"ok"


@dataclass
class DingTalk:
    """Custom robot: ``access_token`` in the query; 加签: ``timestamp`` (ms) and ``sign`` in the query."""

    token: str
    secret: str | None = None

    def __call__(self, request: Request) -> Answer:
        if request.path != "/robot/send" or request.query.get("access_token") != self.token:
            return _json(200, {"errcode": 300001, "errmsg": "token is not exist"})
        if self.secret is not None:
            timestamp, sign = request.query.get("timestamp", ""), request.query.get("sign", "")
            if not timestamp.isdigit() or abs(time.time() * 1000 - int(timestamp)) > 3600 * 1000:
                return _json(200, {"errcode": 310000, "errmsg": "invalid timestamp"})
            # HmacSHA256(key=secret, message=timestamp + "\n" + secret), then Base64 (the query is URL-decoded)
            mac = hmac.new(self.secret.encode(), (timestamp + "\n" + self.secret).encode(), hashlib.sha256)
            if not hmac.compare_digest(base64.b64encode(mac.digest()).decode(), sign):
                return _json(200, {"errcode": 310000, "errmsg": "sign not match"})
        payload = request.json()
        markdown = payload.get("markdown") or {}
        if payload.get("msgtype") != "markdown" or not markdown.get("title") or not markdown.get("text"):
            return _json(200, {"errcode": 40035, "errmsg": "缺少参数 json"})
        return _json(200, {"errcode": 0, "errmsg": "ok"})


@dataclass
class Feishu:
    """Custom bot: 签名校验 ``sign = Base64(HmacSHA256(key=timestamp + "\\n" + secret, msg=""))``."""

    secret: str | None = None

    def __call__(self, request: Request) -> Answer:
        if not request.path.startswith("/open-apis/bot/v2/hook/"):
            return _json(404, {"code": 19001, "msg": "param invalid: incoming webhook access token invalid"})
        payload = request.json()
        if self.secret is not None:
            timestamp = str(payload.get("timestamp", ""))
            key = f"{timestamp}\n{self.secret}".encode()
            expected = base64.b64encode(hmac.new(key, b"", digestmod=hashlib.sha256).digest()).decode()
            fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) <= 3600
            if not fresh or not hmac.compare_digest(expected, str(payload.get("sign", ""))):
                return _json(
                    200,
                    {
                        "code": 19021,
                        "msg": "sign match fail or timestamp is not within one hour from current time",
                        "data": {},
                    },
                )
        card = payload.get("card") or {}
        if payload.get("msg_type") != "interactive" or not card.get("header", {}).get("title", {}).get(
            "content"
        ):
            return _json(200, {"code": 9499, "msg": "Bad Request", "data": {}})
        if not all(e.get("tag") == "markdown" and e.get("content") for e in card.get("elements", [])):
            return _json(200, {"code": 9499, "msg": "Bad Request", "data": {}})
        return _json(200, {"code": 0, "data": {}, "msg": "success"})


@dataclass
class WeCom:
    """Group robot: ``key`` in the query; markdown content ≤ 4096 bytes of UTF-8."""

    key: str

    def __call__(self, request: Request) -> Answer:
        if request.path != "/cgi-bin/webhook/send" or request.query.get("key") != self.key:
            return _json(200, {"errcode": 93000, "errmsg": "invalid webhook url, hint: [1700000000_1_x]"})
        payload = request.json()
        content = (payload.get("markdown") or {}).get("content")
        if payload.get("msgtype") != "markdown" or not isinstance(content, str) or not content:
            return _json(200, {"errcode": 40008, "errmsg": "invalid message type"})
        if len(content.encode("utf-8")) > 4096:
            return _json(200, {"errcode": 40058, "errmsg": "markdown.content exceed max length 4096"})
        return _json(200, {"errcode": 0, "errmsg": "ok"})


@dataclass
class Webhook:
    """llmtally's own webhook (docs/alerts.md): GitHub-style ``sha256=<hex>`` HMAC of the raw body."""

    secret: str | None = None

    def __call__(self, request: Request) -> Answer:
        if self.secret is not None:
            given = request.headers.get("x-llmtally-signature", "")
            expected = "sha256=" + hmac.new(self.secret.encode(), request.body, hashlib.sha256).hexdigest()
            if (
                not hmac.compare_digest(given, expected)
                or not request.headers.get("x-llmtally-timestamp", "").isdigit()
            ):
                return 401, {}, b"bad signature"
        payload = request.json()
        if payload.get("version") != 1 or payload.get("source") != "llmtally":
            return 422, {}, b"unknown payload"
        return 204, {}, b""

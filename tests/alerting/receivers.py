"""Real local receivers for delivery tests: an SMTP server (aiosmtpd) and an HTTP webhook server."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Mailbox:
    messages: list[EmailMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    refused: set[str] = field(default_factory=set)  # recipients answered "550 ... <address>: user unknown"

    async def handle_RCPT(  # noqa: N802
        self, _server: SMTP, _session: Session, envelope: Envelope, address: str, _options: list[str]
    ) -> str:
        if address in self.refused:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"  # as Postfix says it
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:  # noqa: N802
        raw = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        with self.lock:
            message = message_from_bytes(raw, policy=policy.default)
            assert isinstance(message, EmailMessage)
            self.messages.append(message)
        return "250 OK"

    def wait(self, count: int, timeout: float) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.02)
        with self.lock:
            return list(self.messages)


def start_smtp(port: int) -> tuple[Controller, Mailbox]:
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    return controller, box


@dataclass
class Hit:
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookServer:
    """Answers like the real robots: /wecom and /dingtalk with errcode 0, /json with 200, /broken with 500."""

    def __init__(self, port: int) -> None:
        self.hits: list[Hit] = []
        hits = self.hits

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                path, _, query = self.path.partition("?")
                hits.append(Hit(path, query, {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length)))
                if path == "/broken":
                    self.send_response(500)
                    self.end_headers()
                    return
                if path.startswith("/reply/"):  # /reply/<url-encoded JSON>: answers 200 with exactly that body
                    body = urllib.parse.unquote(path.removeprefix("/reply/")).encode()
                else:
                    body = b'{"errcode":0,"errmsg":"ok"}' if path in ("/wecom", "/dingtalk") else b"{}"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

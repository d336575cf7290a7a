"""Delivery channels. Each sends one message to one address and returns a receipt, or raises.

- e-mail over SMTP (stdlib smtplib in a worker thread; one message per recipient per send cycle; the whole
  conversation has a deadline, after which the socket is shut from a timer, so that a server answering a byte
  at a time never keeps a worker thread);
- WeCom (企业微信) and DingTalk (钉钉) group robots, in their documented JSON formats (DingTalk's
  optional signature: HMAC-SHA256 over ``timestamp + "\\n" + secret``);
- a generic JSON webhook signed with HMAC-SHA256 over ``timestamp + "." + body``
  (headers ``X-Eldercare-Timestamp``, ``X-Eldercare-Signature: sha256=<hex>``, ``X-Eldercare-Delivery``);
- SMS through an :class:`SmsProvider`: :class:`HttpSmsProvider` for a provider's HTTP API and
  :class:`FileSmsProvider`, which appends to a local JSON-lines file (development and demos).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import smtplib
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any, Protocol

import httpx


class DeliveryError(Exception):
    """A channel could not deliver; ``reason`` says why (no address or secret is repeated in it)."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(f"{kind}: {reason}")
        self.kind = kind
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Message:
    delivery_id: str  # the notification ids, joined: lets a receiver drop a repeat
    subject: str
    text: str
    payload: dict[str, Any] = field(default_factory=dict)  # structured form for JSON webhooks


class Channel(Protocol):
    @property
    def kind(self) -> str: ...

    async def send(self, *, address: str, secret: str | None, message: Message) -> str: ...


@dataclass(frozen=True, slots=True)
class EmailChannel:
    host: str
    port: int
    sender: str
    timeout_s: float = 10.0  # each socket operation
    deadline_s: float = 15.0  # the whole conversation
    kind: str = "email"

    def _send(self, address: str, message: Message) -> str:
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = address
        mail["Subject"] = message.subject
        msgid = make_msgid(idstring=message.delivery_id, domain="eldercare.local")
        mail["Message-ID"] = msgid
        mail["X-Eldercare-Delivery"] = message.delivery_id
        mail.set_content(message.text)
        smtp = smtplib.SMTP(timeout=self.timeout_s)  # not connected yet: the deadline covers the connect too
        cut = threading.Event()
        timer = threading.Timer(self.deadline_s, _cut, (smtp, cut))
        timer.daemon = True
        timer.start()
        try:
            with smtp:
                smtp.connect(self.host, self.port)
                smtp.send_message(mail)
        except (OSError, smtplib.SMTPException) as exc:
            if cut.is_set():
                raise DeliveryError(self.kind, f"SMTP: no answer within {self.deadline_s:g} s") from exc
            raise
        finally:
            timer.cancel()
        return msgid

    async def send(self, *, address: str, secret: str | None, message: Message) -> str:
        try:
            return await asyncio.to_thread(self._send, address, message)
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(self.kind, f"SMTP: {_smtp_reason(exc)}") from exc


def _cut(smtp: smtplib.SMTP, cut: threading.Event) -> None:
    """The deadline passed: shut the socket, so that the worker's blocked read or write fails at once."""
    cut.set()
    sock = smtp.sock
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed: the conversation ended as the timer fired
            sock.shutdown(socket.SHUT_RDWR)


def _smtp_reason(exc: OSError | smtplib.SMTPException) -> str:
    """The exception's class and SMTP reply code only: servers repeat the recipient's address in the text."""
    name = exc.__class__.__name__
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{name} {exc.smtp_code}"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = sorted({code for code, _ in exc.recipients.values()})
        return f"{name} {','.join(str(code) for code in codes)}"
    return name


async def _post(
    kind: str,
    client: httpx.AsyncClient,
    url: str,
    *,
    json: object = None,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    try:
        response = await client.post(url, json=json, content=content, headers=headers)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:  # InvalidURL (a mistyped address) is no HTTPError
        raise DeliveryError(kind, f"{exc.__class__.__name__}") from exc
    if response.status_code >= 300:
        raise DeliveryError(kind, f"HTTP {response.status_code}")
    return response


def _robot_ok(kind: str, response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError as exc:
        raise DeliveryError(kind, "the robot answered with something that is not JSON") from exc
    if not isinstance(body, dict):
        raise DeliveryError(kind, f"the robot answered with a JSON {type(body).__name__}, not an object")
    if body.get("errcode") != 0:
        raise DeliveryError(kind, f"robot errcode {body.get('errcode')}: {body.get('errmsg')}")
    return f"{kind}:ok"


@dataclass(frozen=True, slots=True)
class WeComChannel:
    client: httpx.AsyncClient
    kind: str = "webhook_wecom"

    async def send(self, *, address: str, secret: str | None, message: Message) -> str:
        body = {"msgtype": "text", "text": {"content": f"{message.subject}\n{message.text}"}}
        return _robot_ok(self.kind, await _post(self.kind, self.client, address, json=body))


def dingtalk_signed_url(url: str, secret: str, *, now_ms: int | None = None) -> str:
    timestamp = str(now_ms if now_ms is not None else int(time.time() * 1000))
    digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
    sign = urllib.parse.quote_plus(base64.b64encode(digest).decode())
    joiner = "&" if "?" in url else "?"
    return f"{url}{joiner}timestamp={timestamp}&sign={sign}"


@dataclass(frozen=True, slots=True)
class DingTalkChannel:
    client: httpx.AsyncClient
    kind: str = "webhook_dingtalk"

    async def send(self, *, address: str, secret: str | None, message: Message) -> str:
        url = dingtalk_signed_url(address, secret) if secret else address
        body = {"msgtype": "text", "text": {"content": f"{message.subject}\n{message.text}"}}
        return _robot_ok(self.kind, await _post(self.kind, self.client, url, json=body))


def json_signature(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class JsonWebhookChannel:
    client: httpx.AsyncClient
    kind: str = "webhook_json"

    async def send(self, *, address: str, secret: str | None, message: Message) -> str:
        body = json.dumps(
            {"delivery": message.delivery_id, "subject": message.subject, "text": message.text, **message.payload},
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Eldercare-Delivery": message.delivery_id,
            "X-Eldercare-Timestamp": timestamp,
        }
        if secret:
            headers["X-Eldercare-Signature"] = json_signature(secret, timestamp, body)
        await _post(self.kind, self.client, address, content=body, headers=headers)
        return f"{self.kind}:{message.delivery_id}"


class SmsProvider(Protocol):
    async def send_sms(self, *, phone: str, text: str, delivery_id: str) -> str: ...


@dataclass(frozen=True, slots=True)
class HttpSmsProvider:
    """A provider's HTTP API: POST {to, text, id} with a bearer key; the provider's message id back."""

    client: httpx.AsyncClient
    url: str
    api_key: str

    async def send_sms(self, *, phone: str, text: str, delivery_id: str) -> str:
        response = await _post(
            "sms",
            self.client,
            self.url,
            json={"to": phone, "text": text, "id": delivery_id},
            headers={"Authorization": f"Bearer {self.api_key}"},
        )
        try:
            body = response.json()
        except ValueError:
            return delivery_id
        return str(body.get("message_id", delivery_id)) if isinstance(body, dict) else delivery_id


@dataclass(frozen=True, slots=True)
class FileSmsProvider:
    """Appends each SMS to a JSON-lines file: the local stand-in for a provider, for development."""

    path: Path

    async def send_sms(self, *, phone: str, text: str, delivery_id: str) -> str:
        line = json.dumps({"to": phone, "text": text, "id": delivery_id, "at": time.time()}, ensure_ascii=False)

        def write() -> None:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(line + "\n")

        await asyncio.to_thread(write)
        return f"file:{delivery_id}"


@dataclass(frozen=True, slots=True)
class SmsChannel:
    provider: SmsProvider
    kind: str = "sms"

    async def send(self, *, address: str, secret: str | None, message: Message) -> str:
        return await self.provider.send_sms(
            phone=address, text=f"{message.subject} {message.text}"[:300], delivery_id=message.delivery_id
        )

"""Bring the whole stack up, down, or ask how it is: what ``eldercare stack`` and the tests call.

``up`` is idempotent: parts already running are checked, not restarted, so a second ``up`` takes well
under a second. It records the ports in ``<state>/stack.json`` and writes ``<state>/eldercare.env`` for
``platform/config.py``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from eldercare.platform.stack import broker, broker_auth, credentials, postgres
from eldercare.platform.stack.errors import StackError
from eldercare.platform.stack.host import ensure_dir, write_private
from eldercare.platform.stack.layout import env_file, stack_file
from eldercare.platform.stack.model import Ports, StackInfo
from eldercare.platform.stack.tls import tls_files

DEFAULT_MQTT_HOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class PartStatus:
    name: str
    running: bool
    healthy: bool
    detail: str  # the version when healthy, what is wrong otherwise
    urls: tuple[str, ...]  # passwords masked


@dataclass(frozen=True, slots=True)
class StackStatus:
    state_dir: Path
    parts: tuple[PartStatus, ...]

    @property
    def healthy(self) -> bool:
        return all(part.healthy for part in self.parts)

    @property
    def running(self) -> bool:
        return any(part.running for part in self.parts)


def up(state_dir: Path, ports: Ports, *, mqtt_host: str = DEFAULT_MQTT_HOST) -> StackInfo:
    """Start what is not running, on ``ports``, with data under ``state_dir``; return how to reach it."""
    state_dir = state_dir.resolve()
    if not state_dir.exists():
        ensure_dir(state_dir, mode=0o711)
    _refuse_other_ports(state_dir, ports=ports, mqtt_host=mqtt_host)
    secrets = credentials.load_or_create(state_dir)
    info = _info(state_dir, ports=ports, mqtt_host=mqtt_host, secrets=secrets)

    if postgres.running_pid(state_dir) is None:
        postgres.prepare(state_dir=state_dir, port=ports.postgres)
        postgres.start(state_dir)
        postgres.bootstrap(state_dir, port=ports.postgres, password=secrets.database_password)
        postgres.check_health(database_url=info.database_url)
    else:
        try:
            postgres.check_health(database_url=info.database_url)
        except StackError:  # running, but the role, database or extension is missing or stale
            postgres.bootstrap(state_dir, port=ports.postgres, password=secrets.database_password)
            postgres.check_health(database_url=info.database_url)

    changed = broker.prepare(
        state_dir=state_dir, ports=ports, host=mqtt_host, platform_password=secrets.broker_password
    )
    if broker.running_pid(state_dir) is None:
        broker.start(
            state_dir=state_dir,
            host=info.mqtt_host,
            port=ports.mqtt_tls,
            ca_file=info.ca_file,
            password=secrets.broker_password,
        )
    else:
        if changed:
            broker_auth.reload_broker(state_dir)
        _broker_health(info)

    record = {"ports": asdict(ports), "mqtt_host": mqtt_host}
    write_private(stack_file(state_dir), json.dumps(record, indent=2) + "\n", mode=0o644)
    write_private(env_file(state_dir), env_text(info, data_key=secrets.data_key), mode=0o600)
    return info


def down(state_dir: Path) -> None:
    """Stop the broker and the database cleanly; parts not running are skipped."""
    state_dir = state_dir.resolve()
    problems: list[StackError] = []
    for stop in (broker.stop, postgres.stop):
        try:
            stop(state_dir)
        except StackError as exc:
            problems.append(exc)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise StackError("stack", "\n".join(str(problem) for problem in problems))


def status(state_dir: Path) -> StackStatus:
    state_dir = state_dir.resolve()
    try:
        info = load(state_dir)
    except StackError as exc:
        parts = tuple(
            PartStatus(name=name, running=False, healthy=False, detail=exc.reason, urls=())
            for name in (postgres.PART, broker.PART)
        )
        return StackStatus(state_dir=state_dir, parts=parts)
    return StackStatus(state_dir=state_dir, parts=(_postgres_status(info), _broker_status(info)))


def load(state_dir: Path) -> StackInfo:
    """How to reach the stack last brought up in ``state_dir`` (running or not)."""
    state_dir = state_dir.resolve()
    ports, mqtt_host = recorded(state_dir)
    return _info(state_dir, ports=ports, mqtt_host=mqtt_host, secrets=credentials.load(state_dir))


def recorded(state_dir: Path) -> tuple[Ports, str]:
    """The ports and TLS host of the last ``up`` in ``state_dir``."""
    path = stack_file(state_dir)
    try:
        document = json.loads(path.read_text())
        return Ports(**document["ports"]), str(document["mqtt_host"])
    except FileNotFoundError:
        raise StackError("state", f"no stack in {state_dir}; run `eldercare stack up` first") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise StackError("state", f"{path} is damaged: {exc}") from exc


def env_text(info: StackInfo, *, data_key: str) -> str:
    values = {
        "DATABASE_URL": info.database_url,
        "ADMIN_DATABASE_URL": info.admin_database_url,
        "MQTT_HOST": info.mqtt_host,
        "MQTT_PORT": str(info.ports.mqtt_tls),
        "MQTT_TLS": "true",
        "MQTT_CA_FILE": str(info.ca_file),
        "MQTT_USERNAME": info.platform_username,
        "MQTT_PASSWORD": info.platform_password,
        "DATA_KEY": data_key,
        "API_PORT": str(info.ports.api),
    }
    header = "# Written by `eldercare stack up`; read by eldercare.platform.config.\n"
    return header + "".join(f"ELDERCARE_{name}={value}\n" for name, value in values.items())


def _info(state_dir: Path, *, ports: Ports, mqtt_host: str, secrets: credentials.Secrets) -> StackInfo:
    return StackInfo(
        state_dir=state_dir,
        ports=ports,
        database_url=postgres.app_url(port=ports.postgres, password=secrets.database_password),
        admin_database_url=postgres.admin_url(state_dir, port=ports.postgres),
        ca_file=tls_files(state_dir).ca_cert,
        platform_username=broker_auth.PLATFORM,
        platform_password=secrets.broker_password,
        mqtt_host=broker.client_host(mqtt_host),
    )


def _refuse_other_ports(state_dir: Path, *, ports: Ports, mqtt_host: str) -> None:
    if not stack_file(state_dir).exists():
        return
    if postgres.running_pid(state_dir) is None and broker.running_pid(state_dir) is None:
        return
    old_ports, old_host = recorded(state_dir)
    if (old_ports, old_host) != (ports, mqtt_host):
        raise StackError(
            "stack",
            f"already running in {state_dir} with {old_ports} on {old_host}; "
            "run `eldercare stack down` first to change ports",
        )


def _broker_health(info: StackInfo) -> None:
    broker.check_health(
        host=info.mqtt_host,
        port=info.ports.mqtt_tls,
        ca_file=info.ca_file,
        username=info.platform_username,
        password=info.platform_password,
    )


def _postgres_status(info: StackInfo) -> PartStatus:
    urls = (_masked(info.database_url), info.admin_database_url)
    if postgres.running_pid(info.state_dir) is None:
        return PartStatus(name=postgres.PART, running=False, healthy=False, detail="not running", urls=urls)
    try:
        detail = postgres.check_health(database_url=info.database_url)
    except StackError as exc:
        return PartStatus(name=postgres.PART, running=True, healthy=False, detail=exc.reason, urls=urls)
    return PartStatus(name=postgres.PART, running=True, healthy=True, detail=detail, urls=urls)


def _broker_status(info: StackInfo) -> PartStatus:
    urls = (
        f"mqtts://{info.platform_username}@{info.mqtt_host}:{info.ports.mqtt_tls} (CA {info.ca_file})",
        f"mqtt://{info.platform_username}@127.0.0.1:{info.ports.mqtt}",
    )
    if broker.running_pid(info.state_dir) is None:
        return PartStatus(name=broker.PART, running=False, healthy=False, detail="not running", urls=urls)
    try:
        _broker_health(info)
    except StackError as exc:
        return PartStatus(name=broker.PART, running=True, healthy=False, detail=exc.reason, urls=urls)
    return PartStatus(name=broker.PART, running=True, healthy=True, detail="platform login over TLS works", urls=urls)


def _masked(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{parts.hostname}:{parts.port}"))

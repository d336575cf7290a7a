"""Production's broker logins: the platform writes them into a shared folder, the broker's entrypoint applies them.

The entrypoint (deploy/mosquitto/entrypoint.sh) runs here with Debian's mosquitto and the production
mosquitto.conf (its TLS listener moved to a free port, its folders to temporary ones, the secrets root's only),
under dash and under busybox with only busybox's commands on PATH, as in the eclipse-mosquitto image. Run as
root, as in the image, mosquitto drops to the ``mosquitto`` user and the platform's side runs as another user.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from paho.mqtt.reasoncodes import ReasonCode
from tests.mqtt_session import WAIT, Session

from eldercare.platform.api.errors import Problem
from eldercare.platform.registry import service
from eldercare.platform.registry.broker import SharedBroker, applied, from_settings
from eldercare.platform.stack.errors import StackError
from eldercare.platform.stack.tls import ensure_certificates, tls_files

REPO = Path(__file__).resolve().parents[1]
ENTRYPOINT = REPO / "deploy" / "mosquitto" / "entrypoint.sh"
CONF = REPO / "deploy" / "mosquitto" / "mosquitto.conf"
MOSQUITTO = "/usr/sbin/mosquitto"
BUSYBOX = "/bin/busybox"
NOT_AUTHORIZED = 135
INSTITUTION = "91420500MA4ABCDE1X"
ROOT = os.geteuid() == 0
# The platform's side runs as this user when the tests run as root (the image's platform user is not root).
PLATFORM_USER = "nobody"


@dataclass
class Broker:
    """The entrypoint as a process, and where it keeps everything."""

    base: Path
    port: int
    shell: str
    mosquitto: str = MOSQUITTO
    process: subprocess.Popen[bytes] | None = None

    @property
    def auth(self) -> Path:
        return self.base / "auth"

    @property
    def live(self) -> Path:
        return self.base / "live"

    @property
    def run_dir(self) -> Path:
        return self.base / "run"

    @property
    def output(self) -> Path:
        return self.base / "entrypoint.log"

    @property
    def ca_file(self) -> Path:
        return tls_files(self.base / "pki").ca_cert

    def platform_uid(self) -> int:
        return pwd.getpwnam(PLATFORM_USER).pw_uid if ROOT else os.geteuid()

    def start(self) -> None:
        config = self.base / "mosquitto.conf"
        config.write_text(_test_config(CONF.read_text(), base=self.base, port=self.port))
        env = {
            "MOSQUITTO": self.mosquitto,
            "ELDERCARE_BROKER_AUTH_DIR": str(self.auth),
            "ELDERCARE_BROKER_LIVE_DIR": str(self.live),
            "ELDERCARE_BROKER_RUN_DIR": str(self.run_dir),
            "ELDERCARE_BROKER_DATA_DIR": str(self.base / "data"),
            "ELDERCARE_PLATFORM_UID": str(self.platform_uid()),
            "ELDERCARE_BROKER_TLS_FILES": " ".join(str(path) for path in _secrets(self.base)),
        }
        if self.shell == "busybox":
            command = [BUSYBOX, "sh", str(ENTRYPOINT), str(config)]
            env["PATH"] = str(_busybox_bin(self.base))
        else:
            command = ["/bin/dash", str(ENTRYPOINT), str(config)]
            env["PATH"] = "/usr/bin:/bin"
        (self.base / "data").mkdir(exist_ok=True)
        with self.output.open("ab") as out:
            self.process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not (self.run_dir / "ready").exists():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError(f"the entrypoint did not report ready:\n{self.log()}")
            time.sleep(0.02)

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=10)
        self.process = None
        return code

    def log(self) -> str:
        return self.output.read_text(errors="replace") if self.output.exists() else ""

    def reader_pid(self) -> int:
        """The entrypoint's log reader: its child that is a copy of its shell (not mosquitto, not a sleep). A
        command substitution is such a copy too, for a moment: asked until there is one copy only."""
        assert self.process is not None
        pid = self.process.pid
        own = Path(f"/proc/{pid}/cmdline").read_bytes()
        deadline = time.monotonic() + 5
        while True:
            copies = []
            for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
                try:
                    if Path(f"/proc/{child}/cmdline").read_bytes() == own:
                        copies.append(int(child))
                except FileNotFoundError:  # it ended meanwhile
                    continue
            if len(copies) == 1:
                return copies[0]
            assert time.monotonic() < deadline, f"copies of the entrypoint's shell: {copies}"
            time.sleep(0.01)

    def broker_pids(self) -> list[int]:
        marker = f"^{self.mosquitto} -c {self.base / 'mosquitto.conf'}"  # mosquitto itself, not the entrypoint
        found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True, check=False)
        return [int(pid) for pid in found.stdout.split()]


def _test_config(text: str, *, base: Path, port: int) -> str:
    """The production configuration with temporary folders, its TLS listener on a free port of 127.0.0.1."""
    text = text.replace("/mosquitto/live/", f"{base}/live/").replace("/mosquitto/data/", f"{base}/data/")
    swapped = re.sub(r"(?m)^listener 8883$", f"listener {port} 127.0.0.1", text)
    assert swapped != text, "deploy/mosquitto/mosquitto.conf no longer has `listener 8883`"
    return swapped


def _secrets(base: Path) -> list[Path]:
    """The three TLS secrets under compose's names, readable by their owner only, as root's in the image."""
    folder = base / "secrets"
    names = {"mqtt_ca": "ca_cert", "mqtt_server_cert": "server_cert", "mqtt_server_key": "server_key"}
    if not folder.exists():
        made = ensure_certificates(state_dir=base / "pki", hosts=("127.0.0.1", "localhost"))
        folder.mkdir(mode=0o700)
        for name, field in names.items():
            shutil.copyfile(getattr(made, field), folder / name)
            (folder / name).chmod(0o600)
    return [folder / name for name in names]


def _busybox_bin(base: Path) -> Path:
    """A folder of busybox's commands: the userland of the eclipse-mosquitto (Alpine) image."""
    folder = base / "busybox-bin"
    if not folder.exists():
        folder.mkdir()
        subprocess.run([BUSYBOX, "--install", "-s", str(folder)], check=True)
    return folder


@pytest.fixture
def clients() -> Iterator[Callable[[Broker, str, str], Session]]:
    opened: list[Session] = []

    def open_client(broker: Broker, username: str, password: str) -> Session:
        client = session(broker, username, password)
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        client.close()


def session(broker: Broker, username: str, password: str) -> Session:
    return Session("127.0.0.1", broker.port, username, password, ca_file=broker.ca_file)


def login(broker: Broker, username: str, password: str) -> ReasonCode:
    """A fresh connection's CONNACK reason code."""
    client = session(broker, username, password)
    try:
        return client.connect()
    finally:
        client.close()


@pytest.fixture(params=["dash", "busybox"])
def shell(request: pytest.FixtureRequest) -> str:
    for needed in (MOSQUITTO, BUSYBOX, "/bin/dash"):
        assert Path(needed).exists(), f"{needed} is required (make setup installs it)"
    return str(request.param)


@pytest.fixture
def base() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="ec-broker-", dir="/tmp"))
    folder.chmod(0o755)  # the platform's user and mosquitto's walk into it, as into the volumes
    yield folder
    shutil.rmtree(folder)


@pytest.fixture
def broker(shell: str, base: Path, free_port: Callable[[], int]) -> Iterator[Broker]:
    started = Broker(base=base, port=free_port(), shell=shell)
    started.start()
    yield started
    if started.process is not None:
        started.stop()


def broker_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``eldercare broker ARGS`` as a process, with only ``env`` for settings (no env file)."""
    return subprocess.run(
        [sys.executable, "-m", "eldercare.cli", "broker", *args],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/tmp", "ELDERCARE_ENV_FILE": "/nonexistent"}
        | env,
        capture_output=True,
        text=True,
        check=False,
        cwd="/tmp",
    )


def setup_cli(broker: Broker, password: str, *, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    """``eldercare broker setup``, like the compose service."""
    return broker_cli(
        "setup",
        "--timeout",
        str(timeout),
        ELDERCARE_BROKER_AUTH_DIR=str(broker.auth),
        ELDERCARE_MQTT_USERNAME="platform",
        ELDERCARE_MQTT_PASSWORD=password,
    )


def as_platform_user(work: Callable[[], None]) -> None:
    """Run ``work`` in a child process as the platform's user (not root), as in the platform's container."""
    pid = os.fork()
    if pid == 0:  # the child: drop to the user, do the work, report by exit status only
        code = 1
        try:
            if ROOT:
                entry = pwd.getpwnam(PLATFORM_USER)
                os.setgroups([])
                os.setgid(entry.pw_gid)
                os.setuid(entry.pw_uid)
            work()
            code = 0
        except BaseException as exc:  # reported to the parent through the exit status
            print(f"as {PLATFORM_USER}: {exc!r}", file=sys.stderr)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the platform user's work failed (see stderr)"


def test_setup_gives_the_platform_its_login_and_changes_it(broker: Broker) -> None:
    assert login(broker, "platform", "pw-one").value == NOT_AUTHORIZED  # nobody may log in at first

    done = setup_cli(broker, "pw-one")
    assert done.returncode == 0, done.stderr + broker.log()
    assert "the broker loaded it" in done.stdout
    assert not login(broker, "platform", "pw-one").is_failure
    assert login(broker, "platform", "wrong").value == NOT_AUTHORIZED

    assert setup_cli(broker, "pw-two").returncode == 0
    assert login(broker, "platform", "pw-one").value == NOT_AUTHORIZED
    assert not login(broker, "platform", "pw-two").is_failure


def test_the_platform_writes_as_its_own_user_and_mosquitto_reads_only_its_copies(broker: Broker) -> None:
    shared = SharedBroker(broker.auth)
    as_platform_user(lambda: shared.provision(institution=INSTITUTION, gateway="gw-own", password="own-pw"))
    assert not login(broker, "gw-own", "own-pw").is_failure
    assert broker.auth.stat().st_uid == broker.platform_uid()  # the entrypoint gave the folder to the platform
    assert (broker.auth / "passwd").stat().st_uid == broker.platform_uid()
    assert broker.auth.stat().st_mode & 0o777 == 0o700
    broker_uid = pwd.getpwnam("mosquitto").pw_uid if ROOT else os.geteuid()
    for name in ("passwd", "acl", "mqtt_server_key"):  # the TLS key too: mosquitto reads it as its user
        info = (broker.live / name).stat()
        assert (info.st_uid, info.st_mode & 0o777) == (broker_uid, 0o600)


def test_a_gateway_can_log_in_when_provisioning_returns_and_revoking_locks_it_out_at_once(
    broker: Broker, clients: Callable[[Broker, str, str], Session]
) -> None:
    assert setup_cli(broker, "platform-pw").returncode == 0
    shared = SharedBroker(broker.auth)
    shared.provision(institution=INSTITUTION, gateway="gw-prod-1", password="gw-pw")

    platform = clients(broker, "platform", "platform-pw")
    assert not platform.connect().is_failure
    assert not platform.subscribe("eldercare/v1/#").is_failure
    gateway = clients(broker, "gw-prod-1", "gw-pw")
    assert not gateway.connect().is_failure
    topic = f"eldercare/v1/{INSTITUTION}/gw-prod-1/up/telemetry"
    assert not gateway.publish(topic, b"{}").is_failure
    assert platform.next_message().topic == topic  # the ACL that came with the login

    shared.revoke(gateway="gw-prod-1")
    revoked = time.monotonic()
    gateway.disconnects.get(timeout=WAIT)
    assert time.monotonic() - revoked < 1.0
    assert login(broker, "gw-prod-1", "gw-pw").value == NOT_AUTHORIZED
    shared.revoke(gateway="gw-prod-1")  # again: applied again, and still fine


def test_concurrent_provisioning_each_returns_only_once_its_login_works(broker: Broker) -> None:
    shared = SharedBroker(broker.auth)
    names = [f"gw-many-{n}" for n in range(6)]
    failures: list[str] = []

    def provision_then_log_in(name: str) -> None:
        shared.provision(institution=INSTITUTION, gateway=name, password=f"pw-{name}")
        code = login(broker, name, f"pw-{name}")
        if code.is_failure:
            failures.append(f"{name}: {code}")

    threads = [threading.Thread(target=provision_then_log_in, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == [], broker.log()
    assert applied(broker.auth) >= 1


def test_logins_written_while_the_broker_was_down_are_loaded_when_it_starts(broker: Broker) -> None:
    assert broker.stop() == 0  # SIGTERM to the entrypoint: mosquitto stops cleanly and takes it along
    assert broker.broker_pids() == []
    assert "mosquitto exited with status 0" in broker.log()

    waiting = SharedBroker(broker.auth, timeout_s=0.5)
    with pytest.raises(StackError, match="did not acknowledge"):
        waiting.provision(institution=INSTITUTION, gateway="gw-late", password="late-pw")
    with pytest.raises(Problem) as caught:  # what the API answers: try again, the gateway is not registered
        asyncio.run(service.provision(waiting, institution=INSTITUTION, gateway="gw-late", password="late-pw"))
    assert caught.value.status == 503

    broker.start()
    assert not login(broker, "gw-late", "late-pw").is_failure
    assert applied(broker.auth) >= 2  # the start acknowledged both requests made while it was down


def test_the_entrypoint_copes_with_a_broker_that_exits(broker: Broker) -> None:
    (pid,) = broker.broker_pids()
    os.kill(pid, signal.SIGKILL)
    assert broker.process is not None
    code = broker.process.wait(timeout=10)
    broker.process = None
    assert code == 128 + signal.SIGKILL  # the container stops with it, and its restart policy starts a new one
    assert not (broker.run_dir / "ready").exists()


def test_the_entrypoint_stops_the_broker_when_its_log_reader_dies(broker: Broker) -> None:
    """Without the reader no reload is acknowledged: the platform would answer 503 to every registration while
    mosquitto ran on. The container stops instead, and its restart policy starts a whole one."""
    os.kill(broker.reader_pid(), signal.SIGKILL)
    assert broker.process is not None
    code = broker.process.wait(timeout=10)
    broker.process = None
    assert code == 1, broker.log()
    assert "the log reader of mosquitto died" in broker.log()
    assert broker.broker_pids() == []
    assert not (broker.run_dir / "ready").exists()


def test_the_platform_picks_the_shared_folder_when_it_is_configured(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ELDERCARE_ENV_FILE", str(tmp_path / "none.env"))
    monkeypatch.setenv("ELDERCARE_BROKER_AUTH_DIR", str(tmp_path / "auth"))
    monkeypatch.setenv("ELDERCARE_BROKER_RELOAD_TIMEOUT_S", "3")
    assert from_settings() == SharedBroker(tmp_path / "auth", timeout_s=3.0)
    monkeypatch.delenv("ELDERCARE_BROKER_AUTH_DIR")
    monkeypatch.setenv("ELDERCARE_STATE_DIR", str(tmp_path / "state"))
    assert type(from_settings()).__name__ == "LocalBroker"


def test_setup_refuses_without_its_settings(tmp_path: Path) -> None:
    cases: list[tuple[dict[str, str], str]] = [
        ({}, "ELDERCARE_BROKER_AUTH_DIR"),
        ({"ELDERCARE_BROKER_AUTH_DIR": str(tmp_path)}, "ELDERCARE_MQTT_PASSWORD"),
        (
            {
                "ELDERCARE_BROKER_AUTH_DIR": str(tmp_path),
                "ELDERCARE_MQTT_PASSWORD": "x",
                "ELDERCARE_MQTT_USERNAME": "gw",
            },
            "platform",
        ),
    ]
    for extra, reason in cases:
        done = broker_cli("setup", **extra)
        assert done.returncode == 2 and reason in done.stderr, done.stderr


# Stands in for mosquitto: loses the first SIGHUP (as mosquitto does one that arrives while it reloads), and
# begins each later reload half a second after the signal, writing a file just before its log line.
_SLOW_BROKER = """#!/usr/bin/python3
import signal, sys, time
from pathlib import Path
folder = Path(sys.argv[2]).parent
hups = []
signal.signal(signal.SIGHUP, lambda *_: hups.append(1))
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print("1: mosquitto version 0.0 running", file=sys.stderr, flush=True)
handled = 0
while True:
    time.sleep(0.01)
    if len(hups) > handled:
        handled = len(hups)
        if handled > 1:
            time.sleep(0.5)
            (folder / f"reload-{handled}").touch()
            print("2: Reloading config.", file=sys.stderr, flush=True)
"""


def test_a_request_is_acknowledged_only_after_the_broker_logs_its_reload(
    shell: str, base: Path, free_port: Callable[[], int]
) -> None:
    fake = base / "slow-mosquitto"
    fake.write_text(_SLOW_BROKER)
    fake.chmod(0o755)
    slow = Broker(base=base, port=free_port(), shell=shell, mosquitto=str(fake))
    slow.start()
    try:
        started = time.monotonic()
        number = SharedBroker(slow.auth, timeout_s=3).apply()  # well before the entrypoint's own 5 s retry
        assert time.monotonic() - started >= 0.5
        assert (base / "reload-2").exists(), slow.log()  # the lost SIGHUP was sent again, and its reload awaited
        assert applied(slow.auth) == number
    finally:
        assert slow.stop() == 0


def test_certificates_makes_the_files_compose_names_for_the_hosts_given(tmp_path: Path) -> None:
    def run() -> subprocess.CompletedProcess[str]:
        return broker_cli("certificates", "--dir", str(tmp_path), "--host", "mqtt.example.org", "--host", "203.0.113.7")

    done = run()
    assert done.returncode == 0, done.stderr
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    for secret in compose["secrets"].values():  # ./deploy/tls/<name>: made in <dir>/tls/<name>
        relative = Path(secret["file"]).relative_to("deploy")
        assert (tmp_path / relative).is_file(), relative
    made = tls_files(tmp_path)
    cert = x509.load_pem_x509_certificate(made.server_cert.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) >= {"mosquitto", "mqtt.example.org"}
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["203.0.113.7"]
    assert made.server_key.stat().st_mode & 0o777 == 0o600
    assert made.ca_key.stat().st_mode & 0o777 == 0o600

    ca_before, cert_before = made.ca_cert.read_bytes(), made.server_cert.read_bytes()
    assert run().returncode == 0  # again: the CA gateways trust and a current certificate are kept
    assert (made.ca_cert.read_bytes(), made.server_cert.read_bytes()) == (ca_before, cert_before)

"""The local stack against the real services: TimescaleDB works, the broker speaks TLS, and its
password file and ACL hold a gateway to its own topics, with revocation taking effect at once."""

from __future__ import annotations

import argparse
import datetime as dt
import secrets
import socket
import ssl
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from cryptography import x509
from tests.mqtt_session import Session

from eldercare.platform.config import BrokerSettings, DatabaseSettings, SecuritySettings
from eldercare.platform.stack import broker, broker_auth, cli, service
from eldercare.platform.stack.errors import StackError
from eldercare.platform.stack.layout import broker_paths
from eldercare.platform.stack.model import Ports, StackInfo
from eldercare.platform.stack.tls import tls_files

NOT_AUTHORIZED = 135
WAIT = 5.0
_INSTITUTION_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"


def new_institution() -> str:
    return "".join(secrets.choice(_INSTITUTION_CHARS) for _ in range(18))


def new_gateway() -> str:
    return f"gw-{secrets.token_hex(4)}"


@pytest.fixture
def sessions(stack: StackInfo) -> Iterator[Callable[..., Session]]:
    """Open MQTT sessions (``open(username, password)``); all are closed after the test."""
    opened: list[Session] = []

    def open_session(username: str, password: str, *, ca_file: Path | None = None) -> Session:
        session = Session(stack.mqtt_host, stack.ports.mqtt_tls, username, password, ca_file=ca_file or stack.ca_file)
        opened.append(session)
        return session

    yield open_session
    for session in opened:
        session.close()


@pytest.fixture
def platform(stack: StackInfo, sessions: Callable[..., Session]) -> Session:
    session = sessions(stack.platform_username, stack.platform_password)
    assert not session.connect().is_failure
    return session


@pytest.fixture
def gateway(stack: StackInfo) -> Iterator[tuple[str, str, str]]:
    """A provisioned gateway: (institution, gateway id, password); revoked afterwards."""
    institution, gateway_id, password = new_institution(), new_gateway(), secrets.token_urlsafe(16)
    broker_auth.provision_gateway(stack.state_dir, institution=institution, gateway=gateway_id, password=password)
    yield institution, gateway_id, password
    broker_auth.revoke_gateway(stack.state_dir, gateway=gateway_id)


# --- the database -------------------------------------------------------------------------------


def test_timescaledb_is_loaded_and_works(stack: StackInfo) -> None:
    with psycopg.connect(stack.database_url) as conn:
        version, license_ = conn.execute(
            "SELECT extversion, current_setting('timescaledb.license') FROM pg_extension WHERE extname = 'timescaledb'"
        ).fetchone() or (None, None)
        assert version is not None
        assert license_ == "apache"
        assert conn.execute("SHOW jit").fetchone() == ("off",)  # no plan compiled while an alarm waits
        conn.execute("CREATE TABLE stack_probe (at timestamptz NOT NULL, value double precision)")
        conn.execute("SELECT create_hypertable('stack_probe', by_range('at', INTERVAL '1 day'))")
        start = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO stack_probe VALUES (%s, %s)",
                [(start + dt.timedelta(minutes=minute), float(minute)) for minute in range(120)],
            )
        rows = conn.execute(
            "SELECT time_bucket('1 hour', at) AS hour, count(*), avg(value) FROM stack_probe "
            "GROUP BY hour ORDER BY hour"
        ).fetchall()
        assert rows == [(start, 60, 29.5), (start + dt.timedelta(hours=1), 60, 89.5)]
        conn.rollback()


def test_admin_url_is_superuser_over_the_socket(stack: StackInfo) -> None:
    with psycopg.connect(stack.admin_database_url) as conn:
        assert conn.execute("SHOW shared_preload_libraries").fetchone() == ("timescaledb",)
        assert conn.execute("SHOW fsync").fetchone() == ("on",)
        row = conn.execute("SELECT current_user, current_database(), inet_server_addr()").fetchone()
        assert row == ("postgres", "eldercare", None)  # no address: a unix socket


def test_database_needs_the_password_over_tcp(stack: StackInfo) -> None:
    wrong = stack.database_url.replace(f":{_db_password(stack)}@", ":wrong@")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=5).close()


def _db_password(stack: StackInfo) -> str:
    return stack.database_url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]


# --- status, idempotence, files -----------------------------------------------------------------


def test_status_reports_every_part_healthy(stack: StackInfo) -> None:
    report = service.status(stack.state_dir)
    assert report.healthy, report
    assert {part.name for part in report.parts} == {"postgres", "mosquitto"}
    assert all(part.running and part.urls for part in report.parts)
    assert not any(stack.platform_password in url for part in report.parts for url in part.urls)


def test_up_again_leaves_the_running_stack_alone_and_is_quick(stack: StackInfo) -> None:
    started = time.monotonic()
    again = service.up(stack.state_dir, stack.ports)
    assert time.monotonic() - started < 1.0
    assert again == stack
    assert service.load(stack.state_dir) == stack


def test_up_on_other_ports_while_running_is_refused(stack: StackInfo, stack_ports: Callable[[], Ports]) -> None:
    with pytest.raises(StackError, match="already running"):
        service.up(stack.state_dir, stack_ports())


def test_env_file_is_what_the_settings_read(stack: StackInfo) -> None:
    env = stack.state_dir / "eldercare.env"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert DatabaseSettings(_env_file=env).database_url == stack.database_url
    broker_settings = BrokerSettings(_env_file=env)
    assert broker_settings.mqtt_port == stack.ports.mqtt_tls
    assert broker_settings.mqtt_ca_file == stack.ca_file
    assert broker_settings.mqtt_password.get_secret_value() == stack.platform_password
    assert len(SecuritySettings(_env_file=env).key_bytes()) == 32
    assert f"ELDERCARE_ADMIN_DATABASE_URL={stack.admin_database_url}\n" in env.read_text()
    assert f"ELDERCARE_API_PORT={stack.ports.api}\n" in env.read_text()


def test_secrets_and_keys_are_private_and_the_certificate_names_localhost(stack: StackInfo) -> None:
    files = tls_files(stack.state_dir)
    for private in (stack.state_dir / "secrets.json", files.server_key, files.ca_key):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private
    cert = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert "127.0.0.1" in {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}


def test_cli_status_prints_urls_and_exits_zero_when_healthy(
    stack: StackInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cli(["stack", "status", "--state-dir", str(stack.state_dir)]) == 0
    out = capsys.readouterr().out
    assert "postgres   healthy" in out
    assert "mosquitto  healthy" in out
    assert f"127.0.0.1:{stack.ports.postgres}" in out
    assert f"mqtts://platform@127.0.0.1:{stack.ports.mqtt_tls}" in out


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="eldercare")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


def test_a_tls_listener_on_another_address_gets_a_certificate_naming_it() -> None:
    assert broker.certificate_hosts("127.0.0.1") == ("127.0.0.1", "::1", "localhost")
    assert broker.certificate_hosts("0.0.0.0") == ("127.0.0.1", "::1", "localhost")
    assert broker.certificate_hosts("192.168.1.20")[-1] == "192.168.1.20"
    assert broker.client_host("0.0.0.0") == "127.0.0.1"


# --- the broker: TLS and passwords ---------------------------------------------------------------


def test_password_hash_is_mosquitto_s_own_format(tmp_path: Path) -> None:
    ours = broker_auth.hash_password("s3cret")
    assert ours.startswith("$7$101$")
    assert broker_auth.verify_password("s3cret", ours)
    assert not broker_auth.verify_password("other", ours)
    passwd = tmp_path / "passwd"
    passwd.touch()
    subprocess.run(["mosquitto_passwd", "-b", str(passwd), "alice", "s3cret"], check=True)
    theirs = passwd.read_text().strip().split(":", 1)[1]
    assert [len(part) for part in theirs.split("$")] == [len(part) for part in ours.split("$")]
    assert broker_auth.verify_password("s3cret", theirs)


def test_tls_login_with_the_ca_works_and_a_wrong_password_is_refused(
    stack: StackInfo, sessions: Callable[..., Session]
) -> None:
    assert not sessions(stack.platform_username, stack.platform_password).connect().is_failure
    refused = sessions(stack.platform_username, "wrong").connect()
    assert refused.value == NOT_AUTHORIZED


def test_tls_without_the_stack_ca_is_refused_by_the_client(stack: StackInfo, sessions: Callable[..., Session]) -> None:
    system_cas = Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")
    session = sessions(stack.platform_username, stack.platform_password, ca_file=system_cas)
    with pytest.raises(ssl.SSLCertVerificationError):
        session.connect()


def test_platform_may_use_a_shared_subscription_on_all_uplinks(platform: Session) -> None:
    assert not platform.subscribe("$share/ingest/eldercare/v1/+/+/up/#").is_failure


# --- the broker: a gateway's ACL ------------------------------------------------------------------


def test_gateway_publishes_under_its_own_topics_only(
    stack: StackInfo, sessions: Callable[..., Session], platform: Session, gateway: tuple[str, str, str]
) -> None:
    institution, gateway_id, password = gateway
    assert not platform.subscribe(f"eldercare/v1/+/{gateway_id}/#").is_failure
    device = sessions(gateway_id, password)
    assert not device.connect().is_failure

    own = f"eldercare/v1/{institution}/{gateway_id}/up/alarm"
    assert not device.publish(own, b"fall").is_failure
    received = platform.next_message()
    assert (received.topic, received.payload) == (own, b"fall")

    other_institution = new_institution()
    denied = [
        f"eldercare/v1/{other_institution}/{gateway_id}/up/alarm",
        f"eldercare/v1/{institution}/{new_gateway()}/up/alarm",
        f"eldercare/v1/{institution}/{gateway_id}/cmd/reboot",  # no forging commands
    ]
    for topic in denied:
        assert device.publish(topic, b"forged").value == NOT_AUTHORIZED, topic
    # Messages from one client arrive in order: once this one is in, the refused ones never will be.
    assert not device.publish(f"eldercare/v1/{institution}/{gateway_id}/status", b"online").is_failure
    marker = platform.next_message()
    assert (marker.topic, marker.payload) == (f"eldercare/v1/{institution}/{gateway_id}/status", b"online")
    assert platform.messages.empty()


def test_gateway_reads_its_own_commands_only(
    stack: StackInfo, sessions: Callable[..., Session], platform: Session, gateway: tuple[str, str, str]
) -> None:
    """mosquitto 2.0.11's ACL file never refuses a SUBSCRIBE (its default check returns success for
    subscribe, "FIXME" in security_default.c); the read rule is applied to each message instead, retained
    ones included. So the SUBACK grants, but nothing that is not the gateway's own ever arrives."""
    institution, gateway_id, password = gateway
    other = f"eldercare/v1/{institution}/{new_gateway()}/cmd/reboot"
    assert not platform.publish(other, b"retained").is_failure
    platform.client.publish(other, b"retained", qos=1, retain=True).wait_for_publish(WAIT)
    device = sessions(gateway_id, password)
    assert not device.connect().is_failure
    too_wide = [
        f"eldercare/v1/{institution}/+/cmd/#",
        f"eldercare/v1/{new_institution()}/{gateway_id}/cmd/#",
        "eldercare/v1/#",
        f"eldercare/v1/{institution}/{gateway_id}/up/#",
        "$SYS/#",
    ]
    for topic in too_wide:
        assert not device.subscribe(topic).is_failure, topic
    assert not device.publish(f"eldercare/v1/{institution}/{gateway_id}/up/alarm", b"own uplink").is_failure
    assert not platform.publish(other, b"not for you").is_failure
    # Messages reach a client in order: anything let through above would arrive before the marker.
    device.unsubscribe(too_wide)  # so that the marker matches one subscription, and comes once

    own = f"eldercare/v1/{institution}/{gateway_id}/cmd/reboot"
    assert not device.subscribe(f"eldercare/v1/{institution}/{gateway_id}/cmd/#").is_failure
    assert not platform.publish(own, b"now").is_failure
    received = device.next_message()
    assert (received.topic, received.payload) == (own, b"now")
    assert device.messages.empty()
    platform.client.publish(other, b"", qos=1, retain=True).wait_for_publish(WAIT)


def test_revoked_gateway_is_disconnected_at_once_and_cannot_log_in_again(
    stack: StackInfo, sessions: Callable[..., Session], gateway: tuple[str, str, str]
) -> None:
    _, gateway_id, password = gateway
    device = sessions(gateway_id, password)
    assert not device.connect().is_failure

    assert broker_auth.revoke_gateway(stack.state_dir, gateway=gateway_id)
    revoked = time.monotonic()
    device.disconnects.get(timeout=WAIT)  # mosquitto 2.0.11 drops it while reloading, on the SIGHUP
    assert time.monotonic() - revoked < 1.0
    device.close()
    assert sessions(gateway_id, password).connect().value == NOT_AUTHORIZED
    assert gateway_id not in (stack.state_dir / "mosquitto" / "passwd").read_text()
    assert not broker_auth.revoke_gateway(stack.state_dir, gateway=gateway_id)


def test_provisioning_again_replaces_the_password(
    stack: StackInfo, sessions: Callable[..., Session], gateway: tuple[str, str, str]
) -> None:
    institution, gateway_id, old_password = gateway
    connected = sessions(gateway_id, old_password)
    assert not connected.connect().is_failure
    broker_auth.provision_gateway(stack.state_dir, institution=institution, gateway=gateway_id, password="new-pw")
    connected.disconnects.get(timeout=WAIT)  # the old password no longer holds, even for a live session
    assert sessions(gateway_id, old_password).connect().value == NOT_AUTHORIZED
    assert not sessions(gateway_id, "new-pw").connect().is_failure


@pytest.mark.parametrize(
    ("institution", "gateway_id"),
    [("91420500MA4ABCDE1X", "gw/x"), ("91420500MA4ABCDE1X", "#"), ("9142+", "gw"), ("91420500MA4ABCDE1X", "platform")],
)
def test_ids_that_could_widen_the_acl_are_refused(stack: StackInfo, institution: str, gateway_id: str) -> None:
    with pytest.raises(ValueError, match=r"gateway|institution|platform"):
        broker_auth.provision_gateway(stack.state_dir, institution=institution, gateway=gateway_id, password="x")


# --- a stack of its own: failure reporting, down, restart ------------------------------------------


def test_a_port_in_use_fails_with_the_service_log(throwaway_state_dir: Path, stack_ports: Callable[[], Ports]) -> None:
    ports = stack_ports()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", ports.postgres))
        squatter.listen()
        with pytest.raises(StackError) as failure:
            service.up(throwaway_state_dir, ports)
    assert failure.value.part == "postgres"
    assert "Address already in use" in failure.value.reason
    assert "postgres.log" in failure.value.reason


def test_down_stops_everything_and_up_brings_the_same_stack_back(
    throwaway_state_dir: Path,
    stack_ports: Callable[[], Ports],
    stack_starter: Callable[[Path, Ports], StackInfo],
) -> None:
    ports = stack_ports()
    info = stack_starter(throwaway_state_dir, ports)
    with psycopg.connect(info.database_url) as conn:
        conn.execute("CREATE TABLE kept (id int)")

    service.down(throwaway_state_dir)
    report = service.status(throwaway_state_dir)
    assert not report.running
    assert not report.healthy
    assert [part.detail for part in report.parts] == ["not running", "not running"]
    assert _cli(["stack", "status", "--state-dir", str(throwaway_state_dir)]) == 1
    service.down(throwaway_state_dir)  # stopping a stopped stack is fine

    assert _cli(["stack", "up", "--state-dir", str(throwaway_state_dir)]) == 0  # the ports of the last up
    assert service.load(throwaway_state_dir) == info  # same ports, secrets and certificates, and the data:
    with psycopg.connect(info.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM kept").fetchone() == (0,)
    assert service.status(throwaway_state_dir).healthy


# A broker that, like mosquitto, loses a SIGHUP that arrives while it reloads (it clears its reload flag when the
# reload ends): here the first one is lost outright, and each later one logs a reload.
_LOSES_THE_FIRST_HUP = """
import signal, sys, time
log, seen = sys.argv[2], []
def hup(signum, frame):
    seen.append(1)
    if len(seen) > 1:
        with open(log, "ab") as out:
            out.write(b"Reloading config.\\n")
signal.signal(signal.SIGHUP, hup)
open(log, "ab").close()
open(sys.argv[3], "w").write("ready")
while True:
    time.sleep(0.05)
"""


@pytest.fixture
def lossy_broker(tmp_path: Path) -> Iterator[Path]:
    """A state folder whose broker (``_LOSES_THE_FIRST_HUP``) is running; yields the state folder."""
    paths = broker_paths(tmp_path)
    paths.folder.mkdir(parents=True)
    ready = tmp_path / "ready"
    fake = subprocess.Popen(["python3", "-c", _LOSES_THE_FIRST_HUP, str(paths.config), str(paths.log), str(ready)])
    try:
        deadline = time.monotonic() + 10
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        paths.pid.write_text(f"{fake.pid}\n")
        yield tmp_path
    finally:
        fake.kill()
        fake.wait()


def test_a_reload_signal_the_broker_lost_is_sent_again(lossy_broker: Path) -> None:
    """Three homes made at once provision three gateways at once; a SIGHUP that reached mosquitto during the
    reload another had asked for was lost, and the provisioning failed after 5 s (a 500 on POST gateways)."""
    started = time.monotonic()
    assert broker_auth.reload_broker(lossy_broker)
    assert time.monotonic() - started < broker_auth.RELOAD_TIMEOUT / 2


def test_revoking_a_login_already_gone_reloads_the_broker_all_the_same(lossy_broker: Path) -> None:
    """A revocation whose reload failed is answered 503 and retried; the retry finds the login gone from the
    files, and must still make the broker read them before it reports the gateway locked out."""
    assert not broker_auth.revoke_gateway(lossy_broker, gateway="gw-gone")
    assert b"Reloading config." in broker_paths(lossy_broker).log.read_bytes()

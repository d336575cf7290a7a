"""``eldercare broker setup|certificates``: production's broker, as ``docker-compose.yml`` runs it.

``setup`` is the one-shot step that gives the platform its own broker login.
It writes the ``platform`` user (password ``ELDERCARE_MQTT_PASSWORD``) into the folder shared with the broker
(``ELDERCARE_BROKER_AUTH_DIR``), regenerates ``passwd`` and ``acl`` from the user list, and waits until the
broker has loaded them (``registry/broker.py``). Run again with a new password, it changes the login. The local
stack needs none of this: ``eldercare stack up`` writes its own.

``certificates`` makes the TLS files compose's secrets name (``deploy/tls/ca.pem``, ``server.pem``,
``server.key``) with a CA of their own (``ca.key`` beside them, kept for renewals). The server certificate names
``mosquitto`` (how ingest and the platform reach the broker inside compose) and every ``--host`` gateways use.
Run again, it keeps the CA (gateways trust it) and issues the server certificate again only when it is within 30
days of expiry or lacks a host; restart the broker's container to load a new one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

COMPOSE_HOST = "mosquitto"  # the broker's service name in docker-compose.yml


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    broker = sub.add_parser("broker", help="the production broker's logins", description=__doc__)
    commands = broker.add_subparsers(dest="broker_command", required=True, metavar="ACTION")
    setup = commands.add_parser("setup", help="write the platform's broker login and wait for the broker to load it")
    setup.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for the broker's acknowledgement (default 60)"
    )
    setup.set_defaults(handler=_setup)
    certificates = commands.add_parser("certificates", help="make or renew the broker's TLS files for compose")
    certificates.add_argument(
        "--host", action="append", required=True, metavar="NAME", help="a name or address gateways connect to"
    )
    certificates.add_argument(
        "--dir", type=Path, default=Path("deploy"), help="where tls/ goes (default: ./deploy, as compose reads it)"
    )
    certificates.set_defaults(handler=_certificates)


def _setup(args: argparse.Namespace) -> int:
    from eldercare.platform.config import BrokerSettings
    from eldercare.platform.registry.broker import SharedBroker
    from eldercare.platform.stack import broker_auth
    from eldercare.platform.stack.errors import StackError

    settings = BrokerSettings()
    if settings.broker_auth_dir is None:
        print("ELDERCARE_BROKER_AUTH_DIR is not set: it names the folder shared with the broker", file=sys.stderr)
        return 2
    if settings.mqtt_username != broker_auth.PLATFORM:
        print(
            f"ELDERCARE_MQTT_USERNAME is {settings.mqtt_username!r}; the platform's login is {broker_auth.PLATFORM!r}",
            file=sys.stderr,
        )
        return 2
    password = settings.mqtt_password.get_secret_value()
    if not password:
        print("ELDERCARE_MQTT_PASSWORD is not set: it is the platform's broker password", file=sys.stderr)
        return 2
    shared = SharedBroker(settings.broker_auth_dir, timeout_s=args.timeout)
    try:
        number = shared.set_platform_password(password)
    except StackError as exc:
        print(f"broker: {exc.reason}", file=sys.stderr)
        return 1
    print(f"broker: the platform login is in {settings.broker_auth_dir}; the broker loaded it (reload {number})")
    return 0


def _certificates(args: argparse.Namespace) -> int:
    from eldercare.platform.stack.tls import ensure_certificates

    hosts = tuple(dict.fromkeys([COMPOSE_HOST, *args.host]))
    files = ensure_certificates(state_dir=args.dir.resolve(), hosts=hosts)
    print(f"broker: {files.server_cert} names {', '.join(hosts)}; give gateways {files.ca_cert}")
    print(f"broker: keep {files.ca_key} private; it signs the renewals")
    return 0

"""The naive consumer the ingest benchmark compares against: one INSERT and one commit per MQTT message.

What a first version of ingest usually looks like: paho-mqtt with its network thread, ``json.loads`` of
each message, one multi-row ``INSERT ... VALUES`` of the message's readings, ``commit``, and paho's own
acknowledgement after the callback returns (QoS 1). It is given every advantage that does not change that
shape: the device ids are loaded once up front, and it talks to the broker over the local plain listener.
It stores bed samples only (all the load generator sends) and knows nothing of duplicates or bad input. It seals
the heart and breathing rates as ingest does (one AES block a row, the same sealer): what it stores is what ingest
stores, health data never in clear.

Run by ``bench/ingest_throughput.py``: ``python bench/ingest_naive.py WORLD.json PLAIN_PORT`` with the stack's
``ELDERCARE_*`` environment; it prints one line when subscribed, then every second how many readings it
has committed, and runs until SIGTERM.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from eldercare.devices import topics
from eldercare.platform.config import BrokerSettings, DatabaseSettings, SecuritySettings
from eldercare.platform.crypto import Vault
from eldercare.platform.sealed_vitals import seal_reading


def main(world_file: Path, plain_port: int) -> int:
    world = json.loads(world_file.read_text())
    broker = BrokerSettings()
    conn = psycopg.connect(DatabaseSettings().database_url)
    ids: dict[str, int] = dict(
        conn.execute("SELECT code, id FROM devices WHERE institution_id = %s", (world["institution_id"],)).fetchall()
    )
    conn.commit()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="naive-consumer", protocol=mqtt.MQTTv5)
    client.username_pw_set(broker.mqtt_username, broker.mqtt_password.get_secret_value())
    client.max_inflight_messages_set(1000)
    topic = topics.uplink(world["institution_code"], "+", topics.Channel.TELEMETRY)
    subscribed = threading.Event()
    stored = [0]
    sealer = Vault(SecuritySettings().key_bytes()).vitals_sealer()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        frame = json.loads(msg.payload)
        rows = []
        for r in frame["msgs"]:
            at, device_id = datetime.fromtimestamp(r["ts"] / 1000, UTC), ids[r["dev"]]
            vitals = seal_reading(sealer, at, device_id, r.get("hr"), r.get("rr"))
            rows.append((at, device_id, r["presence"], r.get("move"), vitals))
        values = ", ".join(["(%s, %s, %s, %s, %s)"] * len(rows))
        conn.execute(
            f"INSERT INTO bed_readings (time, device_id, presence, movement, vitals_enc) VALUES {values}",
            [v for row in rows for v in row],
        )
        conn.commit()
        stored[0] += len(rows)

    client.on_message = on_message
    client.on_connect = lambda c, _u, _f, _r, _p: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda _c, _u, _m, _r, _p: subscribed.set()
    client.connect("127.0.0.1", plain_port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    client.loop_start()
    if subscribed.wait(30):
        print("naive consumer: subscribed", flush=True)
    while not stop.wait(1.0):
        print(f"stored {stored[0]}", flush=True)
    client.loop_stop()
    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), int(sys.argv[2])))

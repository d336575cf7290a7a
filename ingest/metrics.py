"""Prometheus metrics of an ingest process, in the text exposition format (version 0.0.4), over HTTP.

Small on purpose (counters, gauges, histograms with labels): the figures are cheap to update from the
writer threads (one lock per metric) and ``GET /metrics`` renders them. ``prometheus_client`` would do the
same; this keeps the dependency list as it is.
"""

from __future__ import annotations

import bisect
import logging
import math
import threading
from collections.abc import Callable, Iterable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final

log = logging.getLogger(__name__)

Labels = tuple[tuple[str, str], ...]
LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0,
                          5.0, 10.0, 30.0, 60.0, 300.0)  # fmt: skip
SIZE_BUCKETS: Final = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000)


def _labels(values: dict[str, str]) -> Labels:
    return tuple(sorted(values.items()))


def _render_labels(labels: Labels, extra: tuple[str, str] | None = None) -> str:
    items = [*labels, extra] if extra else list(labels)
    if not items:
        return ""
    escaped = (v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for _, v in items)
    return "{" + ",".join(f'{k}="{v}"' for (k, _), v in zip(items, escaped, strict=True)) + "}"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Counter:
    def __init__(self, name: str, help_text: str) -> None:
        self.name, self.help = name, help_text
        self._values: dict[Labels, float] = {}
        self._lock = threading.Lock()

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = _labels(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(_labels(labels), 0.0)

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        with self._lock:
            items = sorted(self._values.items())
        for labels, value in items:
            yield f"{self.name}{_render_labels(labels)} {_number(value)}"


class Gauge:
    """A value read when scraped (``set_function``) or set by the code."""

    def __init__(self, name: str, help_text: str) -> None:
        self.name, self.help = name, help_text
        self._values: dict[Labels, float] = {}
        self._functions: dict[Labels, Callable[[], float]] = {}
        self._lock = threading.Lock()

    def set(self, value: float, **labels: str) -> None:
        with self._lock:
            self._values[_labels(labels)] = value

    def set_function(self, function: Callable[[], float], **labels: str) -> None:
        with self._lock:
            self._functions[_labels(labels)] = function

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} gauge"
        with self._lock:
            values = dict(self._values)
            functions = dict(self._functions)
        for labels, function in functions.items():
            values[labels] = function()
        for labels, value in sorted(values.items()):
            yield f"{self.name}{_render_labels(labels)} {_number(value)}"


class Histogram:
    def __init__(self, name: str, help_text: str, buckets: Sequence[float]) -> None:
        self.name, self.help = name, help_text
        self._bounds = list(buckets)
        self._series: dict[Labels, tuple[list[int], list[float]]] = {}  # counts per bucket (+Inf last), [sum]
        self._lock = threading.Lock()

    def observe_many(self, values: Iterable[float], **labels: str) -> None:
        key = _labels(labels)
        bounds = self._bounds
        with self._lock:
            counts, total = self._series.setdefault(key, ([0] * (len(bounds) + 1), [0.0]))
            for value in values:
                counts[bisect.bisect_left(bounds, value)] += 1
                total[0] += value

    def observe(self, value: float, **labels: str) -> None:
        self.observe_many((value,), **labels)

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        with self._lock:
            series = [(labels, list(counts), total[0]) for labels, (counts, total) in sorted(self._series.items())]
        for labels, counts, total in series:
            running = 0
            for bound, count in zip([*self._bounds, math.inf], counts, strict=True):
                running += count
                yield f"{self.name}_bucket{_render_labels(labels, ('le', _number(bound)))} {running}"
            yield f"{self.name}_sum{_render_labels(labels)} {_number(total)}"
            yield f"{self.name}_count{_render_labels(labels)} {running}"


class IngestMetrics:
    """Everything an ingest process reports; lanes and the maintenance job update it."""

    def __init__(self) -> None:
        p = "eldercare_ingest_"
        self.received = Counter(f"{p}received_total", "MQTT messages received, by lane")
        self.redelivered = Counter(f"{p}redeliveries_total", "MQTT messages received with the DUP flag (resent)")
        self.frames = Counter(f"{p}frames_total", "frames by outcome: stored, or duplicate (already stored)")
        self.stored = Counter(f"{p}stored_total", "rows committed, by lane and kind (reading, event, status)")
        self.rejected = Counter(f"{p}rejected_total", "messages parked, by lane, kind and reason")
        self.acked = Counter(f"{p}acked_total", "MQTT messages acknowledged after their commit")
        self.db_errors = Counter(f"{p}db_errors_total", "batches that failed for the database and were retried")
        self.connects = Counter(f"{p}mqtt_connects_total", "successful MQTT connections, by lane")
        self.batch_frames = Histogram(f"{p}batch_frames", "frames per committed batch", SIZE_BUCKETS)
        self.batch_rows = Histogram(f"{p}batch_rows", "rows per committed batch", SIZE_BUCKETS)
        self.commit_seconds = Histogram(f"{p}commit_seconds", "time to write and commit a batch", LATENCY_BUCKETS)
        self.lag_seconds = Histogram(
            f"{p}lag_seconds", "from the frame's sent time to its commit (publish to committed row)", LATENCY_BUCKETS
        )
        self.queue = Gauge(f"{p}queue_messages", "messages received and not yet committed, by lane")
        self.adopted = Gauge(f"{p}adopted_sessions", "sessions of dead members this process is draining")
        self.last_lag = Gauge(f"{p}last_lag_seconds", "lag of the newest frame committed, by lane")
        self.maintenance_runs = Counter(f"{p}maintenance_runs_total", "maintenance passes, by job and outcome")
        self.open_gaps = Gauge(f"{p}open_gaps", "sequence gaps not filled (as of the last gap scan)")

    def all(self) -> list[Counter | Gauge | Histogram]:
        return [value for value in vars(self).values() if isinstance(value, Counter | Gauge | Histogram)]

    def render(self) -> str:
        return "\n".join(line for metric in self.all() for line in metric.render()) + "\n"


def serve(metrics: IngestMetrics, *, host: str, port: int) -> ThreadingHTTPServer:
    """Serve ``GET /metrics`` in a daemon thread; returns the server (``shutdown()`` stops it)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404, "only /metrics is here")
                return
            body = metrics.render().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
            log.debug("metrics: " + format, *args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="ingest-metrics", daemon=True).start()
    return server

"""A TCP relay between a gateway and the platform's broker that can be cut: the home's internet link.

``cut()`` ends every relayed connection at once (both directions, as a link that goes down mid-session: the
broker sees the connection end without a DISCONNECT and, ``WILL_DELAY_S`` later unless the gateway is back by
then, publishes its last will) and turns away new ones until ``restore()``. The listening socket stays bound
for the relay's life, so its port never changes hands. TLS passes through untouched: the gateway still verifies
the broker's certificate. One thread per direction of a connection (a gateway has one connection; the relay is
not on a hot path).
"""

from __future__ import annotations

import contextlib
import socket
import threading


class Relay:
    def __init__(self, *, target_host: str, target_port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self._target = (target_host, target_port)
        self._server = socket.socket()
        self._server.bind((host, 0))
        self._server.listen(16)
        self.port: int = self._server.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self.up = True
        self._closed = False
        threading.Thread(target=self._accept, name=f"relay-{self.port}", daemon=True).start()

    def restore(self) -> None:
        with self._lock:
            self.up = True

    def cut(self) -> None:
        with self._lock:
            self.up = False
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._server.close()

    def _is_up(self) -> bool:
        return self.up  # read each time: cut() and restore() change it from other threads

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if not self._is_up():
                client.close()  # the link is down: the connection attempt fails at once
                continue
            try:
                upstream = socket.create_connection(self._target, timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if not self._is_up():
                    client.close()
                    upstream.close()
                    continue
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

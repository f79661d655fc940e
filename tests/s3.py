"""A real S3 API on loopback (moto's server mode) behind a proxy that cuts connections mid-request."""

from __future__ import annotations

import logging
import socket
import struct
import threading
from contextlib import contextmanager
from typing import Iterator

import boto3
import s3fs
from moto.server import ThreadedMotoServer

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "vipo-test-key", "AWS_SECRET_ACCESS_KEY": "vipo-test-secret-7f3a9c"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CuttingProxy:
    """Forwards 127.0.0.1:port to upstream; every `every`-th connection is cut (RST) after `after`
    bytes from the client, in the middle of whatever request it carries."""

    def __init__(self, upstream: int, every: int, after: int):
        self.upstream, self.every, self.after = upstream, every, after
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.cuts = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            with self.lock:
                self.connections += 1
                cut = self.every and self.connections % self.every == 0
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream))
            except OSError:  # the server is gone: so is the connection
                client.close()
                continue
            threading.Thread(target=self._pump, args=(client, server, self.after if cut else None), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, None), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, cut_after: int | None) -> None:
        sent = 0
        try:
            while data := source.recv(65536):
                if cut_after is not None and sent + len(data) > cut_after:
                    sink.sendall(data[: cut_after - sent])
                    with self.lock:
                        self.cuts += 1
                    for s in (source, sink):  # reset, not a clean close: the peer sees a dropped connection
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        s.close()
                    return
                sink.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()


@contextmanager
def s3_server(bucket: str, cut_every: int = 0, cut_after: int = 2048) -> Iterator[tuple[dict[str, str], CuttingProxy, s3fs.S3FileSystem]]:
    """Start moto on loopback with `bucket`, behind a cutting proxy. Yields the environment that
    points s3fs (and so vipo-build and its Ray workers) at the proxy, the proxy, and a filesystem
    that talks to moto directly (for the test's own looks)."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    proxy = CuttingProxy(port, cut_every, cut_after)
    try:
        direct = f"http://127.0.0.1:{port}"
        boto3.client("s3", endpoint_url=direct, region_name="us-east-1", **{k.lower(): v for k, v in CREDENTIALS.items()}).create_bucket(Bucket=bucket)
        env = {
            **CREDENTIALS,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_MAX_ATTEMPTS": "10",  # botocore retries dropped connections
            "FSSPEC_S3_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}",
        }
        direct_fs = s3fs.S3FileSystem(endpoint_url=direct, key=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                                      secret=CREDENTIALS["AWS_SECRET_ACCESS_KEY"], skip_instance_cache=True,
                                      use_listings_cache=False)
        yield env, proxy, direct_fs
    finally:
        proxy.close()
        server.stop()

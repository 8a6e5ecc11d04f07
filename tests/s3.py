"""A real S3-compatible server on loopback for tests: moto's standalone server, one per session.

LanceDB (object_store) reads its endpoint and credentials from the environment, as a deployment
does: `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BUCKET = "trajsite-test"


@dataclass(frozen=True)
class S3Server:
    endpoint: str

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": "trajsite-test",
            "AWS_SECRET_ACCESS_KEY": "trajsite-test-secret",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def fresh_uri(self) -> str:
        """A prefix nobody used: one store per test."""
        return f"s3://{BUCKET}/{uuid.uuid4().hex[:12]}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running_s3(log: Path) -> Iterator[S3Server]:
    port = _free_port()
    command = [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log.open("w"))
    server = S3Server(endpoint=f"http://127.0.0.1:{port}")
    try:
        _wait_until_up(server, process, log)
        _create_bucket(server)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=30)


def _wait_until_up(server: S3Server, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"moto_server exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(server.endpoint + "/moto-api/", timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("moto_server did not start")


def _create_bucket(server: S3Server) -> None:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id="trajsite-test",
        aws_secret_access_key="trajsite-test-secret",
    )
    client.create_bucket(Bucket=BUCKET)

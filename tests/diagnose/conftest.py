"""Real servers for the diagnose tests: the Flask sample and the failing apps under gunicorn."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import free_port, gunicorn_command, sample_env, serve

SAMPLE_APP = "sample_apps.flask_app:app"
FAILING_APPS = "tests.diagnose.failing_apps:app"


@dataclass(frozen=True)
class Served:
    """A running server: its base URL and the directory holding its database and log."""

    base: str
    directory: Path

    def url(self, path: str = "/webhook") -> str:
        return self.base + path


@pytest.fixture(scope="session")
def sample_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The Flask sample under gunicorn, with the contract's secrets."""
    pytest.importorskip("flask")
    pytest.importorskip("gunicorn")
    directory = tmp_path_factory.mktemp("sample")
    port = free_port()
    command = gunicorn_command(SAMPLE_APP, port, worker_class="gthread", threads=4)
    with serve(command, sample_env(directory), port, directory / "server.log"):
        yield Served(f"http://127.0.0.1:{port}", directory)


@pytest.fixture(scope="session")
def failing_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``failing_apps`` under gunicorn, threaded so that the slow path blocks no other."""
    pytest.importorskip("flask")
    pytest.importorskip("gunicorn")
    directory = tmp_path_factory.mktemp("failing")
    port = free_port()
    command = gunicorn_command(FAILING_APPS, port, worker_class="gthread", threads=8)
    with serve(command, sample_env(directory), port, directory / "server.log"):
        yield Served(f"http://127.0.0.1:{port}", directory)


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost: (certificate, key)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a test certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-addext", "basicConstraints=critical,CA:TRUE",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="session")
def https_sample_server(
    tmp_path_factory: pytest.TempPathFactory, certificate: tuple[Path, Path]
) -> Iterator[Served]:
    """The Flask sample under gunicorn over https, with the self-signed ``certificate``."""
    pytest.importorskip("flask")
    pytest.importorskip("gunicorn")
    directory = tmp_path_factory.mktemp("https-sample")
    port = free_port()
    cert, key = certificate
    command = [*gunicorn_command(SAMPLE_APP, port), "--certfile", str(cert), "--keyfile", str(key)]
    with serve(command, sample_env(directory), port, directory / "server.log"):
        yield Served(f"https://127.0.0.1:{port}", directory)

"""Fixtures: a tiny model artifact, sample images, a model server, a fake DNS, a TLS image host."""
from __future__ import annotations

import datetime
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from inference import safe_fetch
from tests.inference.helpers import ImageHost, image_bytes, write_artifact, write_tarball


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_artifact(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="session")
def model_tar(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tarball(model_dir, tmp_path_factory.mktemp("tar") / "model.tar.gz")


@pytest.fixture(scope="session")
def model(model_dir: Path):
    from inference.inference import model_fn
    return model_fn(str(model_dir))


@pytest.fixture(scope="session")
def jpeg() -> bytes:
    return image_bytes("JPEG")


@pytest.fixture(scope="session")
def png() -> bytes:
    return image_bytes("PNG")


@pytest.fixture(scope="module")
def server(model_dir: Path) -> Iterator[str]:
    """The real model server on a free 127.0.0.1 port, in this process (so fake DNS applies)."""
    from inference.server import ModelServer

    with ModelServer(model_dir, port=0, workers=4) as running:
        yield running.url


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Names put in the returned dict resolve to its addresses; others resolve for real."""
    table: dict[str, list[str]] = {}
    real = safe_fetch.resolve_host

    def resolve(host: str, port: int) -> list[str]:
        return list(table[host]) if host in table else real(host, port)

    monkeypatch.setattr(safe_fetch, "resolve_host", resolve)
    return table


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for img.test and hop.test."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "img.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("img.test"), x509.DNSName("hop.test")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="session")
def image_host_server(tls_files: tuple[Path, Path], jpeg: bytes) -> Iterator[ImageHost]:
    host = ImageHost(jpeg)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            try:
                host.route(self)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                pass  # the client gave up on purpose (caps, deadlines)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls_files)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    host.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield host
    server.shutdown()
    server.server_close()


@pytest.fixture
def image_host(image_host_server: ImageHost, tls_files: tuple[Path, Path],
               fake_dns: dict[str, list[str]], monkeypatch: pytest.MonkeyPatch) -> ImageHost:
    """img.test and hop.test → the local TLS host, whose CA is trusted and whose 127.0.0.1 the
    address policy lets through; every other address the policy refuses stays refused.
    intranet.test → 10.1.2.3 (private)."""
    fake_dns.update({"img.test": ["127.0.0.1"], "hop.test": ["127.0.0.1"],
                     "intranet.test": ["10.1.2.3"]})
    cafile = str(tls_files[0])
    monkeypatch.setattr(safe_fetch, "ssl_context",
                        lambda: ssl.create_default_context(cafile=cafile))
    real_policy = safe_fetch.is_allowed_address
    monkeypatch.setattr(safe_fetch, "is_allowed_address",
                        lambda ip: str(ip) == "127.0.0.1" or real_policy(ip))
    image_host_server.hits.clear()
    return image_host_server

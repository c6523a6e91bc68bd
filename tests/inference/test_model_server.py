"""The local model server over real HTTP on 127.0.0.1: the SageMaker container contract, every
bad-input row of issue 4 (each followed by a request that must still succeed), shutdown."""
from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from inference import safe_fetch
from inference import server as server_module
from inference.server import ModelServer
from tests.inference.helpers import CLASSES, ImageHost, b64, image_bytes, invoke, png_bomb, request

MIB = 1024 * 1024
REPO = Path(__file__).resolve().parents[2]


def _assert_prediction(status: int, document: dict) -> None:
    assert status == 200, document
    assert {p["label"] for p in document["predictions"]} <= set(CLASSES)
    assert document["model"]["arch"] == "resnet18"


# --------------------------------------------------------------------------- bad input
def _json(document: dict) -> bytes:
    return json.dumps(document).encode()


BAD_INPUT = {  # row id: (body, content type, status, code)
    "empty body": (b"", "image/jpeg", 400, "EmptyBody"),
    "empty json body": (b"", "application/json", 400, "EmptyBody"),
    "wrong content type": (b"hello", "text/plain", 415, "UnsupportedContentType"),
    "no content type": (b"hello", None, 415, "UnsupportedContentType"),
    "json not json": (b"{nope", "application/json", 400, "InvalidJSON"),
    "json without url or image": (_json({"uri": "x"}), "application/json", 400, "MissingField"),
    "url file://": (_json({"url": "file:///etc/passwd"}), "application/json", 422,
                    "URLRefused"),
    "url http://127.0.0.1": (_json({"url": "http://127.0.0.1/cat.jpg"}), "application/json",
                             422, "URLRefused"),
    "url https://127.0.0.1": (_json({"url": "https://127.0.0.1/cat.jpg"}), "application/json",
                              422, "URLRefused"),
    "url metadata http": (_json({"url": "http://169.254.169.254/latest/meta-data/"}),
                          "application/json", 422, "URLRefused"),
    "url metadata https": (_json({"url": "https://169.254.169.254/latest/meta-data/"}),
                           "application/json", 422, "URLRefused"),
    "url private-range host 10/8": (_json({"url": "https://10.0.0.8/cat.jpg"}),
                                    "application/json", 422, "URLRefused"),
    "url private-range host 192.168/16": (_json({"url": "https://192.168.1.20/cat.jpg"}),
                                          "application/json", 422, "URLRefused"),
    "url host resolving to private ip": (_json({"url": "https://intranet.example.com/c.jpg"}),
                                         "application/json", 422, "URLRefused"),
    "url localhost": (_json({"url": "https://localhost/cat.jpg"}), "application/json", 422,
                      "URLRefused"),
    "not an image": (b"\x00\x01 definitely not pixels", "image/jpeg", 400, "InvalidImage"),
    "not an image (x-image)": (b"GIF89a-but-not", "application/x-image", 400, "InvalidImage"),
    "base64 of not an image": (_json({"image": b64(b"text")}), "application/json", 400,
                               "InvalidImage"),
    "truncated jpeg": (image_bytes("JPEG")[:1200], "image/jpeg", 400, "InvalidImage"),
    "png decompression bomb": (png_bomb(), "image/png", 413, "ImageTooLarge"),
    "base64 not base64": (_json({"image": "%%% not base64 %%%"}), "application/json", 400,
                          "InvalidBase64"),
    "oversized image body": (b"\xff" * (5 * MIB + 1), "image/jpeg", 413, "PayloadTooLarge"),
    "oversized request body": (b"\xff" * (8 * MIB), "image/jpeg", 413, "PayloadTooLarge"),
    "oversized base64": (_json({"image": "A" * (7 * MIB)}), "application/json", 413,
                         "PayloadTooLarge"),
}


@pytest.mark.parametrize("row", list(BAD_INPUT))
def test_bad_input_is_a_json_4xx_and_the_server_keeps_serving(
        server: str, fake_dns: dict[str, list[str]], jpeg: bytes, row: str) -> None:
    fake_dns["intranet.example.com"] = ["10.9.8.7"]
    body, content_type, status, code = BAD_INPUT[row]
    got_status, document = invoke(server, body, content_type)
    assert (got_status, document["error"]) == (status, code), document
    assert set(document) == {"error", "message"} and "Traceback" not in document["message"]
    _assert_prediction(*invoke(server, jpeg, "image/jpeg"))


def test_unacceptable_accept_is_406(server: str, jpeg: bytes) -> None:
    status, document = invoke(server, jpeg, "image/jpeg", accept="text/csv")
    assert (status, document["error"]) == (406, "NotAcceptable")
    _assert_prediction(*invoke(server, jpeg, "image/jpeg", accept="application/json"))


def test_malformed_http_is_answered_in_json(server: str, jpeg: bytes) -> None:
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(b"POST /invocations HTTP/1.1\r\nContent-Length: banana\r\n\r\n")
        reply = b"".join(iter(lambda: raw.recv(4096), b""))  # the server closes after it
    assert reply.startswith(b"HTTP/1.1 400") and b'"BadRequest"' in reply
    _assert_prediction(*invoke(server, jpeg, "image/jpeg"))


# --------------------------------------------------------------------------- content types
@pytest.mark.parametrize("content_type, fmt", [
    ("image/jpeg", "JPEG"), ("image/png", "PNG"), ("application/x-image", "JPEG"),
])
def test_raw_image_content_types(server: str, content_type: str, fmt: str) -> None:
    _assert_prediction(*invoke(server, image_bytes(fmt), content_type))


def test_json_base64_image(server: str, png: bytes) -> None:
    _assert_prediction(*invoke(server, _json({"image": b64(png)}), "application/json"))


def test_json_https_url(server: str, image_host: ImageHost) -> None:
    body = _json({"url": image_host.url("/hops/1")})
    _assert_prediction(*invoke(server, body, "application/json"))


def test_json_https_url_redirected_to_private_is_refused(server: str,
                                                         image_host: ImageHost) -> None:
    body = _json({"url": image_host.url("/redirect?to=https://intranet.test/cat.jpg")})
    status, document = invoke(server, body, "application/json")
    assert (status, document["error"]) == (422, "URLRefused")


def test_json_s3_url(server: str, jpeg: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    safe_fetch._s3_client.cache_clear()
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="uploads")
        s3.put_object(Bucket="uploads", Key="cat.jpg", Body=jpeg)
        _assert_prediction(*invoke(server, _json({"url": "s3://uploads/cat.jpg"}),
                                   "application/json"))
        status, document = invoke(server, _json({"url": "s3://uploads/dog.jpg"}),
                                  "application/json")
        assert (status, document["error"]) == (422, "URLFetchFailed")
    safe_fetch._s3_client.cache_clear()


def test_chunked_request_body(server: str, jpeg: bytes) -> None:
    conn = http.client.HTTPConnection(server.removeprefix("http://"), timeout=30)
    conn.request("POST", "/invocations", body=iter([jpeg[:500], jpeg[500:]]),
                 headers={"Content-Type": "image/jpeg"}, encode_chunked=True)
    response = conn.getresponse()
    _assert_prediction(response.status, json.loads(response.read()))
    conn.close()


# --------------------------------------------------------------------------- the contract
def test_ping_and_routes(server: str) -> None:
    status, headers, body = request(server, "GET", "/ping")
    assert status == 200 and headers["Content-Type"] == "application/json"
    for method, path, expected in [("GET", "/nope", 404), ("GET", "/invocations", 405),
                                   ("POST", "/ping", 405), ("PUT", "/invocations", 405),
                                   ("DELETE", "/ping", 405)]:
        status, headers, body = request(server, method, path)
        assert status == expected and "error" in json.loads(body), (method, path)
    status, _, body = request(server, "GET", "/execution-parameters")
    assert status == 200 and json.loads(body)["MaxConcurrentTransforms"] == 4


def test_keep_alive_and_concurrent_clients(server: str, jpeg: bytes) -> None:
    conn = http.client.HTTPConnection(server.removeprefix("http://"), timeout=30)
    for _ in range(3):  # one connection, several requests
        conn.request("POST", "/invocations", body=jpeg, headers={"Content-Type": "image/jpeg"})
        response = conn.getresponse()
        assert response.status == 200
        response.read()
    conn.close()
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(
        invoke(server, jpeg, "image/jpeg")[0])) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == [200] * 12


def test_close_lets_in_flight_requests_finish(model_dir: Path, jpeg: bytes,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    started = threading.Event()
    real_predict = server_module.predict_fn

    def slow_predict(data, model):
        started.set()
        time.sleep(0.5)
        return real_predict(data, model)

    monkeypatch.setattr(server_module, "predict_fn", slow_predict)
    running = ModelServer(model_dir, port=0, workers=2).start()
    outcome: list[int] = []
    client = threading.Thread(target=lambda: outcome.append(invoke(running.url, jpeg,
                                                                   "image/jpeg")[0]))
    client.start()
    assert started.wait(30)
    running.close(grace=10)
    client.join(30)
    assert outcome == [200]
    with pytest.raises(OSError):
        request(running.url, "GET", "/ping")


# --------------------------------------------------------------------------- the command line
def _start(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "inference.server", *args], cwd=REPO, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **(env or {})})


@pytest.fixture
def cli_server() -> Iterator:
    started: list[subprocess.Popen] = []

    def start(args: list[str], env: dict[str, str] | None = None) -> tuple[subprocess.Popen,
                                                                            str]:
        process = _start(args, env)
        started.append(process)
        line = process.stdout.readline().strip()  # blocks until ready (or exit)
        assert line.startswith("listening on http://127.0.0.1:"), (line, process.stderr.read())
        return process, line.removeprefix("listening on ")

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_cli_serves_a_model_tarball_and_stops_on_sigterm(cli_server, model_tar: Path,
                                                         jpeg: bytes) -> None:
    process, url = cli_server(["--model", str(model_tar), "--port", "0", "--workers", "2"])
    assert request(url, "GET", "/ping")[0] == 200
    _assert_prediction(*invoke(url, jpeg, "image/jpeg"))
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0


def test_cli_defaults_from_sagemaker_env(cli_server, model_dir: Path, png: bytes) -> None:
    port = _free_port()
    process, url = cli_server([], env={"SM_MODEL_DIR": str(model_dir),
                                       "SAGEMAKER_BIND_TO_PORT": str(port)})
    assert url == f"http://127.0.0.1:{port}"
    _assert_prediction(*invoke(url, png, "image/png"))
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=20) == 0


def test_cli_reports_an_unloadable_model(tmp_path: Path) -> None:
    (tmp_path / "model.tar.gz").write_bytes(b"not a tarball")
    result = subprocess.run([sys.executable, "-m", "inference.server", "--model",
                             str(tmp_path / "model.tar.gz"), "--port", "0"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in result.stderr

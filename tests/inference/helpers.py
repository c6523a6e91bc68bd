"""Helpers for the inference tests: artifacts, images, an HTTP client, a fake https image host."""
from __future__ import annotations

import base64
import http.client
import io
import json
import struct
import tarfile
import threading
import zlib
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from inference.network import build_network

CLASSES = ["cat", "dog", "fox"]


# --------------------------------------------------------------------------- artifacts
def write_artifact(root: Path, classes: object = CLASSES, arch: str = "resnet18",
                   image_size: int = 64, num_classes: int = len(CLASSES),
                   prefix: str = "") -> Path:
    """A randomly initialised model dir with the training code's file layout."""
    root.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    state = build_network(arch, num_classes).state_dict()
    torch.save({prefix + key: value for key, value in state.items()}, root / "model.pth")
    (root / "classes.json").write_text(json.dumps(classes))
    (root / "hyperparameters.json").write_text(json.dumps({"arch": arch,
                                                           "image_size": image_size}))
    return root


def write_tarball(model_dir: Path, target: Path) -> Path:
    with tarfile.open(target, "w:gz", compresslevel=1) as archive:  # fast: weights barely shrink
        for path in sorted(model_dir.iterdir()):
            archive.add(path, arcname=path.name)
    return target


# --------------------------------------------------------------------------- images
def image_bytes(fmt: str = "JPEG", size: tuple[int, int] = (96, 72), mode: str = "RGB") -> bytes:
    """A noisy image (noise keeps JPEGs big enough that truncation really cuts scan data)."""
    rng = np.random.default_rng(0)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    pixels = rng.integers(0, 255, (size[1], size[0], channels), dtype=np.uint8)
    image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode)
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A ~100-byte PNG declaring width x height pixels: a decompression bomb's header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + chunk(b"IEND", b""))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# --------------------------------------------------------------------------- HTTP client
def request(url: str, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def invoke(url: str, body: bytes | str | None, content_type: str | None,
           accept: str | None = None) -> tuple[int, dict]:
    """POST /invocations; (status, parsed JSON body). Every answer must be JSON."""
    headers = {}
    if content_type is not None:
        headers["Content-Type"] = content_type
    if accept is not None:
        headers["Accept"] = accept
    data = body.encode() if isinstance(body, str) else body
    status, response_headers, raw = request(url, "POST", "/invocations", data, headers)
    assert response_headers.get("Content-Type") == "application/json", raw[:200]
    return status, json.loads(raw)


# --------------------------------------------------------------------------- fake image host
class ImageHost:
    """Routes of the fake https image host; `hits` counts requests per path."""

    def __init__(self, jpeg: bytes) -> None:
        self.jpeg = jpeg
        self.port = 0
        self.hits: dict[str, int] = {}

    def url(self, path: str, name: str = "img.test") -> str:
        return f"https://{name}:{self.port}{path}"

    def route(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path
        self.hits[path] = self.hits.get(path, 0) + 1
        if path == "/cat.jpg":
            self._send(handler, 200, self.jpeg, {"Content-Type": "image/jpeg"})
        elif path.startswith("/hops/"):  # /hops/N redirects N more times, then the image
            left = int(path.rsplit("/", 1)[1])
            target = "/cat.jpg" if left == 0 else f"/hops/{left - 1}"
            self._send(handler, 302, b"", {"Location": target})
        elif path.startswith("/redirect?to="):
            self._send(handler, 302, b"", {"Location": path.split("=", 1)[1]})
        elif path == "/big-declared":
            handler.send_response(200)
            handler.send_header("Content-Length", str(50 * 1024 * 1024))
            handler.end_headers()
        elif path == "/big-stream":  # no Content-Length: the cap must hold while streaming
            handler.send_response(200)
            handler.send_header("Connection", "close")
            handler.end_headers()
            for _ in range(40):
                handler.wfile.write(b"\0" * 65536)
        elif path == "/slow":  # a byte at a time: each read is quick, the whole is too slow
            handler.send_response(200)
            handler.send_header("Content-Length", "1000")
            handler.end_headers()
            for _ in range(1000):
                handler.wfile.write(b"\0")
                handler.wfile.flush()
                threading.Event().wait(0.05)
        else:
            self._send(handler, 404, b"not found", {})

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes,
              headers: dict[str, str]) -> None:
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

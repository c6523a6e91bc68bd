"""Local model server: the SageMaker hosting container contract on one port.

    python -m inference.server --model PATH --port PORT [--host 127.0.0.1] [--workers N]

PATH is a model dir or a model.tar.gz (extracted to a temp dir). `GET /ping` answers 200 once the
model is loaded; `POST /invocations` runs input_fn → predict_fn → output_fn with the request's
Content-Type and Accept. Prints `listening on http://HOST:PORT` when ready; on a model that
cannot load it prints `error: REASON` to stderr and exits 2. SIGTERM/SIGINT: stop accepting,
finish in-flight requests (up to STEPML_SHUTDOWN_GRACE seconds), exit 0.

Environment: SM_MODEL_DIR / SAGEMAKER_BIND_TO_PORT / SAGEMAKER_MODEL_SERVER_WORKERS (defaults for
--model / --port / --workers); STEPML_MAX_IMAGE_BYTES (5 MiB), STEPML_MAX_PIXELS (25 M),
STEPML_FETCH_TIMEOUT (5 s per operation), STEPML_FETCH_DEADLINE (15 s per URL), STEPML_TOP_K (5),
STEPML_TORCH_THREADS (usable cores), STEPML_SHUTDOWN_GRACE (10 s), STEPML_LOG_LEVEL (INFO);
AWS_ENDPOINT_URL and the usual AWS variables for s3:// inputs.

Workers are threads sharing one model: `--workers` requests run their pipeline at once (fetch,
decode, preprocess, serialise overlap; Pillow, sockets and torch release the GIL), while the
forward pass itself runs one at a time on all cores (see LoadedModel.lock). Pre-forked processes
would hold one model copy each and split the cores between them, making every single request
slower; on a CPU instance one all-core forward at a time is as fast overall and best per request.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import tarfile
import tempfile
import threading
from contextlib import contextmanager
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from . import errors
from .errors import InferenceError, error_body
from .inference import accepts_json, input_fn, model_fn, output_fn, predict_fn
from .limits import Limits
from .network import LoadedModel, ModelLoadError

log = logging.getLogger("stepml.model_server")

JSON_TYPE = "application/json"
_DRAIN_LIMIT = 64 * 1024 * 1024  # read and drop an oversized body up to this, to answer cleanly
_CHUNK = 256 * 1024


# --------------------------------------------------------------------------- model artifact
def resolve_model_dir(model_path: str | os.PathLike[str]
                      ) -> tuple[Path, tempfile.TemporaryDirectory[str] | None]:
    """A directory holding model.pth: PATH itself, or a temp dir with model.tar.gz extracted."""
    path = Path(model_path)
    if path.is_dir() and (path / "model.pth").is_file():
        return path, None
    if path.is_dir() and (path / "model.tar.gz").is_file():
        path = path / "model.tar.gz"
    if not path.is_file():
        raise ModelLoadError(f"{model_path}: no model.pth or model.tar.gz there")
    if not tarfile.is_tarfile(path):
        raise ModelLoadError(f"{path} is neither a model dir nor a tar archive")
    scratch = tempfile.TemporaryDirectory(prefix="stepml-model-")
    try:
        with tarfile.open(path, "r:*") as archive:
            archive.extractall(scratch.name, filter="data")  # no absolute paths, links out, devices
        return _find_model_root(Path(scratch.name), path), scratch
    except (tarfile.TarError, OSError, ModelLoadError) as err:
        scratch.cleanup()
        raise ModelLoadError(f"cannot unpack {path}: {err}") from None


def _find_model_root(root: Path, archive: Path) -> Path:
    if (root / "model.pth").is_file():
        return root
    nested = [p.parent for p in root.glob("*/model.pth")]
    if len(nested) == 1:
        return nested[0]
    raise ModelLoadError(f"{archive} holds no model.pth at its top level")


# --------------------------------------------------------------------------- server
class ModelServer:
    """One serving instance: the loaded model, its HTTP listener and the worker slots."""

    def __init__(self, model_path: str | os.PathLike[str], port: int = 8080,
                 host: str = "127.0.0.1", workers: int | None = None) -> None:
        self.limits = Limits.from_env()  # a bad STEPML_* setting fails here, not per request
        self.model_dir, self._scratch = resolve_model_dir(model_path)
        try:
            self.model: LoadedModel = model_fn(str(self.model_dir))
            self.workers = workers or default_workers()
            self._slots = threading.BoundedSemaphore(self.workers)
            self._idle = threading.Condition()
            self._in_flight = 0
            self.draining = False
            self.httpd = _HTTPServer((host, port), _Handler, self)
        except BaseException:
            self._cleanup()
            raise
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def invoke(self, body: bytes, content_type: str | None, accept: str | None
               ) -> tuple[bytes, str]:
        if not accepts_json(accept):  # fail before doing any work
            raise InferenceError(406, errors.NOT_ACCEPTABLE,
                                 f"cannot answer in {accept!r}; this model answers {JSON_TYPE}")
        with self._slots:
            return output_fn(predict_fn(input_fn(body, content_type), self.model), accept)

    @contextmanager
    def in_flight(self):
        with self._idle:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.2)

    def start(self) -> ModelServer:
        """Serve from a background thread (tests, benchmarks)."""
        self._thread = threading.Thread(target=self.serve_forever, name="model-server",
                                        daemon=True)
        self._thread.start()
        return self

    def begin_shutdown(self) -> None:
        """Stop accepting; safe to call from a signal handler (does not block)."""
        self.draining = True
        threading.Thread(target=self.httpd.shutdown, daemon=True).start()

    def close(self, grace: float | None = None) -> None:
        """Stop accepting, let in-flight requests finish (up to `grace` s), release everything."""
        self.draining = True
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join()
        grace = shutdown_grace() if grace is None else grace
        with self._idle:
            self._idle.wait_for(lambda: self._in_flight == 0, timeout=grace)
        self.httpd.server_close()
        self._cleanup()

    def _cleanup(self) -> None:
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # idle keep-alive connections never block shutdown
    request_queue_size = 128  # the default 5 drops SYNs under a burst of clients
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 app: ModelServer) -> None:
        self.app = app
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: no TCP handshake per invocation
    disable_nagle_algorithm = True  # headers and body go out without a delayed-ACK stall
    timeout = 60  # idle keep-alive connections and slow bodies
    server_version = "stepml-model-server/1"
    server: _HTTPServer

    # ---- routes
    def do_GET(self) -> None:
        path = self._path()
        if path == "/ping":
            self._ping()
        elif path == "/execution-parameters":
            app = self.server.app
            self._send_json(200, {"MaxConcurrentTransforms": app.workers,
                                  "BatchStrategy": "SINGLE_RECORD",
                                  "MaxPayloadInMB": max(1, app.limits.max_body_bytes >> 20)})
        elif path == "/invocations":
            self._send_error(InferenceError(405, errors.METHOD_NOT_ALLOWED, "use POST"))
        else:
            self._not_found()

    def do_POST(self) -> None:
        path = self._path()
        if path == "/invocations":
            with self.server.app.in_flight():
                self._invocations()
        elif path == "/ping":
            self._send_error(InferenceError(405, errors.METHOD_NOT_ALLOWED, "use GET"))
        else:
            self._not_found()

    def do_PUT(self) -> None:
        self._method_not_allowed()

    do_DELETE = do_PATCH = do_PUT

    # ---- handlers
    def _ping(self) -> None:
        if self.server.app.draining:
            self._send_json(503, {"status": "draining"})
        else:
            self._send_json(200, {"status": "healthy"})

    def _invocations(self) -> None:
        app = self.server.app
        try:
            body = self._read_body(app.limits.max_body_bytes)
            payload, content_type = app.invoke(body, self.headers.get("Content-Type"),
                                               self.headers.get("Accept"))
        except InferenceError as err:
            log.info("invocation refused: %s %s: %s", err.status, err.code, err.reason)
            self._send_error(err)
            return
        except Exception:  # a bug or a resource failure: log it, never show it
            log.exception("invocation failed")
            self._send_error(InferenceError(500, errors.INTERNAL_ERROR, "internal error"))
            return
        self._send(200, payload, content_type)

    # ---- request body
    def _read_body(self, cap: int) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(cap)
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b""
        if not raw.strip().isdigit():
            self.close_connection = True  # the stream position is unknown now
            raise InferenceError(400, errors.BAD_REQUEST, f"invalid Content-Length {raw!r}")
        length = int(raw)
        if length > cap:
            self._discard(length)
            raise _body_too_large(length, cap)
        body = self.rfile.read(length)
        if len(body) < length:
            self.close_connection = True
            raise InferenceError(400, errors.BAD_REQUEST, "the body ended before Content-Length")
        return body

    def _read_chunked(self, cap: int) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024).split(b";", 1)[0].strip()
            try:
                size = int(line, 16)
            except ValueError:
                self.close_connection = True
                raise InferenceError(400, errors.BAD_REQUEST, "malformed chunked body") from None
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers
                    pass
                return b"".join(chunks)
            total += size
            if total > cap:
                self.close_connection = True
                raise _body_too_large(total, cap)
            chunks.append(self.rfile.read(size))
            self.rfile.readline(8)  # the CRLF after each chunk

    def _discard(self, length: int) -> None:
        """Drain a modest oversized body so the client reads our 413 instead of a reset."""
        if length > _DRAIN_LIMIT:
            self.close_connection = True
            return
        while length > 0:
            got = self.rfile.read(min(_CHUNK, length))
            if not got:
                self.close_connection = True
                return
            length -= len(got)

    # ---- responses
    def _path(self) -> str:
        return urlsplit(self.path).path

    def _not_found(self) -> None:
        self._send_error(InferenceError(404, errors.NOT_FOUND,
                                        f"no route {self.command} {self._path()}; "
                                        "use GET /ping or POST /invocations"))

    def _method_not_allowed(self) -> None:
        self._send_error(InferenceError(405, errors.METHOD_NOT_ALLOWED,
                                        f"{self.command} is not supported here"))

    def _send_error(self, err: InferenceError) -> None:
        self._send(err.status, err.to_json(), JSON_TYPE)

    def _send_json(self, status: int, document: dict) -> None:
        self._send(status, json.dumps(document).encode("utf-8"), JSON_TYPE)

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        if self.server.app.draining:
            self.close_connection = True
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if getattr(self, "command", "") != "HEAD":
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client left; nothing to tell it

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """http.server's own protocol errors (bad request line, 501, 431 …) as JSON too."""
        self.close_connection = True
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "Error"
        code_name = phrase.title().replace(" ", "").replace("-", "")  # e.g. "RequestTimeout"
        self._send(code, error_body(code_name, message or phrase), JSON_TYPE)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s " + format, self.address_string(), *args)


def _body_too_large(length: int, cap: int) -> InferenceError:
    return InferenceError(413, errors.PAYLOAD_TOO_LARGE,
                          f"the body is {length} bytes; the limit is {cap}")


# --------------------------------------------------------------------------- entry points
def default_workers() -> int:
    raw = os.environ.get("SAGEMAKER_MODEL_SERVER_WORKERS", "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(2, 2 * cores)


def shutdown_grace() -> float:
    try:
        return float(os.environ.get("STEPML_SHUTDOWN_GRACE", "10"))
    except ValueError:
        return 10.0


def serve(model_path: str | os.PathLike[str], port: int = 8080, host: str = "127.0.0.1",
          workers: int | None = None) -> int:
    """Load, listen, print the readiness line, serve until SIGTERM/SIGINT; returns 0."""
    server = ModelServer(model_path, port=port, host=host, workers=workers)
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: server.begin_shutdown())
    print(f"listening on {server.url}", flush=True)
    log.info("model %s (%s, %d classes) from %s; %d workers", server.model.version,
             server.model.arch, len(server.model.classes), server.model_dir, server.workers)
    server.serve_forever()
    server.close()
    log.info("stopped")
    return 0


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m inference.server", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=os.environ.get("SM_MODEL_DIR", "/opt/ml/model"),
                        help="model dir or model.tar.gz (default: $SM_MODEL_DIR or "
                             "/opt/ml/model)")
    parser.add_argument("--port", type=int,
                        default=int(os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080")),
                        help="0 picks a free port (default: $SAGEMAKER_BIND_TO_PORT or 8080)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--workers", type=int, default=None,
                        help="concurrent requests (default: $SAGEMAKER_MODEL_SERVER_WORKERS "
                             "or 2 x cores)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=os.environ.get("STEPML_LOG_LEVEL", "INFO").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return serve(args.model, port=args.port, host=args.host, workers=args.workers)
    except (ModelLoadError, ValueError, OSError) as err:  # bad artifact, bad setting, port taken
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The PyTorch inference container's serving process, run inside a container (``containers.py``).

Runs as ``python -I -B serving_container.py`` in the container's interpreter, so it imports the
standard library and what the image holds (AWS's toolkits, torch), never the project: ``-I`` keeps
this file's own directory off ``sys.path``.

In the container, ``serve`` (``sagemaker_pytorch_serving_container.serving``) starts TorchServe:
its Java front end answers ``/ping`` and ``/invocations`` and hands each request to a Python
worker that runs the toolkit's ``HandlerService``. Here the front end is this HTTP server and the
worker is this process; everything the toolkits do is theirs:

==============================================  ============================================
``torchserve.start_torchserve``                 here
==============================================  ============================================
``model_server._install_requirements()``        the same call, before anything loads; a pip
(``pip install -r <model>/code/requirements``)  failure ends the process, as the container's
``_set_python_path``: ``<model>/code`` first     ``<model>/code`` first on ``sys.path``
workers (``SAGEMAKER_MODEL_SERVER_WORKERS``,     the same count, each a thread with its own
else one per vCPU), each                        ``HandlerService``, its own ``Context`` of
``HandlerService().initialize(ctx)`` in the     TorchServe's shape (``ts/context.py``); cwd
model directory                                 the model dir
a failed load: the worker restarts with          the same back-off; ``/ping`` is 500 until a
back-off, ``/ping`` stays unhealthy             load succeeds in every worker
``HandlerService().handle(batch, ctx)``          the same, batch size 1, waiting requests
from the front end's job queue                  served in turn by the last idle worker
the response: the status, phrase and content     the same mapping
type the handler set on the context
==============================================  ============================================

Why not TorchServe itself: measured here (README, "TorchServe or the toolkit's handler"), it
reached its first 200 in 8.4 to 12.6 s against this server's ~5 s, answered ``/ping`` 200 before
the model had loaded, and two instances on one machine collided on its fixed management ports.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LOG = logging.getLogger("serving-container")
MODEL_NAME = "model"  # TorchServe's DEFAULT_TS_MODEL_NAME in the toolkit
RESTART_BACKOFF_S = (1, 1, 2, 3, 5, 8, 13, 21, 34)  # TorchServe's worker restart delays
NOT_FOUND = {"code": 404, "type": "ResourceNotFoundException",
             "message": "Requested resource is not found, please refer to API document."}


class RequestProcessor:
    """One request's headers and response status, as ``ts.context.RequestProcessor``."""

    def __init__(self, request_header: dict[str, Any]) -> None:
        self._status_code = 200
        self._reason_phrase: str | None = None
        self._response_header: dict[str, str] = {}
        self._request_header = request_header

    def get_request_property(self, key: str) -> Any:
        return self._request_header.get(key)

    def get_request_properties(self) -> dict[str, Any]:
        return self._request_header

    def report_status(self, code: int, reason_phrase: str | None = None) -> None:
        self._status_code = code
        self._reason_phrase = reason_phrase

    def get_response_status_code(self) -> int:
        return self._status_code

    def get_response_status_phrase(self) -> str | None:
        return self._reason_phrase

    def add_response_property(self, key: str, value: str) -> None:
        self._response_header[key] = value

    def get_response_headers(self) -> dict[str, str]:
        return self._response_header

    def get_response_header(self, key: str) -> str | None:
        return self._response_header.get(key)


class Context:
    """What TorchServe hands a handler (``ts.context.Context``): the part handlers use."""

    def __init__(self, model_dir: str, manifest: dict | None) -> None:
        self.model_name = MODEL_NAME
        self.manifest = manifest
        self._system_properties = {"model_dir": model_dir, "gpu_id": None, "batch_size": 1,
                                   "server_name": "MMS", "server_version": "localcloud",
                                   "limit_max_image_pixels": True}
        self.request_ids: dict[int, str] | None = None
        self.request_processor: list[RequestProcessor] | None = None
        self.metrics = None
        self.model_yaml_config: dict = {}

    @property
    def system_properties(self) -> dict[str, Any]:
        return self._system_properties

    def get_request_id(self, idx: int = 0) -> str | None:
        return None if self.request_ids is None else self.request_ids.get(idx)

    def get_request_header(self, idx: int, key: str) -> Any:
        return self.request_processor[idx].get_request_property(key)

    def get_all_request_header(self, idx: int) -> dict[str, Any]:
        return self.request_processor[idx].get_request_properties()

    def set_response_header(self, idx: int, key: str, value: str) -> None:
        self.request_processor[idx].add_response_property(key, value)

    def get_response_headers(self, idx: int) -> dict[str, str]:
        return self.request_processor[idx].get_response_headers()

    def set_response_content_type(self, idx: int, value: str) -> None:
        self.set_response_header(idx, "content-type", value)

    def get_response_content_type(self, idx: int) -> str | None:
        return self.get_response_headers(idx).get("content-type")

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        if self.request_processor is not None and self.request_processor[idx] is not None:
            self.request_processor[idx].report_status(code, reason_phrase=phrase)

    def set_all_response_status(self, code: int = 200, phrase: str = "") -> None:
        for processor in self.request_processor or []:
            processor.report_status(code, reason_phrase=phrase)

    def get_response_status(self, idx: int) -> tuple[int, str | None]:
        processor = self.request_processor[idx]
        return processor.get_response_status_code(), processor.get_response_status_phrase()


def error_body(code: int, kind: str, message: str) -> bytes:
    return json.dumps({"code": code, "type": kind, "message": message}, indent=2).encode()


def response_bytes(value: Any) -> bytes:
    """A handler's return value on the wire, in TorchServe's order (otf_message_handler)."""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value, indent=2).encode("utf-8")


Answer = tuple[int, str | None, str | None, bytes]  # status, phrase, content type, body


@dataclass
class Job:
    body: bytes
    headers: dict[str, str]
    done: threading.Event = field(default_factory=threading.Event)
    answer: Answer | None = None


def default_workers() -> int:
    """TorchServe's workers per model in the container: SAGEMAKER_MODEL_SERVER_WORKERS, else one
    per vCPU."""
    raw = os.environ.get("SAGEMAKER_MODEL_SERVER_WORKERS", "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else len(os.sched_getaffinity(0))


class Workers:
    """The model's backend workers, each the toolkit's HandlerService over the model directory,
    all fed from one queue."""

    def __init__(self, model_dir: str, count: int) -> None:
        self.model_dir = os.path.abspath(model_dir)
        self.code_dir = os.path.join(self.model_dir, "code")
        self.count = count
        self.ready = threading.Event()  # every worker has loaded the model
        self._loaded = 0
        self._guard = threading.Lock()
        # Idle workers' inboxes, last idle first: one client keeps hitting the same warm worker
        # (its torch thread pool hot), the others join in as requests overlap.
        self._idle: queue.LifoQueue[queue.SimpleQueue[Job]] = queue.LifoQueue()

    def _manifest(self) -> dict | None:
        path = os.path.join(self.model_dir, "MAR-INF", "MANIFEST.json")
        if not os.path.exists(path):
            return None
        with open(path) as handle:
            return json.load(handle)

    def install_requirements(self) -> None:
        from sagemaker_inference import model_server

        if os.path.exists(model_server.REQUIREMENTS_PATH):
            try:
                model_server._install_requirements()
            except ValueError as error:  # the container's serve exits: no model server starts
                LOG.error("%s; the container exits", error)
                sys.exit(1)

    def prepare(self) -> None:
        if self.code_dir not in sys.path:
            sys.path.insert(0, self.code_dir)  # _set_python_path: the worker's PYTHONPATH
        os.chdir(self.model_dir)  # the worker's working directory

    def load_until_ready(self, context: Context) -> Any:
        """A loaded HandlerService: ``initialize`` until it succeeds, restarting with
        TorchServe's back-off."""
        from sagemaker_pytorch_serving_container.handler_service import HandlerService

        attempt = 0
        while True:
            started = time.monotonic()
            service = HandlerService()
            try:
                service.initialize(context)
            except Exception:
                delay = RESTART_BACKOFF_S[min(attempt, len(RESTART_BACKOFF_S) - 1)]
                LOG.exception("Backend worker failed to load the model; retry in %s s", delay)
                attempt += 1
                time.sleep(delay)
                continue
            LOG.info("Model %s loaded in %.2f s", MODEL_NAME, time.monotonic() - started)
            with self._guard:
                self._loaded += 1
                if self._loaded == self.count:
                    self.ready.set()
            return service

    def invoke(self, body: bytes, headers: dict[str, str]) -> Answer:
        """(status, reason phrase, content type, body) for one /invocations request."""
        if not self.ready.is_set():
            return 503, None, "application/json", error_body(
                503, "ServiceUnavailableException",
                f'Model "{MODEL_NAME}" has no worker to serve inference request. '
                "Please use scale workers API to add workers.")
        job = Job(body, headers)
        self._idle.get().put(job)  # waiting requests are served in turn, as from TorchServe's queue
        job.done.wait()
        assert job.answer is not None
        return job.answer

    def run(self) -> None:
        """One backend worker: load the model, then answer requests one at a time, all on this
        thread (its torch thread pool stays with it)."""
        context = Context(self.model_dir, self._manifest())
        service = self.load_until_ready(context)
        inbox: queue.SimpleQueue[Job] = queue.SimpleQueue()
        while True:
            self._idle.put(inbox)
            job = inbox.get()
            try:
                job.answer = self._handle(service, context, job.body, job.headers)
            finally:
                if job.answer is None:  # the handler escaped even its own error handling
                    job.answer = 503, None, "application/json", error_body(
                        503, "InternalServerException", "Prediction failed")
                job.done.set()

    @staticmethod
    def _handle(service: Any, context: Context, body: bytes, headers: dict[str, str]) -> Answer:
        request_header: dict[str, Any] = dict(headers)
        request_header["body"] = {"content-type": headers.get("Content-Type")}
        context.request_ids = {0: str(uuid.uuid4())}
        context.request_processor = [RequestProcessor(request_header)]
        try:
            result = service.handle([{"body": body}], context)
        except Exception:  # ts/service.py: the worker's own failure
            LOG.exception("Invoking custom service failed.")
            return 503, None, "application/json", error_body(
                503, "InternalServerException", "Prediction failed")
        if not isinstance(result, list) or len(result) != 1:
            return 503, None, "application/json", error_body(
                503, "InternalServerException", "Invalid model predict output")
        processor = context.request_processor[0]
        return (processor.get_response_status_code() or 200, processor.get_response_status_phrase(),
                processor.get_response_header("content-type"), response_bytes(result[0]))


def handler_class(workers: Workers) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes; with Nagle and the client's delayed ACK each
        # keep-alive response would wait ~40 ms.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
            return None  # access log off, as the container's default log config

        def send(self, status: int, body: bytes, content_type: str | None = None,
                 phrase: str | None = None) -> None:
            phrase = (phrase or "").encode("latin-1", "replace").decode("latin-1")
            self.send_response(status, phrase or None)
            if content_type:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/ping":
                self.send(404, error_body(**NOT_FOUND), "application/json")
            elif workers.ready.is_set():
                self.send(200, b'{\n  "status": "Healthy"\n}\n', "application/json")
            else:
                self.send(500, b'{\n  "status": "Unhealthy"\n}\n', "application/json")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if self.path.split("?")[0] != "/invocations":
                self.send(404, error_body(**NOT_FOUND), "application/json")
                return
            status, phrase, content_type, out = workers.invoke(body, dict(self.headers.items()))
            self.send(status, out, content_type, phrase)

    return Handler


class Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default listen backlog is 5: a burst of connections past it waits out SYN
    # retries (1 s, 3 s, …), health checks included. TorchServe's front end accepts far more.
    request_queue_size = 1024


def main() -> None:
    logging.basicConfig(level=int(os.environ.get("SAGEMAKER_CONTAINER_LOG_LEVEL", "20")),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    model_dir = os.path.join(os.environ.get("SAGEMAKER_BASE_DIR", "/opt/ml"), "model")
    port = int(os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080"))
    workers = Workers(model_dir, default_workers())
    workers.install_requirements()
    workers.prepare()
    server = Server(("127.0.0.1", port), handler_class(workers))
    for index in range(workers.count):
        threading.Thread(target=workers.run, name=f"worker-{index}", daemon=True).start()
    LOG.info("serving %s on 127.0.0.1:%d with %d workers", model_dir, port, workers.count)
    server.serve_forever()


if __name__ == "__main__":
    main()

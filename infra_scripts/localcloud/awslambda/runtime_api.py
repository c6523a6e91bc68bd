"""The Lambda Runtime API each execution environment's runtime client talks to.

AWS's runtime interface client polls ``GET /2018-06-01/runtime/invocation/next`` for an event,
then posts ``…/invocation/{id}/response`` or ``…/invocation/{id}/error``; a failed init posts
``/2018-06-01/runtime/init/error`` and exits. Here each environment has its own small HTTP
server on loopback (the address goes in ``AWS_LAMBDA_RUNTIME_API``), and the Lambda service side
(``runtime``) hands it one invocation at a time.
"""

from __future__ import annotations

import json
import queue
import re
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from infra_scripts.localcloud.core.processes import LOOPBACK

API = "/2018-06-01/runtime"
_INVOCATION = re.compile(rf"{API}/invocation/(?P<id>[^/]+)/(?P<what>response|error)")
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
# Invoke's synchronous response limit, enforced where AWS enforces it: when the runtime posts
# the response ("Invocation payload (response)": 6 MB, Lambda quotas,
# https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html).
MAX_RESPONSE_BYTES = 6 * 1024 * 1024 + 100  # 6291556, the figure AWS's error message names


@dataclass
class Invocation:
    request_id: str
    payload: bytes
    deadline_ms: int
    invoked_arn: str
    client_context: str | None = None
    done: threading.Event = field(default_factory=threading.Event)
    body: bytes = b""
    error_type: str | None = None  # set for /error posts and limit violations


@dataclass
class InitOutcome:
    ready: threading.Event = field(default_factory=threading.Event)
    error_body: bytes | None = None
    error_type: str | None = None


class RuntimeApi:
    """One environment's Runtime API: ``deliver`` an invocation, wait on its ``done``."""

    def __init__(self) -> None:
        self.init = InitOutcome()
        self._inbox: queue.Queue[Invocation | None] = queue.Queue()
        self._current: Invocation | None = None
        self._server = _Server((LOOPBACK, 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="lambda-runtime-api",
                                        daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self._server.server_port}"

    def deliver(self, invocation: Invocation) -> None:
        self._inbox.put(invocation)

    def close(self) -> None:
        self._inbox.put(None)  # a client blocked in /next gets an error and exits
        # shutdown() waits for the serve loop's next poll: not on the caller's time.
        threading.Thread(target=self._stop_serving, name="lambda-runtime-api-stop", daemon=True).start()

    def _stop_serving(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- called by the HTTP handler ------------------------------------------------------------
    def next_invocation(self) -> Invocation | None:
        self.init.ready.set()  # the first poll means init finished
        self._current = self._inbox.get()
        return self._current

    def finish(self, request_id: str, body: bytes, error_type: str | None) -> bool:
        current = self._current
        if current is None or current.request_id != request_id:
            return False
        current.body, current.error_type = body, error_type
        self._current = None
        current.done.set()
        return True

    def init_failed(self, body: bytes, error_type: str) -> None:
        self.init.error_body, self.init.error_type = body, error_type
        self.init.ready.set()


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """A killed environment drops its connection mid-request: that is not an error here."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def response_too_large() -> tuple[bytes, str]:
    message = f"Response payload size exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes)."
    return json.dumps({"errorMessage": message, "errorType": "Function.ResponseSizeTooLarge"}).encode(), \
        "Function.ResponseSizeTooLarge"


def _handler_for(api: RuntimeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # the client keeps its connection open between calls
        disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms stall

        def log_message(self, *args: object) -> None:  # the runtime's traffic is not user logs
            pass

        def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _status(self, status: int, error_type: str = "", message: str = "") -> None:
            body = {"status": "OK"} if not error_type else {"errorType": error_type, "errorMessage": message}
            self._reply(status, json.dumps(body).encode(), {"Content-Type": "application/json"})

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path != f"{API}/invocation/next":
                return self._status(404, "InvalidRequest", f"unknown path {self.path}")
            invocation = api.next_invocation()
            if invocation is None:
                return self._status(500, "ServiceShutdown", "the execution environment is shutting down")
            headers = {
                "Content-Type": "application/json",
                "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
                "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
                "Lambda-Runtime-Invoked-Function-Arn": invocation.invoked_arn,
                "Lambda-Runtime-Trace-Id": _trace_id(invocation.request_id),
            }
            if invocation.client_context:
                headers["Lambda-Runtime-Client-Context"] = invocation.client_context
            self._reply(200, invocation.payload, headers)

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if self.path == f"{API}/init/error":
                api.init_failed(body, self.headers.get(ERROR_TYPE_HEADER) or "Runtime.Unknown")
                return self._status(202)
            found = _INVOCATION.fullmatch(self.path)
            if not found:
                return self._status(404, "InvalidRequest", f"unknown path {self.path}")
            error_type = self.headers.get(ERROR_TYPE_HEADER) if found["what"] == "error" else None
            if found["what"] == "error" and error_type is None:
                error_type = _error_type(body)
            too_large = found["what"] == "response" and length > MAX_RESPONSE_BYTES
            if too_large:
                body, error_type = response_too_large()
            if not api.finish(found["id"], body, error_type):
                return self._status(400, "InvalidRequestID", "Invalid request ID")
            if too_large:
                return self._status(413, "RequestEntityTooLarge",
                                    f"Exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes).")
            self._status(202)

    return Handler


def _error_type(body: bytes) -> str:
    try:
        return str(json.loads(body).get("errorType") or "Unhandled")
    except (ValueError, AttributeError):
        return "Unhandled"


def _trace_id(request_id: str) -> str:
    hex_digits = request_id.replace("-", "")
    return f"Root=1-{hex_digits[:8]}-{hex_digits[8:32]};Parent={hex_digits[:16]};Sampled=0"

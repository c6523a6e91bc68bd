"""``stepml console``: a small local web app over the Step Functions API.

State machines, their executions (status, duration), one execution's graph coloured by state
status and refreshed live by polling, each state's input/output/error, the event history and a
Redrive button. Standard library HTTP server on 127.0.0.1; it reads only through the public API,
so the same console works against AWS and the local cloud.

JSON API (errors are ``{"error": CODE, "message": TEXT}`` with a 4xx, never a stack trace):
``GET /api/state-machines``, ``GET /api/executions?stateMachineArn=``,
``GET /api/execution?arn=``, ``POST /api/redrive`` with ``{"executionArn": ...}``.

Only its own page may use it, as Jupyter guards its server: a token made at each start is in
the URL printed (``/?token=…``) and must come back as the ``X-Stepml-Token`` header on every API
call; the Host must be this server's (no DNS rebinding); a request with another Origin is
refused; a POST must be ``application/json`` (no form can send that without a CORS preflight,
and no CORS is answered). With the user's AWS credentials behind it, a redrive from another
page would otherwise act on real executions.
"""

from __future__ import annotations

import hmac
import json
import secrets
import threading
import traceback
from datetime import date, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from botocore.exceptions import BotoCoreError, ClientError

from infra_scripts import executions as ex
from infra_scripts.progress import history
from statemachine import graph

STATIC = Path(__file__).with_name("static")
MAX_BODY = 64 * 1024
HISTORY_LIMIT = 500  # events sent to the page; the CLI's `history` shows them all
_NOT_FOUND = ("ExecutionDoesNotExist", "StateMachineDoesNotExist", "ResourceNotFound")
_BAD_INPUT = ("InvalidArn", "ValidationException", "InvalidName", "InvalidToken")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _from_client_error(error: ClientError) -> ApiError:
    code = error.response.get("Error", {}).get("Code", "ServiceError")
    message = error.response.get("Error", {}).get("Message", str(error))
    if code in _NOT_FOUND:
        return ApiError(404, code, message)
    if code in _BAD_INPUT:
        return ApiError(400, code, message)
    if code == "ExecutionNotRedrivable":
        return ApiError(409, code, message)
    if "Throttl" in code or code == "TooManyRequestsException":
        return ApiError(503, code, message)
    return ApiError(502, code, message)


class ConsoleApi:
    """The console's operations, independent of HTTP (tested directly and through HTTP)."""

    def __init__(self, clients: ex.Clients) -> None:
        self.clients = clients

    @property
    def sfn(self) -> Any:
        return self.clients.client("stepfunctions")

    def _link(self, arn: str) -> str | None:
        return ex.console_url(self.clients.region, arn) if self.clients.on_aws else None

    def state_machines(self) -> dict:
        machines = [{"name": m["name"], "arn": m["stateMachineArn"], "type": m.get("type"),
                     "creationDate": m.get("creationDate"), "consoleUrl": self._link(m["stateMachineArn"])}
                    for m in ex.list_state_machines(self.sfn)]
        return {"stateMachines": sorted(machines, key=lambda m: m["name"])}

    def executions(self, state_machine_arn: str) -> dict:
        _require(state_machine_arn, ex.STATE_MACHINE_ARN, "stateMachineArn", "a state machine ARN")
        items = ex.list_executions(self.sfn, state_machine_arn)
        return {"executions": [{
            "name": e["name"], "arn": e["executionArn"], "status": e["status"],
            "startDate": e["startDate"], "stopDate": e.get("stopDate"),
            "durationSeconds": round(ex.duration_seconds(e), 1), "redriveCount": e.get("redriveCount", 0),
        } for e in items]}

    def execution(self, arn: str) -> dict:
        _require(arn, ex.EXECUTION_ARN, "arn", "an execution ARN")
        described = self.sfn.describe_execution(executionArn=arn)
        machine = self.sfn.describe_state_machine_for_execution(executionArn=arn)
        events = history(self.sfn, arn)
        runs = ex.state_runs(events)
        definition = json.loads(machine["definition"])
        described.pop("ResponseMetadata", None)
        return {
            "execution": {**described, "durationSeconds": round(ex.duration_seconds(described), 1)},
            "redrivable": described["status"] in ex.REDRIVABLE,
            "stateMachine": {"name": machine["name"], "arn": machine["stateMachineArn"]},
            "states": [run.as_dict() for run in runs.values()],
            "stateTypes": {name: state["Type"] for name, state in definition["States"].items()},
            "svg": graph.to_svg(definition, ex.statuses(runs), title=described["name"]),
            "events": events[-HISTORY_LIMIT:],
            "eventCount": len(events),
            "consoleUrl": self._link(arn),
        }

    def redrive(self, body: Any) -> dict:
        arn = body.get("executionArn") if isinstance(body, dict) else None
        _require(arn, ex.EXECUTION_ARN, "executionArn", "an execution ARN")
        try:
            return {"redriveDate": ex.redrive(self.sfn, arn), "executionArn": arn}
        except ex.WorkflowError as error:
            raise ApiError(error.status, error.code, error.message) from None


def _require(value: Any, pattern: Any, name: str, what: str) -> None:
    if not isinstance(value, str) or not value:
        raise ApiError(400, "MissingParameter", f"{name} is required")
    if not pattern.match(value):
        raise ApiError(400, "InvalidArn", f"{name} must be {what}, got {value[:200]!r}")


def _json_default(value: Any) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


class _Handler(BaseHTTPRequestHandler):
    api: ConsoleApi  # set on the subclass the server builds
    server_version = "stepml-console"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # quiet: the console is interactive

    token: str  # set on the subclass the server builds
    hosts: frozenset[str] = frozenset()

    def _refusal(self, page: bool = False) -> ApiError | None:
        """Why this request is not from the console's own page, or None."""
        host = self.headers.get("Host", "")
        if host not in self.hosts:
            return ApiError(403, "ForbiddenHost", f"Host {host!r} is not this console's")
        origin = self.headers.get("Origin")
        if origin is not None and origin.removeprefix("http://") not in self.hosts:
            return ApiError(403, "ForbiddenOrigin", f"requests from {origin} are refused")
        query = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
        given = query.get("token", "") if page else self.headers.get("X-Stepml-Token", "")
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return ApiError(403, "InvalidToken", "open the URL `stepml console` printed (it "
                            "carries this start's token)")
        return None

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        refused = self._refusal(page=url.path in ("/", "/index.html"))
        if refused is not None:
            return self._answer(lambda: _raise(refused))
        if url.path in ("/", "/index.html"):
            return self._static("index.html", "text/html; charset=utf-8")
        routes = {"/api/state-machines": lambda: self.api.state_machines(),
                  "/api/executions": lambda: self.api.executions(query.get("stateMachineArn", "")),
                  "/api/execution": lambda: self.api.execution(query.get("arn", ""))}
        self._answer(routes.get(url.path))

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        refused = self._refusal()
        if refused is None and self.headers.get_content_type() != "application/json":
            refused = ApiError(415, "UnsupportedMediaType", "POST bodies must be application/json")
        if refused is not None:
            return self._answer(lambda: _raise(refused))
        if urlparse(self.path).path != "/api/redrive":
            return self._answer(None)
        self._answer(lambda: self.api.redrive(self._body()))

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ApiError(413, "PayloadTooLarge", f"request body over {MAX_BODY} bytes")
        try:
            return json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            raise ApiError(400, "InvalidJSON", "request body must be a JSON object") from None

    def _answer(self, operation: Any) -> None:
        try:
            if operation is None:
                raise ApiError(404, "NotFound", f"no such path: {urlparse(self.path).path}")
            self._send(200, operation())
        except ApiError as error:
            self._send(error.status, {"error": error.code, "message": error.message})
        except ClientError as error:
            api_error = _from_client_error(error)
            self._send(api_error.status, {"error": api_error.code, "message": api_error.message})
        except BotoCoreError as error:  # endpoint unreachable, no credentials...
            self._send(502, {"error": type(error).__name__, "message": str(error)})
        except Exception:  # a bug here, not bad input: log it, answer without the trace
            traceback.print_exc()
            self._send(500, {"error": "InternalError", "message": "unexpected console error (logged)"})

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body, default=_json_default).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _static(self, name: str, content_type: str) -> None:
        data = (STATIC / name).read_bytes()
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _raise(error: ApiError) -> Any:
    raise error


class ConsoleServer:
    """The console on 127.0.0.1; ``port=0`` picks a free port. ``url_with_token`` is what to open."""

    def __init__(self, clients: ex.Clients, port: int = 0, host: str = "127.0.0.1") -> None:
        self.token = secrets.token_urlsafe(24)  # per start: a page of another origin cannot know it
        handler = type("ConsoleHandler", (_Handler,), {"api": ConsoleApi(clients), "token": self.token})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        bound = self.httpd.server_address[1]
        handler.hosts = frozenset({f"{host}:{bound}", f"localhost:{bound}"})
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def url_with_token(self) -> str:
        return f"{self.url}/?token={self.token}"

    def start(self) -> ConsoleServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True,
                                        name="stepml-console")
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

"""Lambda Invoke on the local cloud runs the deployed code (moto 5.2 would need Docker).

Each published version gets a pool of warm worker processes (``lambda_worker``); a request takes
an idle worker or starts one (a cold start), so concurrent invocations run in parallel. Workers
are forked from a forkserver that has already imported boto3, the way Lambda's runtime is
already booted before your init code runs; the handler module's import is the cold start.
Reserved concurrency caps in-flight invocations per function (429 beyond it); the timeout from
the function's configuration kills the worker.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from werkzeug.wrappers import Request, Response

from infra_scripts.localcloud.awslambda.worker import WorkerSpec
from infra_scripts.localcloud.core.logs import put_log_lines
from infra_scripts.localcloud.core.processes import signal_group
from infra_scripts.localcloud.core.server import LocalCloud, aws_error, match_path

INVOKE_PATH = r"/2015-03-31/functions/(?P<name>.+)/invocations/?"
INIT_TIMEOUT_S = 10.0
LOG_TAIL_BYTES = 4096


class Zygote:
    """Client of ``awslambda.zygote``: asks it to fork a worker wired to a fresh socket."""

    def __init__(self) -> None:
        self._control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._process = subprocess.Popen(
            [sys.executable, "-I", "-m", "infra_scripts.localcloud.awslambda.zygote",
             str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
        )
        theirs.close()
        self._lock = threading.Lock()

    def fork_worker(self, spec: WorkerSpec) -> tuple[int, Connection]:
        ours, theirs = socket.socketpair()
        with self._lock:
            message = json.dumps(dataclasses.asdict(spec)).encode()
            socket.send_fds(self._control, [message], [theirs.fileno()])
            pid = int.from_bytes(self._control.recv(8), "big")
        theirs.close()
        return pid, Connection(ours.detach())

    def stop(self) -> None:
        self._control.close()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()


@dataclass
class Worker:
    pid: int
    connection: Connection
    spec: WorkerSpec
    provisioned: bool = False
    invocations: int = 0

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except OSError:
            return False
        return not self.connection.closed

    def kill(self) -> None:
        self.connection.close()
        signal_group(self.pid, signal.SIGKILL)


@dataclass
class FunctionStats:
    invocations: int = 0
    cold_starts: int = 0
    throttles: int = 0
    errors: int = 0
    timeouts: int = 0
    max_concurrency: int = 0


@dataclass
class InvokeResult:
    status: int
    payload: bytes
    function_error: str | None = None
    log_tail: str = ""
    headers: dict[str, str] = field(default_factory=dict)


class TooManyRequests(Exception):
    pass


class LambdaRuntime:
    def __init__(self, cloud: LocalCloud) -> None:
        self.cloud = cloud
        self.root = cloud.work_dir / "lambda"
        self._lock = threading.Lock()
        self._idle: dict[tuple[str, str], list[Worker]] = defaultdict(list)
        self._all: list[Worker] = []
        self._in_flight: dict[str, int] = defaultdict(int)
        self.stats: dict[str, FunctionStats] = defaultdict(FunctionStats)
        self._zygote: Zygote | None = None
        self._worker_counter = 0

    def zygote(self) -> Zygote:
        with self._lock:
            if self._zygote is None:
                self._zygote = Zygote()
            return self._zygote

    # -- function resolution -------------------------------------------------------------
    def resolve(self, name_or_arn: str, qualifier: str | None) -> Any:
        """moto's function object for the version an invocation runs (alias → version)."""
        backend = self.cloud.backend("lambda")
        return backend.get_function(name_or_arn, qualifier)

    def reserved_concurrency(self, function_name: str) -> int | None:
        latest = self.cloud.backend("lambda").get_function(function_name, None)
        value = latest.reserved_concurrency
        return None if value in (None, "") else int(value)

    def _code_dir(self, fn: Any) -> Path:
        target = self.root / "code" / fn.function_name / fn.code_sha_256.replace("/", "_")
        if not target.exists():
            staging = target.with_suffix(".tmp" + uuid.uuid4().hex)
            with zipfile.ZipFile(io.BytesIO(fn.code_bytes)) as archive:
                archive.extractall(staging)
            try:
                staging.rename(target)
            except OSError:  # another thread extracted the same code first
                pass
        return target

    def _spec(self, fn: Any) -> WorkerSpec:
        with self._lock:
            self._worker_counter += 1
            number = self._worker_counter
        log_dir = self.root / "logs" / fn.function_name
        log_dir.mkdir(parents=True, exist_ok=True)
        environment = {
            **self.cloud.child_env(),
            **{str(k): str(v) for k, v in (fn.environment_vars or {}).items()},
            "AWS_LAMBDA_FUNCTION_NAME": fn.function_name,
            "AWS_LAMBDA_FUNCTION_VERSION": str(fn.version),
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory_size),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{fn.function_name}",
            "LAMBDA_TASK_ROOT": "",
        }
        code_dir = str(self._code_dir(fn))
        environment["LAMBDA_TASK_ROOT"] = code_dir
        return WorkerSpec(
            function_name=fn.function_name,
            function_arn=fn.function_arn,
            version=str(fn.version),
            handler=fn.handler,
            code_dir=code_dir,
            environment=environment,
            memory_mb=int(fn.memory_size),
            log_path=str(log_dir / f"worker-{number:05d}.log"),
            log_group=f"/aws/lambda/{fn.function_name}",
        )

    # -- worker pool ----------------------------------------------------------------------
    def start_worker(self, fn: Any, provisioned: bool = False) -> Worker:
        """A cold start: fork a fresh environment and run the handler module's init."""
        spec = self._spec(fn)
        pid, connection = self.zygote().fork_worker(spec)
        worker = Worker(pid, connection, spec, provisioned=provisioned)
        with self._lock:
            self._all.append(worker)
        if not connection.poll(INIT_TIMEOUT_S):
            self._retire(worker)
            raise RuntimeError(f"worker for {spec.function_name} did not start")
        connection.recv()
        return worker

    def _checkout(self, fn: Any) -> tuple[Worker, bool]:
        key = (fn.function_name, str(fn.version))
        with self._lock:
            idle = self._idle[key]
            while idle:
                worker = idle.pop()
                if worker.alive():
                    return worker, False
        return self.start_worker(fn), True

    def _checkin(self, fn: Any, worker: Worker) -> None:
        with self._lock:
            self._idle[(fn.function_name, str(fn.version))].append(worker)

    def _retire(self, worker: Worker) -> None:
        worker.kill()
        with self._lock:
            if worker in self._all:
                self._all.remove(worker)

    def add_idle(self, fn: Any, worker: Worker) -> None:
        self._checkin(fn, worker)

    def idle_workers(self, function_name: str, version: str) -> list[Worker]:
        with self._lock:
            return list(self._idle[(function_name, version)])

    def retire_provisioned(self, function_name: str, version: str) -> int:
        with self._lock:
            idle = self._idle[(function_name, version)]
            leaving = [worker for worker in idle if worker.provisioned]
            self._idle[(function_name, version)] = [w for w in idle if not w.provisioned]
        for worker in leaving:
            self._retire(worker)
        return len(leaving)

    # -- invoke -----------------------------------------------------------------------------
    def _admit(self, function_name: str) -> None:
        limit = self.reserved_concurrency(function_name)
        with self._lock:
            stats = self.stats[function_name]
            if limit is not None and self._in_flight[function_name] >= limit:
                stats.throttles += 1
                raise TooManyRequests(function_name)
            self._in_flight[function_name] += 1
            stats.invocations += 1
            stats.max_concurrency = max(stats.max_concurrency, self._in_flight[function_name])

    def _release(self, function_name: str) -> None:
        with self._lock:
            self._in_flight[function_name] -= 1

    def invoke(self, fn: Any, event: str, tail_logs: bool = False) -> InvokeResult:
        self._admit(fn.function_name)
        try:
            worker, cold = self._checkout(fn)
            if cold:
                self.stats[fn.function_name].cold_starts += 1
            return self._run_on(worker, fn, event, tail_logs)
        finally:
            self._release(fn.function_name)

    def _run_on(self, worker: Worker, fn: Any, event: str, tail_logs: bool) -> InvokeResult:
        request_id = str(uuid.uuid4())
        timeout_s = float(fn.timeout or 3)
        log_offset = _file_size(worker.spec.log_path)
        deadline_ms = int((time.time() + timeout_s) * 1000)
        reply = self._exchange(worker, {"event": event, "request_id": request_id,
                                        "deadline_ms": deadline_ms}, timeout_s)
        if reply is None:
            self._retire(worker)
            self.stats[fn.function_name].timeouts += 1
            reply = {"ok": False, "payload": json.dumps(_timeout_error(request_id, timeout_s))}
        elif reply.get("fatal") or reply.get("crashed"):
            self._retire(worker)
        else:
            worker.invocations += 1
            self._checkin(fn, worker)
        if not reply["ok"]:
            self.stats[fn.function_name].errors += 1
        written = _read_from(worker.spec.log_path, log_offset)
        self._ship_logs(worker, written)
        tail = written[-LOG_TAIL_BYTES:] if tail_logs else ""
        return InvokeResult(
            status=200,
            payload=reply["payload"].encode(),
            function_error=None if reply["ok"] else "Unhandled",
            log_tail=tail,
            headers={"X-Amz-Executed-Version": str(fn.version)},
        )

    def _ship_logs(self, worker: Worker, text: str) -> None:
        """What the invocation printed, into CloudWatch Logs (/aws/lambda/<function>), one
        stream per worker as Lambda has one per execution environment."""
        lines = [line for line in text.splitlines() if line.strip()]
        stream = f"{time.strftime('%Y/%m/%d')}/[{worker.spec.version}]{worker.pid}"
        put_log_lines(self.cloud.backend("logs"), worker.spec.log_group, stream, lines)

    @staticmethod
    def _exchange(worker: Worker, request: dict, timeout_s: float) -> dict | None:
        """Send one event; None means the timeout passed (the caller kills the worker)."""
        try:
            worker.connection.send(request)
            if not worker.connection.poll(timeout_s):
                return None
            return worker.connection.recv()
        except (EOFError, OSError):
            message = (f"RequestId: {request['request_id']} Error: Runtime exited without "
                       "providing a reason")
            return {"ok": False, "crashed": True,
                    "payload": json.dumps({"errorType": "Runtime.ExitError", "errorMessage": message})}

    def shutdown(self) -> None:
        with self._lock:
            workers = list(self._all)
            self._all.clear()
            self._idle.clear()
        for worker in workers:
            worker.kill()
        if self._zygote is not None:
            self._zygote.stop()


def _timeout_error(request_id: str, timeout_s: float) -> dict[str, str]:
    return {
        "errorType": "Sandbox.Timedout",
        "errorMessage": f"RequestId: {request_id} Error: Task timed out after {timeout_s:.2f} seconds",
    }


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _read_from(path: str, offset: int) -> str:
    try:
        with open(path, "rb") as log:
            log.seek(offset)
            return log.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _function_and_qualifier(request: Request) -> tuple[str, str | None]:
    raw = unquote(re.fullmatch(INVOKE_PATH, request.path).group("name"))
    qualifier = request.args.get("Qualifier")
    if raw.startswith("arn:"):
        return raw, qualifier
    name, _, inline_qualifier = raw.partition(":")
    return name, qualifier or inline_qualifier or None


def _handle_invoke(runtime: LambdaRuntime, request: Request) -> Response:
    from moto.awslambda.exceptions import UnknownFunctionException

    name, qualifier = _function_and_qualifier(request)
    try:
        fn = runtime.resolve(name, qualifier)
    except UnknownFunctionException as error:
        return aws_error(404, "ResourceNotFoundException", error.message)
    body = request.get_data(as_text=True) or "{}"
    try:
        json.loads(body)
    except ValueError:
        return aws_error(400, "InvalidRequestContentException",
                         "Could not parse request body into json: Unexpected character")
    invocation_type = request.headers.get("X-Amz-Invocation-Type", "RequestResponse")
    if invocation_type == "DryRun":
        return Response(status=204)
    if invocation_type == "Event":
        return _invoke_async(runtime, fn, body)
    try:
        result = runtime.invoke(fn, body, tail_logs=request.headers.get("X-Amz-Log-Type") == "Tail")
    except TooManyRequests:
        return _throttled()
    headers = dict(result.headers)
    if result.function_error:
        headers["X-Amz-Function-Error"] = result.function_error
    if result.log_tail:
        headers["X-Amz-Log-Result"] = base64.b64encode(result.log_tail.encode()).decode()
    return Response(result.payload, status=result.status, headers=headers,
                    content_type="application/json")


def _invoke_async(runtime: LambdaRuntime, fn: Any, body: str) -> Response:
    def run() -> None:
        try:
            runtime.invoke(fn, body)
        except TooManyRequests:
            pass  # AWS would retry from its internal queue; the throttle is counted in stats

    threading.Thread(target=run, daemon=True).start()
    return Response(status=202)


def _throttled() -> Response:
    response = aws_error(429, "TooManyRequestsException", "Rate Exceeded.")
    response.set_data(json.dumps({
        "__type": "TooManyRequestsException",
        "message": "Rate Exceeded.",
        "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
    }))
    return response


def install(cloud: LocalCloud) -> LambdaRuntime:
    runtime = LambdaRuntime(cloud)
    cloud.add_route(match_path("POST", INVOKE_PATH), lambda request: _handle_invoke(runtime, request))
    cloud.on_stop(runtime.shutdown)
    return runtime

"""Lambda Invoke on the local cloud runs the deployed code as AWS's python3.11 runtime runs it
(moto 5.2 alone would need Docker).

Each invocation takes an idle execution environment of its function version or starts one (a
cold start: the runtime's init process forks it, AWS's runtime interface client imports the
handler). Environments hold only what AWS's runtime holds (``runtime_env``), the extracted zip
as a read-only task root and the layers under a read-only /opt (``packages``); they reach the
service through their own Runtime API (``runtime_api``).

Limits, as AWS enforces them (Lambda quotas,
https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html):
- the function's timeout kills the environment: ``Sandbox.Timedout``;
- its MemorySize: an environment whose resident memory passes it is killed:
  ``Runtime.OutOfMemory``;
- 6 MB synchronous request (``RequestEntityTooLargeException``) and response
  (``Function.ResponseSizeTooLarge``) payloads;
- reserved concurrency per function, and the account's concurrency (``limits``) for the others:
  429 ``TooManyRequestsException`` past either.
Provisioned environments (``provisioned``) serve only the qualifier they were configured on.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from werkzeug.wrappers import Request, Response

from infra_scripts.localcloud.awslambda import packages
from infra_scripts.localcloud.awslambda.environments import Environment, Zygote, exit_description
from infra_scripts.localcloud.awslambda.runtime_api import Invocation
from infra_scripts.localcloud.awslambda.runtime_env import RUNTIME, RuntimeEnvironment, runtime_environment
from infra_scripts.localcloud.core.logs import RoleLogWriter
from infra_scripts.localcloud.core.server import LocalCloud, aws_error, match_path

INVOKE_PATH = r"/2015-03-31/functions/(?P<name>.+)/invocations/?"
INIT_TIMEOUT_S = 10.0  # Lambda's init phase limit for on-demand environments
LOG_TAIL_BYTES = 4096
WATCH_INTERVAL_S = 0.02  # how often a running invocation's memory and process are checked
# "Invocation payload (request and response)": 6 MB each for synchronous invocations.
MAX_REQUEST_BYTES = 6 * 1024 * 1024  # 6291456, the figure AWS's error message names
MAX_ASYNC_REQUEST_BYTES = 1024 * 1024  # asynchronous (Event) invocations: 1 MB since October 2025


@dataclass
class FunctionStats:
    invocations: int = 0
    cold_starts: int = 0
    throttles: int = 0
    errors: int = 0
    timeouts: int = 0
    out_of_memory: int = 0
    max_concurrency: int = 0


@dataclass
class InvokeResult:
    status: int
    payload: bytes
    function_error: str | None = None
    log_tail: str = ""
    headers: dict[str, str] = field(default_factory=dict)


class TooManyRequests(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LambdaRuntime:
    def __init__(self, cloud: LocalCloud) -> None:
        self.cloud = cloud
        self.root = cloud.work_dir / "lambda"
        self._lock = threading.Lock()
        self._idle: dict[tuple[str, str, str], list[Environment]] = defaultdict(list)
        self._all: list[Environment] = []
        self._in_flight: dict[str, int] = defaultdict(int)
        self._unreserved_in_flight = 0
        self.stats: dict[str, FunctionStats] = defaultdict(FunctionStats)
        self._zygote: Zygote | None = None
        self.environment: RuntimeEnvironment | None = None  # known once the zygote is up
        self.account_concurrency = int(cloud.settings.option("lambda", "account_concurrency", 1000))
        # Set by the provisioned-concurrency extension: (function, version) → its pool, or None.
        self.provisioned_pool: Any = lambda function_name, version: None

    def zygote(self) -> Zygote:
        with self._lock:
            if self._zygote is None:
                self.environment = runtime_environment()
                self._zygote = Zygote(self.environment)
            return self._zygote

    # -- function resolution -------------------------------------------------------------
    def resolve(self, name_or_arn: str, qualifier: str | None) -> Any:
        """moto's function object for the version an invocation runs (alias → version)."""
        return self.cloud.backend("lambda").get_function(name_or_arn, qualifier)

    def reserved_concurrency(self, function_name: str) -> int | None:
        latest = self.cloud.backend("lambda").get_function(function_name, None)
        value = latest.reserved_concurrency
        return None if value in (None, "") else int(value)

    def total_reserved(self) -> int:
        """Concurrency reserved by all functions (their $LATEST holds the setting)."""
        return sum(int(fn.reserved_concurrency or 0) for fn in self.cloud.backend("lambda").list_functions())

    # -- environments ---------------------------------------------------------------------
    def _environment_variables(self, fn: Any, environment: Environment, initialization: str) -> dict:
        task_root = str(packages.task_root(self.root, fn))
        assert self.environment is not None, "the zygote starts before any environment"
        return {
            **{str(k): str(v) for k, v in (fn.environment_vars or {}).items()},
            # What Lambda defines for every python3.11 function (reserved keys).
            "_HANDLER": fn.handler,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{RUNTIME}",
            "AWS_LAMBDA_FUNCTION_NAME": fn.function_name,
            "AWS_LAMBDA_FUNCTION_VERSION": str(fn.version),
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory_size),
            "AWS_LAMBDA_INITIALIZATION_TYPE": initialization,
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{fn.function_name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": environment.log_stream,
            "AWS_LAMBDA_RUNTIME_API": environment.api.address,
            "LAMBDA_TASK_ROOT": task_root,
            "LAMBDA_RUNTIME_DIR": str(self.environment.packages_dir),
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            # The local cloud's endpoint, then, as Lambda provides them, the execution role's
            # temporary credentials (AssumeRole per environment, like the role session Lambda
            # starts for each execution environment).
            **{k: v for k, v in self.cloud.client_env().items() if k.startswith("AWS_")},
            **self.cloud.role_env(fn.role, fn.function_name),
        }

    def start_environment(self, fn: Any, pool: str = "") -> tuple[Environment, bytes | None]:
        """A cold start. Returns the environment, or an init error payload (it is then gone)."""
        zygote = self.zygote()
        log_dir = self.root / "logs" / fn.function_name
        log_dir.mkdir(parents=True, exist_ok=True)
        stream_id = uuid.uuid4().hex
        environment = Environment(
            function_name=fn.function_name, version=str(fn.version), pool=pool,
            log_path=log_dir / f"{stream_id}.log", memory_mb=int(fn.memory_size),
            log_stream=f"{time.strftime('%Y/%m/%d')}/[{fn.version}]{stream_id}")
        opt = packages.opt_dir(self.root, fn, self.cloud.backend("lambda"))
        spec = {
            "handler": fn.handler,
            "task_root": str(packages.task_root(self.root, fn)),
            "opt_dir": str(opt) if opt else None,
            "environment": self._environment_variables(
                fn, environment, "provisioned-concurrency" if pool else "on-demand"),
            "log_path": str(environment.log_path),
        }
        with self._lock:
            self._all.append(environment)
        started = time.perf_counter()
        self._log(environment, f"INIT_START Runtime Version: {RUNTIME}.localcloud")
        environment.pid = zygote.fork(spec, environment.on_exit)
        error = self._await_init(environment)
        environment.init_ms = (time.perf_counter() - started) * 1000
        if error is not None:
            self._retire(environment)
        return environment, error

    def _await_init(self, environment: Environment) -> bytes | None:
        deadline = time.monotonic() + INIT_TIMEOUT_S
        while not environment.api.init.ready.wait(WATCH_INTERVAL_S):
            if environment.rss_mb() > environment.memory_mb:
                environment.oom_killed = True
                environment.kill()
                return _error_payload("Runtime.ExitError", "Runtime exited with error: signal: killed")
            if time.monotonic() > deadline:
                return _error_payload("Sandbox.Timedout",
                                      f"INIT phase timed out after {INIT_TIMEOUT_S:.2f} seconds")
        init = environment.api.init
        if init.error_body is not None:
            return init.error_body
        if environment.exit_status is not None:
            return _error_payload("Runtime.ExitError", "Runtime exited with error: "
                                  + exit_description(environment.exit_status))
        return None

    def add_idle(self, environment: Environment) -> None:
        with self._lock:
            self._idle[(environment.function_name, environment.version, environment.pool)].append(environment)

    def _take_idle(self, function_name: str, version: str, pool: str) -> Environment | None:
        with self._lock:
            idle = self._idle[(function_name, version, pool)]
            while idle:
                environment = idle.pop()
                if not environment.exited.is_set():
                    return environment
        return None

    def _retire(self, environment: Environment) -> None:
        environment.kill()
        with self._lock:
            if environment in self._all:
                self._all.remove(environment)

    def retire_pool(self, function_name: str, version: str, pool: str) -> int:
        with self._lock:
            leaving = self._idle.pop((function_name, version, pool), [])
        for environment in leaving:
            self._retire(environment)
        return len(leaving)

    def idle_count(self, function_name: str, version: str, pool: str = "") -> int:
        with self._lock:
            return len(self._idle[(function_name, version, pool)])

    # -- admission ------------------------------------------------------------------------
    def _admit(self, function_name: str) -> bool:
        """Count the invocation in; True when it draws on the account's unreserved pool."""
        reserved = self.reserved_concurrency(function_name)
        unreserved_pool = self.account_concurrency - self.total_reserved()
        with self._lock:
            stats = self.stats[function_name]
            if reserved is not None and self._in_flight[function_name] >= reserved:
                stats.throttles += 1
                raise TooManyRequests("ReservedFunctionConcurrentInvocationLimitExceeded")
            if reserved is None and self._unreserved_in_flight >= unreserved_pool:
                stats.throttles += 1
                raise TooManyRequests("ConcurrentInvocationLimitExceeded")
            self._in_flight[function_name] += 1
            self._unreserved_in_flight += reserved is None
            stats.invocations += 1
            stats.max_concurrency = max(stats.max_concurrency, self._in_flight[function_name])
        return reserved is None

    def _release(self, function_name: str, unreserved: bool) -> None:
        with self._lock:
            self._in_flight[function_name] -= 1
            self._unreserved_in_flight -= unreserved

    # -- invoke -----------------------------------------------------------------------------
    def invoke(self, fn: Any, event: str | bytes, tail_logs: bool = False,
               qualifier: str | None = None, client_context: str | None = None) -> InvokeResult:
        unreserved = self._admit(fn.function_name)
        try:
            environment = self._checkout(fn, qualifier)
            if environment is None:
                self.stats[fn.function_name].cold_starts += 1
                environment, init_error = self.start_environment(fn)
                if init_error is not None:
                    self.stats[fn.function_name].errors += 1
                    return self._result(fn, environment, init_error, "Unhandled", tail_logs, 0)
            payload = event.encode() if isinstance(event, str) else event
            return self._run_on(environment, fn, payload, tail_logs, qualifier, client_context)
        finally:
            self._release(fn.function_name, unreserved)

    def _checkout(self, fn: Any, qualifier: str | None) -> Environment | None:
        pool = self.provisioned_pool(fn.function_name, str(fn.version))
        if pool:
            found = self._take_idle(fn.function_name, str(fn.version), pool)
            if found is not None:
                return found
        return self._take_idle(fn.function_name, str(fn.version), "")  # spill-over: on demand

    def _run_on(self, environment: Environment, fn: Any, payload: bytes, tail_logs: bool,
                qualifier: str | None, client_context: str | None) -> InvokeResult:
        timeout_s = float(fn.timeout or 3)
        invocation = Invocation(request_id=str(uuid.uuid4()), payload=payload,
                                deadline_ms=int((time.time() + timeout_s) * 1000),
                                invoked_arn=_invoked_arn(fn, qualifier), client_context=client_context)
        log_offset = _file_size(environment.log_path)
        self._log(environment, f"START RequestId: {invocation.request_id} Version: {fn.version}")
        started = time.perf_counter()
        environment.api.deliver(invocation)
        failure = self._watch(environment, invocation, timeout_s)
        duration_ms = (time.perf_counter() - started) * 1000
        stats = self.stats[fn.function_name]
        self._log(environment, f"END RequestId: {invocation.request_id}")
        self._log(environment, _report_line(invocation.request_id, duration_ms, environment, failure))
        environment.invocations += 1
        if failure is None and invocation.error_type != "Function.ResponseSizeTooLarge":
            self.add_idle(environment)
        else:
            self._retire(environment)
        if failure is not None:
            stats.errors += 1
            return self._result(fn, environment, failure, "Unhandled", tail_logs, log_offset)
        if invocation.error_type is not None:
            stats.errors += 1
            return self._result(fn, environment, invocation.body, "Unhandled", tail_logs, log_offset)
        return self._result(fn, environment, invocation.body, None, tail_logs, log_offset)

    def _watch(self, environment: Environment, invocation: Invocation, timeout_s: float) -> bytes | None:
        """Wait for the runtime's answer; an error payload when Lambda ends the invocation."""
        deadline = time.monotonic() + timeout_s
        request_id = invocation.request_id
        while not invocation.done.wait(WATCH_INTERVAL_S):
            if environment.rss_mb() > environment.memory_mb:
                # Lambda's sandbox is killed at its memory size; Invoke reports the exit, the
                # REPORT line says Runtime.OutOfMemory.
                environment.oom_killed = True
                environment.kill()
                self.stats[environment.function_name].out_of_memory += 1
                return _error_payload("Runtime.ExitError", f"RequestId: {request_id} Error: Runtime "
                                      "exited with error: signal: killed")
            if environment.exited.is_set():
                return _error_payload("Runtime.ExitError", f"RequestId: {request_id} Error: Runtime "
                                      f"exited with error: {exit_description(environment.exit_status or 0)}")
            if time.monotonic() > deadline:
                self.stats[environment.function_name].timeouts += 1
                self._log(environment, f"{_utc_stamp()} {request_id} Task timed out after "
                          f"{timeout_s:.2f} seconds")
                return _error_payload("Sandbox.Timedout", f"RequestId: {request_id} Error: Task timed "
                                      f"out after {timeout_s:.2f} seconds")
        return None

    def _result(self, fn: Any, environment: Environment, payload: bytes, function_error: str | None,
                tail_logs: bool, log_offset: int) -> InvokeResult:
        written = _read_from(environment.log_path, log_offset)
        self._ship_logs(fn, environment, written)
        return InvokeResult(status=200, payload=payload, function_error=function_error,
                            log_tail=written[-LOG_TAIL_BYTES:] if tail_logs else "",
                            headers={"X-Amz-Executed-Version": str(fn.version)})

    # -- logs -----------------------------------------------------------------------------------
    @staticmethod
    def _log(environment: Environment, line: str) -> None:
        """A platform line (INIT_START, START, END, REPORT): Lambda writes them, not the runtime."""
        with open(environment.log_path, "a", encoding="utf-8") as log:
            log.write(line + "\n")

    def _ship_logs(self, fn: Any, environment: Environment, text: str) -> None:
        """Into CloudWatch Logs (/aws/lambda/<function>), one stream per environment, written as
        the execution role like Lambda does. The runtime client ends the lines of one multi-line
        record with \\r, so only \\n separates events."""
        lines = [line for line in text.split("\n") if line.strip()]
        if environment.log_writer is None:
            client = self.cloud.role_client(fn.role, "logs", environment.function_name)
            environment.log_writer = RoleLogWriter(
                client, f"/aws/lambda/{environment.function_name}", environment.log_stream)
        environment.log_writer.write(lines)

    def shutdown(self) -> None:
        with self._lock:
            environments = list(self._all)
            self._all.clear()
            self._idle.clear()
        for environment in environments:
            environment.kill()
        if self._zygote is not None:
            self._zygote.stop()


def _invoked_arn(fn: Any, qualifier: str | None) -> str:
    """The ARN the caller invoked (the context's ``invoked_function_arn``): qualified by what
    the caller named, alias or version, not by the version it resolved to."""
    unqualified = f"{fn.function_arn.split(':function:')[0]}:function:{fn.function_name}"
    return f"{unqualified}:{qualifier}" if qualifier else unqualified


def _error_payload(error_type: str, message: str) -> bytes:
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()


def _report_line(request_id: str, duration_ms: float, environment: Environment,
                 failure: bytes | None) -> str:
    billed = max(1, int(duration_ms + 0.999))
    line = (f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\tBilled Duration: "
            f"{billed} ms\tMemory Size: {environment.memory_mb} MB\tMax Memory Used: "
            f"{min(environment.memory_mb, int(environment.rss_mb()))} MB")
    if environment.invocations == 0 and environment.init_ms:
        line += f"\tInit Duration: {environment.init_ms:.2f} ms"
    if failure is not None:  # the platform names what ended the invocation, as AWS's REPORT does
        error_type = json.loads(failure).get("errorType")
        if environment.oom_killed:
            error_type = "Runtime.OutOfMemory"
        line += f"\tStatus: {'timeout' if error_type == 'Sandbox.Timedout' else 'error'}"
        line += f"\tError Type: {error_type}"
    return line


def _utc_stamp() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


def _file_size(path: Any) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _read_from(path: Any, offset: int) -> str:
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
        parts = raw.split(":")
        if len(parts) == 8:  # arn:aws:lambda:region:account:function:name:qualifier
            return ":".join(parts[:7]), qualifier or parts[7]
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
    invocation_type = request.headers.get("X-Amz-Invocation-Type", "RequestResponse")
    body = request.get_data() or b"{}"
    limit = MAX_ASYNC_REQUEST_BYTES if invocation_type == "Event" else MAX_REQUEST_BYTES
    if len(body) > limit:
        return aws_error(413, "RequestEntityTooLargeException",
                         f"Request must be smaller than {limit} bytes for the InvokeFunction operation")
    try:
        json.loads(body)
    except ValueError:
        return aws_error(400, "InvalidRequestContentException",
                         "Could not parse request body into json: Unexpected character")
    if invocation_type == "DryRun":
        return Response(status=204)
    if invocation_type == "Event":
        return _invoke_async(runtime, fn, body, qualifier)
    client_context = request.headers.get("X-Amz-Client-Context")
    try:
        result = runtime.invoke(fn, body, tail_logs=request.headers.get("X-Amz-Log-Type") == "Tail",
                                qualifier=qualifier, client_context=client_context)
    except TooManyRequests as throttled:
        return _throttled(throttled.reason)
    headers = dict(result.headers)
    if result.function_error:
        headers["X-Amz-Function-Error"] = result.function_error
    if result.log_tail:
        headers["X-Amz-Log-Result"] = base64.b64encode(result.log_tail.encode()).decode()
    return Response(result.payload, status=result.status, headers=headers,
                    content_type="application/json")


def _invoke_async(runtime: LambdaRuntime, fn: Any, body: bytes, qualifier: str | None) -> Response:
    def run() -> None:
        try:
            runtime.invoke(fn, body, qualifier=qualifier)
        except TooManyRequests:
            pass  # AWS would retry from its internal queue; the throttle is counted in stats

    threading.Thread(target=run, daemon=True).start()
    return Response(status=202)


def _throttled(reason: str) -> Response:
    response = aws_error(429, "TooManyRequestsException", "Rate Exceeded.")
    response.set_data(json.dumps({"__type": "TooManyRequestsException", "message": "Rate Exceeded.",
                                  "Reason": reason}))
    return response


def install(cloud: LocalCloud) -> LambdaRuntime:
    runtime = LambdaRuntime(cloud)
    cloud.add_route(match_path("POST", INVOKE_PATH), lambda request: _handle_invoke(runtime, request))
    cloud.on_stop(runtime.shutdown)
    # Boot the runtime's init process now, as Lambda's is up before any function's init.
    threading.Thread(target=runtime.zygote, name="lambda-runtime-boot", daemon=True).start()
    return runtime

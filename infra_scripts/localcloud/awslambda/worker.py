"""One warm Lambda execution environment: a process that imports the handler once and serves
invocations one at a time over a pipe, like the Lambda runtime API loop.

This module runs inside the worker process; it must stay import-light (stdlib only) because the
forkserver preloads it.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any


@dataclass(frozen=True)
class WorkerSpec:
    function_name: str
    function_arn: str
    version: str
    handler: str
    code_dir: str
    environment: dict[str, str]
    memory_mb: int
    log_path: str
    log_group: str


class LambdaContext:
    """The subset of Lambda's context object handlers use."""

    def __init__(self, spec: WorkerSpec, request_id: str, deadline_ms: int) -> None:
        self.function_name = spec.function_name
        self.function_version = spec.version
        self.invoked_function_arn = spec.function_arn
        self.memory_limit_in_mb = spec.memory_mb
        self.aws_request_id = request_id
        self.log_group_name = spec.log_group
        self.log_stream_name = f"localcloud/{os.getpid()}"
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


def _error(error_type: str, message: str, stack: list[str] | None = None) -> dict[str, Any]:
    return {"errorMessage": message, "errorType": error_type, "stackTrace": stack or []}


def _load_handler(spec: WorkerSpec) -> tuple[Any, dict[str, Any] | None]:
    module_name, _, function_name = spec.handler.rpartition(".")
    if not module_name:
        return None, _error("Runtime.MalformedHandlerName", f"Bad handler '{spec.handler}'")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # Lambda reports any import-time failure this way
        return None, _error(
            "Runtime.ImportModuleError",
            f"Unable to import module '{module_name}': {error}",
            traceback.format_exception(error),
        )
    handler = getattr(module, function_name, None)
    if not callable(handler):
        return None, _error(
            "Runtime.HandlerNotFound", f"Handler '{function_name}' missing on module '{module_name}'"
        )
    return handler, None


def _enter_sandbox(spec: WorkerSpec) -> None:
    os.environ.clear()
    os.environ.update(spec.environment)
    # The deployment package shadows anything with the same name in the runtime.
    sys.path.insert(0, spec.code_dir)
    os.chdir(spec.code_dir)
    log = os.open(spec.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115


def _serialise(result: Any) -> dict[str, Any]:
    try:
        return {"ok": True, "payload": json.dumps(result)}
    except (TypeError, ValueError) as error:
        return {"ok": False, "payload": json.dumps(_error("Runtime.MarshalError", str(error)))}


def _invoke(handler: Any, spec: WorkerSpec, request: dict[str, Any]) -> dict[str, Any]:
    context = LambdaContext(spec, request["request_id"], request["deadline_ms"])
    print(f"START RequestId: {context.aws_request_id} Version: {spec.version}", flush=True)
    started = time.perf_counter()
    try:
        result = handler(json.loads(request["event"]), context)
        reply = _serialise(result)
    except Exception as error:
        # Like Lambda's runtime: the trace starts in the handler, not in this loop.
        stack = traceback.format_exception(type(error), error, error.__traceback__.tb_next)
        print("".join(stack), file=sys.stderr, flush=True)
        reply = {"ok": False, "payload": json.dumps(_error(type(error).__name__, str(error), stack))}
    elapsed_ms = (time.perf_counter() - started) * 1000
    print(f"END RequestId: {context.aws_request_id}", flush=True)
    print(f"REPORT RequestId: {context.aws_request_id}\tDuration: {elapsed_ms:.2f} ms", flush=True)
    return reply


def worker_main(connection: Connection, spec: WorkerSpec) -> None:
    """Entry point in the worker process: init once, then serve until the pipe closes."""
    _enter_sandbox(spec)
    init_started = time.perf_counter()
    handler, init_error = _load_handler(spec)
    connection.send({"ready": True, "init_ms": (time.perf_counter() - init_started) * 1000})
    while True:
        try:
            request = connection.recv()
        except (EOFError, OSError):
            return
        if init_error is not None:
            connection.send({"ok": False, "payload": json.dumps(init_error), "fatal": True})
            return
        connection.send(_invoke(handler, spec, request))

"""Provisioned concurrency on the local cloud (moto 5.2 has no such API).

``PutProvisionedConcurrencyConfig`` on a version or alias pre-starts that many warm workers for
the version it resolves to, in the background (Status IN_PROGRESS → READY, as on AWS), so
invocations that land on them skip the cold start. Reserved concurrency, where set, must leave
room for it, as AWS requires.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from werkzeug.wrappers import Request, Response

from infra_scripts.localcloud.awslambda.runtime import LambdaRuntime
from infra_scripts.localcloud.core.server import LocalCloud, aws_error, json_response

PATH_PREFIX = "/2019-09-30/functions/"
PATH_SUFFIX = "/provisioned-concurrency"
PREWARM_THREADS = 8


@dataclass
class ProvisionedConfig:
    function_arn: str
    function_name: str
    version: str
    requested: int
    allocated: int = 0
    status: str = "IN_PROGRESS"
    status_reason: str = ""
    last_modified: str = ""

    def describe(self) -> dict[str, Any]:
        description = {
            "RequestedProvisionedConcurrentExecutions": self.requested,
            "AvailableProvisionedConcurrentExecutions": self.allocated,
            "AllocatedProvisionedConcurrentExecutions": self.allocated,
            "Status": self.status,
            "LastModified": self.last_modified,
        }
        if self.status_reason:
            description["StatusReason"] = self.status_reason
        return description


class ProvisionedConcurrency:
    def __init__(self, runtime: LambdaRuntime) -> None:
        self.runtime = runtime
        self.configs: dict[tuple[str, str], ProvisionedConfig] = {}
        self._lock = threading.Lock()

    def put(self, function_name: str, qualifier: str, count: int) -> ProvisionedConfig:
        fn = self.runtime.resolve(function_name, qualifier)
        self._check_reserved(fn.function_name, qualifier, count)
        self.delete(fn.function_name, qualifier)
        config = ProvisionedConfig(
            function_arn=self._qualified_arn(fn.function_name, qualifier),
            function_name=fn.function_name,
            version=str(fn.version),
            requested=count,
            last_modified=_now(),
        )
        with self._lock:
            self.configs[(fn.function_name, qualifier)] = config
        threading.Thread(target=self._prewarm, args=(fn, config), daemon=True).start()
        return config

    def _qualified_arn(self, function_name: str, qualifier: str) -> str:
        cloud = self.runtime.cloud
        return f"arn:aws:lambda:{cloud.region}:{cloud.account_id}:function:{function_name}:{qualifier}"

    def _check_reserved(self, function_name: str, qualifier: str, count: int) -> None:
        reserved = self.runtime.reserved_concurrency(function_name)
        others = sum(c.requested for (name, q), c in self.configs.items()
                     if name == function_name and q != qualifier)
        if reserved is not None and others + count > reserved:
            raise ValueError(
                f"Requested Provisioned Concurrency ({count}) should not be greater than the "
                f"reservedConcurrentExecution for function ({reserved - others})"
            )

    def _prewarm(self, fn: Any, config: ProvisionedConfig) -> None:
        def start_one(_: int) -> None:
            worker = self.runtime.start_worker(fn, provisioned=True)
            self.runtime.add_idle(fn, worker)
            with self._lock:
                config.allocated += 1

        try:
            with ThreadPoolExecutor(PREWARM_THREADS) as pool:
                list(pool.map(start_one, range(config.requested)))
            config.status = "READY"
        except Exception as error:  # surfaced through Get*, as AWS does
            config.status, config.status_reason = "FAILED", str(error)
        config.last_modified = _now()

    def get(self, function_name: str, qualifier: str) -> ProvisionedConfig | None:
        fn = self.runtime.resolve(function_name, qualifier)
        return self.configs.get((fn.function_name, qualifier))

    def delete(self, function_name: str, qualifier: str) -> bool:
        with self._lock:
            config = self.configs.pop((function_name, qualifier), None)
        if config is not None:
            self.runtime.retire_provisioned(function_name, config.version)
        return config is not None

    def list(self, function_name: str) -> list[ProvisionedConfig]:
        return [c for (name, _), c in self.configs.items() if name == function_name]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def _is_provisioned_path(request: Request) -> bool:
    return request.path.startswith(PATH_PREFIX) and request.path.rstrip("/").endswith(PATH_SUFFIX)


def _handle(service: ProvisionedConcurrency, request: Request) -> Response:
    from moto.awslambda.exceptions import UnknownFunctionException

    name = unquote(request.path[len(PATH_PREFIX):].rstrip("/")[: -len(PATH_SUFFIX)])
    qualifier = request.args.get("Qualifier")
    try:
        if request.method == "GET" and request.args.get("List"):
            configs = [{"FunctionArn": c.function_arn, **c.describe()} for c in service.list(name)]
            return json_response(200, {"ProvisionedConcurrencyConfigs": configs})
        if not qualifier or qualifier == "$LATEST":
            return aws_error(400, "InvalidParameterValueException",
                             "Provisioned Concurrency Configs cannot be applied to unpublished "
                             "function versions.")
        return _dispatch(service, request, name, qualifier)
    except UnknownFunctionException as error:
        return aws_error(404, "ResourceNotFoundException", error.message)
    except ValueError as error:
        return aws_error(400, "InvalidParameterValueException", str(error))


def _dispatch(service: ProvisionedConcurrency, request: Request, name: str,
              qualifier: str) -> Response:
    if request.method == "PUT":
        count = int((request.get_json(force=True) or {}).get("ProvisionedConcurrentExecutions", 0))
        if count < 1:
            raise ValueError("ProvisionedConcurrentExecutions must be at least 1")
        return json_response(202, service.put(name, qualifier, count).describe())
    if request.method == "GET":
        config = service.get(name, qualifier)
        if config is None:
            return aws_error(404, "ProvisionedConcurrencyConfigNotFoundException",
                             "No Provisioned Concurrency Config found for this function")
        return json_response(200, config.describe())
    if request.method == "DELETE":
        function_name = service.runtime.resolve(name, qualifier).function_name
        if not service.delete(function_name, qualifier):
            return aws_error(404, "ProvisionedConcurrencyConfigNotFoundException",
                             "No Provisioned Concurrency Config found for this function")
        return Response(status=204)
    return aws_error(405, "MethodNotAllowed", request.method)


def install(cloud: LocalCloud) -> ProvisionedConcurrency:
    runtime = cloud.extensions["awslambda.runtime"]
    service = ProvisionedConcurrency(runtime)
    cloud.add_route(_is_provisioned_path, lambda request: _handle(service, request))
    return service

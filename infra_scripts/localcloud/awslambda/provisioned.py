"""Provisioned concurrency on the local cloud (moto 5.2 has no such API), bound to its qualifier.

``PutProvisionedConcurrencyConfig`` on an alias or version pre-starts that many environments of
the version it resolves to, in the background (IN_PROGRESS → READY), initialised with
``AWS_LAMBDA_INITIALIZATION_TYPE=provisioned-concurrency``. They serve invocations of that
version through the configured alias or its version number; ``$LATEST`` and other versions never
use them, and invocations past the provisioned count spill over to on-demand environments (AWS
behaviour recorded against the service: an alias's provisioned environments also serve its
version invoked by number; ``$LATEST`` is on demand).

When the alias moves to another version (UpdateAlias), the config goes back to IN_PROGRESS,
environments of the new version are provisioned, and once READY the old version's provisioned
environments retire: the old version then runs on demand, as on AWS. Reserved concurrency,
where set, must leave room for the provisioned count, as AWS requires.
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
    qualifier: str
    version: str
    requested: int
    allocated: int = 0
    status: str = "IN_PROGRESS"
    status_reason: str = ""
    last_modified: str = ""

    @property
    def pool(self) -> str:
        return f"provisioned:{self.qualifier}"

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
        runtime.provisioned_pool = self.pool_for

    def pool_for(self, function_name: str, version: str) -> str | None:
        """The provisioned pool serving ``version`` of the function, if a config provisions it."""
        with self._lock:
            for config in self.configs.values():
                if config.function_name == function_name and config.version == version:
                    return config.pool
        return None

    def put(self, function_name: str, qualifier: str, count: int) -> ProvisionedConfig:
        fn = self.runtime.resolve(function_name, qualifier)
        self._check_reserved(fn.function_name, qualifier, count)
        self._check_conflicts(fn.function_name, qualifier, str(fn.version))
        self.delete(fn.function_name, qualifier)
        config = ProvisionedConfig(
            function_arn=self._qualified_arn(fn.function_name, qualifier),
            function_name=fn.function_name, qualifier=qualifier, version=str(fn.version),
            requested=count, last_modified=_now(),
        )
        with self._lock:
            self.configs[(fn.function_name, qualifier)] = config
        threading.Thread(target=self._prewarm, args=(fn, config, None), daemon=True).start()
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

    def _check_conflicts(self, function_name: str, qualifier: str, version: str) -> None:
        """One config per version: AWS refuses a second through an alias or the version."""
        for (name, other), config in self.configs.items():
            if name != function_name or other == qualifier or config.version != version:
                continue
            if qualifier == version:
                raise ConflictError("Version is pointed by a Provisioned Concurrency alias")
            raise ConflictError("Alias can't be used for Provisioned Concurrency configuration on an "
                                "already Provisioned version")

    def _prewarm(self, fn: Any, config: ProvisionedConfig, replaced_version: str | None) -> None:
        def start_one(_: int) -> None:
            environment, error = self.runtime.start_environment(fn, pool=config.pool)
            if error is not None:
                raise RuntimeError(error.decode(errors="replace"))
            self.runtime.add_idle(environment)
            with self._lock:
                config.allocated += 1

        try:
            with ThreadPoolExecutor(PREWARM_THREADS) as pool:
                list(pool.map(start_one, range(config.requested)))
            config.status = "READY"
        except Exception as error:  # surfaced through Get*, as AWS does
            config.status, config.status_reason = "FAILED", str(error)
        config.last_modified = _now()
        if replaced_version is not None:
            self.runtime.retire_pool(config.function_name, replaced_version, config.pool)

    def alias_moved(self, function_name: str, alias: str) -> None:
        """UpdateAlias: provision the alias's new version, then retire the old one's pool."""
        with self._lock:
            config = self.configs.get((function_name, alias))
        if config is None:
            return
        fn = self.runtime.resolve(function_name, alias)
        if str(fn.version) == config.version:
            return
        old_version = config.version
        config.version, config.allocated, config.status = str(fn.version), 0, "IN_PROGRESS"
        config.last_modified = _now()
        threading.Thread(target=self._prewarm, args=(fn, config, old_version), daemon=True).start()

    def get(self, function_name: str, qualifier: str) -> ProvisionedConfig | None:
        fn = self.runtime.resolve(function_name, qualifier)
        return self.configs.get((fn.function_name, qualifier))

    def delete(self, function_name: str, qualifier: str) -> bool:
        with self._lock:
            config = self.configs.pop((function_name, qualifier), None)
        if config is not None:
            self.runtime.retire_pool(function_name, config.version, config.pool)
        return config is not None

    def list(self, function_name: str) -> list[ProvisionedConfig]:
        return [c for (name, _), c in self.configs.items() if name == function_name]


class ConflictError(Exception):
    pass


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
    except ConflictError as error:
        return aws_error(409, "ResourceConflictException", str(error))
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


def _wrap_update_alias(service: ProvisionedConcurrency, original: Any) -> Any:
    def update_alias(backend: Any, name: str, function_name: str, *args: Any, **kwargs: Any) -> Any:
        alias = original(backend, name, function_name, *args, **kwargs)
        service.alias_moved(function_name.rsplit(":", 1)[-1] if function_name.startswith("arn:")
                            else function_name, name)
        return alias

    return update_alias


def install(cloud: LocalCloud) -> ProvisionedConcurrency:
    from moto.awslambda.models import LambdaBackend

    runtime = cloud.extensions["awslambda.runtime"]
    service = ProvisionedConcurrency(runtime)
    cloud.add_route(_is_provisioned_path, lambda request: _handle(service, request))
    original = LambdaBackend.update_alias
    cloud.patch(LambdaBackend, "update_alias", _wrap_update_alias(service, original))
    return service

"""Lambda's control-plane quotas, refused as AWS refuses them (Lambda quotas,
https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html):

- environment variables: 4 KB in all, measured as the compact JSON of the map, and none of the
  keys Lambda reserves ("Defined runtime environment variables",
  https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html), at CreateFunction
  and UpdateFunctionConfiguration;
- deployment package: 50 MB zipped for a direct upload, 250 MB unzipped with its layers, at most
  5 layers, at CreateFunction, UpdateFunctionCode and UpdateFunctionConfiguration;
- account concurrency (option ``lambda.account_concurrency``, default: the account profile's,
  1000 or a new account's 10): reserving leaves at least 100 unreserved, or the whole limit when
  it is below 100 (new accounts are refused with "… below its minimum value of [10]"), and
  GetAccountSettings reports the limits (moto lacks the API).
The runtime (``runtime``) enforces the invoke-time limits.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from werkzeug.wrappers import Request, Response

from infra_scripts.localcloud.awslambda import packages
from infra_scripts.localcloud.core import accounts
from infra_scripts.localcloud.core.accounts import UNRESERVED_MINIMUM
from infra_scripts.localcloud.core.server import LocalCloud, json_response, match_path

MAX_ENVIRONMENT_BYTES = 4 * 1024
MAX_ZIPPED_BYTES = 50 * 1024 * 1024  # 52428800
MAX_UNZIPPED_BYTES = 250 * 1024 * 1024  # 262144000, code and layers together
MAX_LAYERS = 5
TOTAL_CODE_STORAGE = 75 * 1024 ** 3
RESERVED_KEYS = frozenset({
    "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR",
})
ACCOUNT_SETTINGS_PATH = r"/2016-08-19/account-settings/?"


def _invalid(message: str) -> Exception:
    from moto.awslambda.exceptions import InvalidParameterValueException

    return InvalidParameterValueException(message)


class RequestEntityTooLarge(Exception):
    pass


def check_environment(variables: dict[str, str] | None) -> None:
    reserved = [key for key in variables or {} if key in RESERVED_KEYS]
    if reserved:
        raise _invalid("Lambda was unable to configure your environment variables because the "
                       "environment variables you have provided contains reserved keys that are "
                       f"currently not supported for modification. Reserved keys used in this "
                       f"request: {', '.join(reserved)}")
    measured = json.dumps(variables or {}, separators=(",", ":"), ensure_ascii=False)
    if len(measured.encode()) > MAX_ENVIRONMENT_BYTES:
        raise _invalid("Lambda was unable to configure your environment variables because the "
                       "environment variables you have provided exceeded the 4KB limit. "
                       f"String measured: {measured}")


def check_zipped(code: dict[str, Any]) -> None:
    if "ZipFile" in code and len(base64.b64decode(code["ZipFile"])) > MAX_ZIPPED_BYTES:
        raise RequestEntityTooLarge(f"Zipped size must be smaller than {MAX_ZIPPED_BYTES} bytes")


def check_unzipped(fn: Any, backend: Any) -> None:
    if len(fn.layers or []) > MAX_LAYERS:
        raise _invalid(f"Cannot reference more than {MAX_LAYERS} layers.")
    total = packages.unzipped_size(fn.code_bytes) if fn.code_bytes else 0
    total += sum(packages.unzipped_size(archive) for archive in packages.layer_archives(fn, backend)
                 if archive)
    if total > MAX_UNZIPPED_BYTES:
        raise _invalid(f"Unzipped size must be smaller than {MAX_UNZIPPED_BYTES} bytes")


def _wrap_create(original: Any) -> Any:
    def create_function(backend: Any, spec: dict[str, Any]) -> Any:
        check_environment((spec.get("Environment") or {}).get("Variables"))
        check_zipped(spec.get("Code") or {})
        if len(spec.get("Layers") or []) > MAX_LAYERS:
            raise _invalid(f"Cannot reference more than {MAX_LAYERS} layers.")
        fn = original(backend, spec)
        try:
            check_unzipped(fn, backend)
        except Exception:
            backend.delete_function(fn.function_name)  # refused: nothing is left behind
            raise
        return fn

    return create_function


def _wrap_update_configuration(original: Any) -> Any:
    def update_function_configuration(backend: Any, function_name: str, qualifier: str,
                                      body: dict[str, Any]) -> Any:
        if "Environment" in body:
            check_environment((body.get("Environment") or {}).get("Variables"))
        if len(body.get("Layers") or []) > MAX_LAYERS:
            raise _invalid(f"Cannot reference more than {MAX_LAYERS} layers.")
        return original(backend, function_name, qualifier, body)

    return update_function_configuration


def _wrap_update_code(original: Any) -> Any:
    def update_function_code(backend: Any, function_name: str, qualifier: str,
                             body: dict[str, Any]) -> Any:
        check_zipped(body)
        return original(backend, function_name, qualifier, body)

    return update_function_code


def account_settings(cloud: LocalCloud, account_concurrency: int) -> dict[str, Any]:
    backend = cloud.backend("lambda")
    functions = list(backend.list_functions())
    reserved = sum(int(fn.reserved_concurrency or 0) for fn in functions)
    code_size = sum(int(fn.code_size or 0) for fn in functions)
    return {
        "AccountLimit": {
            "TotalCodeSize": TOTAL_CODE_STORAGE, "CodeSizeUnzipped": MAX_UNZIPPED_BYTES,
            "CodeSizeZipped": MAX_ZIPPED_BYTES, "ConcurrentExecutions": account_concurrency,
            "UnreservedConcurrentExecutions": account_concurrency - reserved,
        },
        "AccountUsage": {"TotalCodeSize": code_size, "FunctionCount": len(functions)},
    }


def _too_large_route(original: Any) -> Any:
    """moto answers a raised exception with a 500; the zipped-size refusal is AWS's 413."""
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return original(*args, **kwargs)
        except RequestEntityTooLarge as error:
            body = json.dumps({"Type": "User", "message": str(error)})
            return 413, {"x-amzn-ErrorType": "RequestEntityTooLargeException"}, body

    return guarded


def _wrap_put_concurrency(original: Any, account_concurrency: int) -> Any:
    """moto's own check keeps 100 unreserved whatever the limit; Lambda keeps min(100, limit)."""
    minimum = min(UNRESERVED_MINIMUM, account_concurrency)

    def put_function_concurrency(backend: Any, function_name: str, reserved_concurrency: str) -> Any:
        others = sum(int(fn.reserved_concurrency or 0) for fn in backend.list_functions()
                     if fn.function_name != function_name)
        if account_concurrency - others - int(reserved_concurrency) < minimum:
            raise _invalid("Specified ReservedConcurrentExecutions for function decreases "
                           "account's UnreservedConcurrentExecution below its minimum value "
                           f"of [{minimum}].")
        return original(backend, function_name, reserved_concurrency)

    return put_function_concurrency


def install(cloud: LocalCloud) -> None:
    from moto.awslambda.models import LambdaBackend
    from moto.awslambda.responses import LambdaResponse

    profile = accounts.profile(str(cloud.settings.option("account", "profile", "default")))
    account_concurrency = int(cloud.settings.option("lambda", "account_concurrency",
                                                    profile.lambda_concurrency))
    cloud.patch(LambdaBackend, "put_function_concurrency",
                _wrap_put_concurrency(LambdaBackend.put_function_concurrency, account_concurrency))
    for name, wrap in (("create_function", _wrap_create),
                       ("update_function_configuration", _wrap_update_configuration),
                       ("update_function_code", _wrap_update_code)):
        cloud.patch(LambdaBackend, name, wrap(getattr(LambdaBackend, name)))
    for name in ("create_function", "update_function_code"):
        cloud.patch(LambdaResponse, name, _too_large_route(getattr(LambdaResponse, name)))

    def settings(_: Request) -> Response:
        return json_response(200, account_settings(cloud, account_concurrency))

    cloud.add_route(match_path("GET", ACCOUNT_SETTINGS_PATH), settings)

"""The local cloud leans on a few moto internals; if a moto upgrade moves them, fail here with a
message that says which, instead of deep inside an end-to-end run."""

from __future__ import annotations

import importlib.metadata
import inspect

import pytest

PINNED_MOTO_MINOR = "5.2"


def test_moto_is_the_pinned_minor_version():
    version = importlib.metadata.version("moto")
    assert version.startswith(PINNED_MOTO_MINOR + "."), (
        f"moto {version} installed; the local cloud extensions were written against "
        f"{PINNED_MOTO_MINOR}.x — re-check every test_moto_seams_* file before moving the pin"
    )


def test_lambda_backend_exposes_what_the_runtime_reads():
    import boto3
    from moto import mock_aws
    from moto.awslambda.models import LambdaBackend
    from moto.backends import get_backend
    from moto.core import DEFAULT_ACCOUNT_ID

    from tests.localcloud.lambda_helpers import zip_files
    from tests.roles import trust

    assert "qualifier" in inspect.signature(LambdaBackend.get_function).parameters, (
        "LambdaBackend.get_function(name_or_arn, qualifier) changed: lambda_runtime.resolve needs it"
    )
    with mock_aws():
        role = boto3.client("iam").create_role(
            RoleName="r", AssumeRolePolicyDocument=trust("lambda.amazonaws.com"))["Role"]["Arn"]
        boto3.client("lambda").create_function(
            FunctionName="f", Runtime="python3.11", Role=role, Handler="app.handler",
            Code={"ZipFile": zip_files({"app.py": "def handler(e, c): pass"})})
        fn = get_backend("lambda")[DEFAULT_ACCOUNT_ID]["us-east-1"].get_function("f", None)
        for attribute in ("code_bytes", "code_sha_256", "handler", "timeout", "environment_vars",
                          "memory_size", "reserved_concurrency", "version", "function_arn"):
            assert hasattr(fn, attribute), (
                f"moto's LambdaFunction has no .{attribute} any more; lambda_runtime reads it"
            )
        assert fn.code_bytes.startswith(b"PK"), "LambdaFunction.code_bytes is no longer the zip"


@pytest.mark.parametrize(("method", "parameters"), [
    ("create_function", ["self", "spec"]),
    ("update_function_configuration", ["self", "function_name", "qualifier", "body"]),
    ("update_function_code", ["self", "function_name", "qualifier", "body"]),
    ("update_alias", ["self", "name", "function_name", "function_version", "description",
                      "routing_config"]),
    ("layers_versions_by_arn", ["self", "layer_version_arn"]),
    ("list_functions", ["self"]),
])
def test_lambda_backend_methods_the_limits_and_provisioned_extensions_wrap(method, parameters):
    from moto.awslambda.models import LambdaBackend

    found = list(inspect.signature(getattr(LambdaBackend, method)).parameters)
    assert found[:len(parameters)] == parameters, (
        f"LambdaBackend.{method}{found} moved: awslambda/limits.py or provisioned.py wraps it")


def test_put_function_concurrency_keeps_the_signature_limits_wraps():
    from moto.awslambda.models import LambdaBackend

    found = list(inspect.signature(LambdaBackend.put_function_concurrency).parameters)
    assert found == ["self", "function_name", "reserved_concurrency"], (
        "LambdaBackend.put_function_concurrency moved: awslambda/limits.py checks the unreserved "
        "minimum around it")


def test_layer_versions_keep_their_zip_bytes():
    from moto.awslambda.models import LayerVersion

    assert "code_bytes" in inspect.getsource(LayerVersion.__init__), (
        "moto's LayerVersion no longer keeps .code_bytes: awslambda/packages.py extracts them")


def test_unknown_function_exception_has_a_message():
    from moto.awslambda.exceptions import UnknownFunctionException

    assert UnknownFunctionException("arn:x").message, "UnknownFunctionException lost .message"


def test_invoke_url_shape_is_what_the_runtime_routes():
    from moto.awslambda.urls import url_paths

    assert any("/functions/(?P<function_name>" in path and path.endswith("/invocations/?$")
               for path in url_paths), "moto's Lambda invoke URL moved; update INVOKE_PATH"


def test_state_machine_execution_switch_and_port_setting_exist():
    from moto import settings
    from moto.moto_api._internal.models import moto_api_backend

    assert callable(moto_api_backend.set_config), "moto_api_backend.set_config is gone"
    assert callable(settings.moto_server_port), (
        "moto.settings.moto_server_port is gone: the Step Functions interpreter finds us by it"
    )


@pytest.mark.parametrize("module", ["moto.stepfunctions.parser.asl.utils.boto_client"])
def test_step_functions_interpreter_calls_back_through_moto_server_port(module):
    source = inspect.getsource(importlib.import_module(module))
    assert "moto_server_port" in source, (
        f"{module} no longer builds its endpoint from MOTO_PORT; LocalCloud.start sets MOTO_PORT"
    )

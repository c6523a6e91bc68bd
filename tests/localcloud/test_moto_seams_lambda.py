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
    from moto.awslambda.models import LambdaBackend, LambdaFunction

    assert "qualifier" in inspect.signature(LambdaBackend.get_function).parameters, (
        "LambdaBackend.get_function(name_or_arn, qualifier) changed: lambda_runtime.resolve needs it"
    )
    source = inspect.getsource(LambdaFunction.__init__)
    for attribute in ("code_bytes", "code_sha_256", "handler", "timeout", "environment_vars",
                      "memory_size", "reserved_concurrency", "version"):
        assert f"self.{attribute}" in source, (
            f"moto's LambdaFunction no longer sets .{attribute}; lambda_runtime reads it"
        )


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

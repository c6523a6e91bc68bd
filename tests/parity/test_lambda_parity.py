"""Lambda parity: each case does what AWS's python3.11 runtime or Lambda's API refuses, and
asserts the local cloud refuses it the same way (error code, message, shape). The AWS document
each rule comes from is in the test's docstring.
"""

from __future__ import annotations

import base64
import io
import json
import time
import zipfile

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from infra_scripts.localcloud.awslambda.runtime_env import BOTO3_VERSION, BOTOCORE_VERSION
from infra_scripts.localcloud.core.server import LocalCloud
from tests.localcloud.lambda_helpers import create_function, invoke, lambda_role

pytestmark = pytest.mark.parity
NO_RETRIES = Config(retries={"total_max_attempts": 1}, read_timeout=120)


@pytest.fixture(scope="module")
def cloud():
    with LocalCloud() as running:
        yield running


def lambda_client(cloud: LocalCloud):
    return cloud.boto3_client("lambda", config=NO_RETRIES)


def test_import_of_a_package_in_neither_zip_nor_layers_is_an_import_module_error(cloud):
    """AWS: the python3.11 runtime holds the SDK for Python and nothing else; a handler importing
    anything else needs it in its zip or a layer, else Runtime.ImportModuleError
    (https://docs.aws.amazon.com/lambda/latest/dg/python-package.html). The project venv has
    Powertools installed: the sandbox must not see it."""
    create_function(cloud, "needs-powertools", "import aws_lambda_powertools\n\ndef handler(e, c):\n"
                    "    return 1\n")
    response, payload = invoke(cloud, "needs-powertools")
    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "Runtime.ImportModuleError"
    assert payload["errorMessage"] == ("Unable to import module 'app': No module named "
                                       "'aws_lambda_powertools'")


def test_a_layer_supplies_the_package_under_opt_python(cloud):
    """AWS: a layer's python/ folder is on sys.path
    (https://docs.aws.amazon.com/lambda/latest/dg/packaging-layers.html)."""
    client = lambda_client(cloud)
    layer = client.publish_layer_version(
        LayerName="greeting", CompatibleRuntimes=["python3.11"],
        Content={"ZipFile": _zip({"python/greeting.py": "WORD = 'hello from a layer'\n"})})
    create_function(cloud, "uses-layer", "import greeting\n\ndef handler(e, c):\n    return greeting.WORD\n",
                    Layers=[layer["LayerVersionArn"]])
    response, payload = invoke(cloud, "uses-layer")
    assert "FunctionError" not in response and payload == "hello from a layer"


def test_the_runtime_is_awss_python311_with_its_pinned_sdk_and_no_project_paths(cloud):
    """AWS: python3.11 with the runtime's boto3/botocore; the task root first on sys.path
    (https://docs.aws.amazon.com/lambda/latest/dg/lambda-python.html)."""
    source = ("import sys, os, boto3, botocore\n\ndef handler(e, c):\n    return {'version': "
              "sys.version_info[:2], 'boto3': boto3.__version__, 'botocore': botocore.__version__, "
              "'path': sys.path, 'task_root': os.environ['LAMBDA_TASK_ROOT'], 'cwd': os.getcwd(), "
              "'exec_env': os.environ['AWS_EXECUTION_ENV'], 'handler': os.environ['_HANDLER']}\n")
    create_function(cloud, "introspect", source)
    _, payload = invoke(cloud, "introspect")
    assert payload["version"] == [3, 11]
    assert (payload["boto3"], payload["botocore"]) == (BOTO3_VERSION, BOTOCORE_VERSION)
    assert payload["path"][0] == payload["task_root"] == payload["cwd"]
    assert payload["exec_env"] == "AWS_Lambda_python3.11" and payload["handler"] == "app.handler"
    joined = "\n".join(payload["path"])
    assert ".venv" not in joined and "site-packages" not in joined, payload["path"]
    assert "/work/" not in joined.replace(payload["task_root"], "")


@pytest.mark.parametrize(("handler", "error_type", "message"), [
    ("app.nope", "Runtime.HandlerNotFound", "Handler 'nope' missing on module 'app'"),
    ("apphandler", "Runtime.MalformedHandlerName",
     "Bad handler 'apphandler': not enough values to unpack (expected 2, got 1)"),
    ("missing.handler", "Runtime.ImportModuleError",
     "Unable to import module 'missing': No module named 'missing'"),
])
def test_a_wrong_handler_name_fails_init_with_the_runtime_clients_error(cloud, handler, error_type,
                                                                         message):
    """AWS: the runtime interface client resolves the handler and reports init errors
    (awslambdaric bootstrap; https://docs.aws.amazon.com/lambda/latest/dg/python-exceptions.html)."""
    name = f"bad-handler-{error_type.split('.')[1].lower()}"
    create_function(cloud, name, "def handler(e, c):\n    return 1\n", handler=handler)
    response, payload = invoke(cloud, name)
    assert response["FunctionError"] == "Unhandled"
    assert (payload["errorType"], payload["errorMessage"]) == (error_type, message)


def test_a_request_payload_over_6_mb_is_refused(cloud):
    """AWS: synchronous invocation payload 6 MB (request), RequestEntityTooLargeException
    (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html)."""
    create_function(cloud, "small", "def handler(e, c):\n    return 1\n")
    event = json.dumps({"blob": "x" * (6 * 1024 * 1024)})
    with pytest.raises(ClientError) as raised:
        lambda_client(cloud).invoke(FunctionName="small", Payload=event)
    error = raised.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert error["Error"]["Code"] == "RequestEntityTooLargeException"
    assert "6291456 bytes" in error["Error"]["Message"]
    assert invoke(cloud, "small")[1] == 1  # the function keeps serving


def test_a_response_over_6_mb_is_function_response_size_too_large(cloud):
    """AWS: synchronous invocation payload 6 MB (response): Function.ResponseSizeTooLarge
    (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html)."""
    create_function(cloud, "big-answer", "def handler(e, c):\n    return 'x' * (6 * 1024 * 1024 + 200)\n")
    response, payload = invoke(cloud, "big-answer")
    assert response["StatusCode"] == 200 and response["FunctionError"] == "Unhandled"
    assert payload == {"errorType": "Function.ResponseSizeTooLarge", "errorMessage":
                       "Response payload size exceeded maximum allowed payload size (6291556 bytes)."}


def test_a_worker_over_its_memory_size_is_killed(cloud):
    """AWS: memory 128 MB–10,240 MB; a function that exceeds its MemorySize is stopped: the
    runtime exits "signal: killed" and REPORT names Runtime.OutOfMemory
    (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html)."""
    source = "def handler(e, c):\n    hog = b'x' * (400 * 1024 * 1024)\n    return len(hog)\n"
    create_function(cloud, "hog", source, MemorySize=128, timeout=30)
    response, payload = invoke(cloud, "hog", LogType="Tail")
    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "Runtime.ExitError"
    assert payload["errorMessage"].endswith("Error: Runtime exited with error: signal: killed")
    assert "Error Type: Runtime.OutOfMemory" in base64.b64decode(response["LogResult"]).decode()


def test_only_tmp_is_writable(cloud):
    """AWS: the function's file system is read-only except /tmp
    (https://docs.aws.amazon.com/lambda/latest/dg/configuration-ephemeral-storage.html)."""
    source = ("import os, errno\n\ndef attempt(path):\n    try:\n        open(path, 'w').write('x')\n"
              "        return 'ok'\n    except OSError as error:\n"
              "        return f'{error.errno} {error.strerror}'\n\n"
              "def handler(e, c):\n    return {name: attempt(path) for name, path in {\n"
              "        'task_root': os.path.join(os.environ['LAMBDA_TASK_ROOT'], 'x'),\n"
              "        'home': '/root/stepml-parity-probe', 'etc': '/etc/stepml-parity-probe',\n"
              "        'tmp': '/tmp/stepml-parity-probe'}.items()}\n")
    create_function(cloud, "writer", source)
    _, payload = invoke(cloud, "writer")
    read_only = "30 Read-only file system"
    assert payload == {"task_root": read_only, "home": read_only, "etc": read_only, "tmp": "ok"}


def test_environment_variables_over_4_kb_are_refused(cloud):
    """AWS: environment variables 4 KB in all, InvalidParameterValueException
    (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html)."""
    client = lambda_client(cloud)
    big = {f"VAR_{number}": "v" * 100 for number in range(40)}
    with pytest.raises(ClientError) as raised:
        client.create_function(FunctionName="env-heavy", Runtime="python3.11", Role=lambda_role(cloud),
                               Handler="app.handler", Code={"ZipFile": _zip({"app.py": ""})},
                               Environment={"Variables": big})
    assert raised.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert raised.value.response["Error"]["Message"].startswith(
        "Lambda was unable to configure your environment variables because the environment "
        "variables you have provided exceeded the 4KB limit. String measured: {\"VAR_0\":")
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_function(FunctionName="env-heavy")  # nothing was created
    create_function(cloud, "env-light", "def handler(e, c):\n    return 1\n")
    with pytest.raises(ClientError) as raised:
        client.update_function_configuration(FunctionName="env-light", Environment={"Variables": big})
    assert raised.value.response["Error"]["Code"] == "InvalidParameterValueException"


def test_environment_variables_may_not_set_lambdas_reserved_keys(cloud):
    """AWS: the runtime's defined variables are reserved
    (https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html)."""
    with pytest.raises(ClientError) as raised:
        create_function(cloud, "sets-region", "def handler(e, c):\n    return 1\n",
                        Environment={"Variables": {"AWS_REGION": "eu-west-1", "MINE": "ok"}})
    assert raised.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert raised.value.response["Error"]["Message"].endswith(
        "contains reserved keys that are currently not supported for modification. Reserved keys "
        "used in this request: AWS_REGION")


def test_a_package_over_250_mb_unzipped_is_refused(cloud):
    """AWS: deployment package 250 MB unzipped, layers included
    (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html)."""
    package = _zip({"app.py": "def handler(e, c):\n    return 1\n",
                    "blob.bin": b"\0" * (251 * 1024 * 1024)})
    with pytest.raises(ClientError) as raised:
        lambda_client(cloud).create_function(
            FunctionName="too-big", Runtime="python3.11", Role=lambda_role(cloud), Handler="app.handler",
            Code={"ZipFile": package})
    assert raised.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert raised.value.response["Error"]["Message"] == "Unzipped size must be smaller than 262144000 bytes"


def test_reserving_concurrency_must_leave_100_unreserved(cloud):
    """AWS: account concurrency 1,000 by default; Lambda keeps 100 unreserved
    (https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html)."""
    client = lambda_client(cloud)
    create_function(cloud, "greedy", "def handler(e, c):\n    return 1\n")
    unreserved = client.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"]
    reserved_elsewhere = 1000 - unreserved
    with pytest.raises(ClientError) as raised:
        client.put_function_concurrency(FunctionName="greedy",
                                        ReservedConcurrentExecutions=901 - reserved_elsewhere)
    assert raised.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert raised.value.response["Error"]["Message"] == (
        "Specified ReservedConcurrentExecutions for function decreases account's "
        "UnreservedConcurrentExecution below its minimum value of [100].")
    client.put_function_concurrency(FunctionName="greedy",
                                    ReservedConcurrentExecutions=900 - reserved_elsewhere)
    limits = client.get_account_settings()["AccountLimit"]
    assert (limits["ConcurrentExecutions"], limits["UnreservedConcurrentExecutions"]) == (1000, 100)
    client.delete_function_concurrency(FunctionName="greedy")


def test_provisioned_environments_serve_only_their_alias_and_follow_it(cloud):
    """AWS: provisioned concurrency is configured on an alias or version and serves that
    version; $LATEST and other versions run on demand; moving the alias re-provisions
    (https://docs.aws.amazon.com/lambda/latest/dg/provisioned-concurrency.html)."""
    client = lambda_client(cloud)
    source = ("import os\n\ndef handler(e, c):\n"
              "    return [os.environ['AWS_LAMBDA_INITIALIZATION_TYPE'], {}]\n")
    create_function(cloud, "provisioned", source.format("'v1'"))
    v1 = client.publish_version(FunctionName="provisioned")["Version"]
    client.create_alias(FunctionName="provisioned", Name="live", FunctionVersion=v1)
    client.put_provisioned_concurrency_config(FunctionName="provisioned", Qualifier="live",
                                              ProvisionedConcurrentExecutions=1)
    _wait_ready(client, "provisioned", "live")
    assert invoke(cloud, "provisioned", Qualifier="live")[1] == ["provisioned-concurrency", "v1"]
    assert invoke(cloud, "provisioned")[1][0] == "on-demand"  # $LATEST
    with pytest.raises(ClientError) as raised:
        client.put_provisioned_concurrency_config(FunctionName="provisioned", Qualifier=v1,
                                                  ProvisionedConcurrentExecutions=1)
    assert raised.value.response["Error"]["Code"] == "ResourceConflictException"

    client.update_function_code(FunctionName="provisioned", ZipFile=_zip({"app.py": source.format("'v2'")}))
    v2 = client.publish_version(FunctionName="provisioned")["Version"]
    client.update_alias(FunctionName="provisioned", Name="live", FunctionVersion=v2)
    _wait_ready(client, "provisioned", "live")
    assert invoke(cloud, "provisioned", Qualifier="live")[1] == ["provisioned-concurrency", "v2"]
    assert invoke(cloud, "provisioned", Qualifier=v1)[1] == ["on-demand", "v1"]


def _wait_ready(client, name: str, qualifier: str) -> None:
    for _ in range(300):
        status = client.get_provisioned_concurrency_config(FunctionName=name, Qualifier=qualifier)["Status"]
        if status == "READY":
            return
        assert status == "IN_PROGRESS", status
        time.sleep(0.05)
    raise AssertionError("provisioned concurrency never became READY")


def _zip(files: dict[str, str | bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()

"""SageMaker endpoints on the local cloud: real model-server processes behind the AWS APIs.

Most tests run a tiny stand-in model server (it echoes its port and pid and can be told to fail)
so that they take a second or two; ``test_real_model_server`` runs ``inference.server``.
"""

from __future__ import annotations

import io
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from infra_scripts.localcloud.core.server import LocalCloud, LocalCloudSettings
from infra_scripts.packaging import serving_environment
from infra_scripts.packaging import tar_gz as tarball
from tests.roles import service_role

ENDPOINTS = "infra_scripts.localcloud.sagemaker.endpoints"
METRICS = "infra_scripts.localcloud.cloudwatch.metrics"
BUCKET = "models"
ROLE = "arn:aws:iam::123456789012:role/sagemaker"

# A model server with the SageMaker hosting contract; behaviour comes from standin.json in the
# model dir: {"version", "fail" (stderr line, exit 3), "never_ready", "latency_s",
# "fail_requests" (answer every invocation with this status)}.
STANDIN_SERVER = r'''
import argparse, json, os, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

parser = argparse.ArgumentParser()
for flag in ("--model", "--host"):
    parser.add_argument(flag)
parser.add_argument("--port", type=int)
parser.add_argument("--workers", type=int, default=1)
args = parser.parse_args()
config = json.loads((Path(args.model) / "standin.json").read_text())
if config.get("fail"):
    print("loading model", file=sys.stderr)
    print(config["fail"], file=sys.stderr)
    sys.exit(3)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        ready = self.path == "/ping" and not config.get("never_ready")
        self._send(200 if ready else 503, {})

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Type") != "application/json":
            return self._send(415, {"error": "unsupported_media_type", "message": "json only"})
        request = json.loads(body or b"{}")
        if config.get("fail_requests"):
            return self._send(config["fail_requests"], {"error": "broken", "message": "always fails"})
        if "status" in request:
            return self._send(request["status"], {"error": "bad_input", "message": "refused"})
        time.sleep(request.get("sleep", 0) + config.get("latency_s", 0))
        self._send(200, {"version": config.get("version"), "port": args.port,
                         "pid": os.getpid(), "accept": self.headers.get("Accept"),
                         "key": os.environ.get("AWS_ACCESS_KEY_ID"),
                         "token": bool(os.environ.get("AWS_SESSION_TOKEN"))})


server = ThreadingHTTPServer((args.host, args.port), Handler)
server.daemon_threads = True
print(f"listening on http://{args.host}:{args.port}", flush=True)
server.serve_forever()
'''


# -- helpers (also used by the autoscaling tests) --------------------------------------------

def standin_options(script: Path, **extra: Any) -> dict[str, Any]:
    command = [sys.executable, str(script), "--model", "{model}", "--port", "{port}",
               "--host", "{host}"]
    return {"server_command": command, "startup_timeout_s": 10, "stop_grace_s": 2,
            "health_check_interval_s": 0.3, **extra}


def write_standin(directory: Path) -> Path:
    script = directory / "standin_server.py"
    script.write_text(STANDIN_SERVER)
    return script


def client(cloud: LocalCloud, service: str) -> Any:
    return boto3.client(
        service, endpoint_url=cloud.url, region_name=cloud.region,
        aws_access_key_id=cloud.credentials["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=cloud.credentials["AWS_SECRET_ACCESS_KEY"],
        config=Config(retries={"max_attempts": 1}, max_pool_connections=32),
    )


def put_object(cloud: LocalCloud, key: str, data: bytes) -> str:
    s3 = client(cloud, "s3")
    try:
        s3.create_bucket(Bucket=BUCKET)
    except ClientError:
        pass  # already there
    s3.put_object(Bucket=BUCKET, Key=key, Body=data)
    return f"s3://{BUCKET}/{key}"


SERVING_ENV = serving_environment("us-east-1")  # what CreateModel's handler sets


def model_role(cloud: LocalCloud) -> str:
    """The models' execution role (``ROLE``), with the stand-in's access: instances run as it."""
    return service_role(cloud, ROLE.rsplit("/", 1)[1], "sagemaker.amazonaws.com")


def create_config(cloud: LocalCloud, name: str, standin: dict[str, Any] | None = None,
                  instances: int = 1, data: bytes | None = None,
                  environment: dict[str, str] | None = None) -> str:
    """Model + endpoint config named ``name`` whose artifact configures the stand-in."""
    if data is None:
        data = tarball({"standin.json": json.dumps(standin or {}).encode()})
    url = put_object(cloud, f"{name}/model.tar.gz", data)
    sagemaker = client(cloud, "sagemaker")
    sagemaker.create_model(ModelName=name, ExecutionRoleArn=model_role(cloud),
                           PrimaryContainer={"Image": "local/stepml", "ModelDataUrl": url,
                                             "Environment": environment or {}})
    sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": instances,
        "InstanceType": "ml.m5.large"}])
    return name


def wait_until_settled(cloud: LocalCloud, name: str, timeout_s: float = 90.0) -> dict:
    sagemaker = client(cloud, "sagemaker")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        description = sagemaker.describe_endpoint(EndpointName=name)
        if description["EndpointStatus"] not in ("Creating", "Updating"):
            return description
        time.sleep(0.1)
    raise AssertionError(f"endpoint {name} still {description['EndpointStatus']}")


def invoke(cloud: LocalCloud, name: str, payload: dict | None = None) -> dict:
    response = client(cloud, "sagemaker-runtime").invoke_endpoint(
        EndpointName=name, Body=json.dumps(payload or {}), ContentType="application/json",
        Accept="application/json")
    return json.loads(response["Body"].read())


def instance_pids(cloud: LocalCloud, name: str, variant: str = "AllTraffic") -> list[int]:
    endpoints = cloud.extensions["sagemaker.endpoints"]
    key = (cloud.account_id, cloud.region, name)
    return [instance.pid for instance in endpoints.instances(key, variant)]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie is dead for our purposes
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False


# -- fixtures ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def standin_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_standin(tmp_path_factory.mktemp("standin"))


@pytest.fixture
def cloud(standin_script: Path) -> Iterator[LocalCloud]:
    settings = LocalCloudSettings(options={"sagemaker_endpoints": standin_options(standin_script)})
    with LocalCloud(settings=settings, extensions=[METRICS, ENDPOINTS]) as running:
        yield running


# -- tests -----------------------------------------------------------------------------------

def test_create_invoke_delete(cloud: LocalCloud) -> None:
    sagemaker = client(cloud, "sagemaker")
    create_config(cloud, "v1", {"version": "v1"})
    sagemaker.create_endpoint(EndpointName="ep", EndpointConfigName="v1")
    assert sagemaker.describe_endpoint(EndpointName="ep")["EndpointStatus"] == "Creating"

    description = wait_until_settled(cloud, "ep")
    assert description["EndpointStatus"] == "InService"
    variant = description["ProductionVariants"][0]
    assert (variant["CurrentInstanceCount"], variant["DesiredInstanceCount"]) == (1, 1)

    response = client(cloud, "sagemaker-runtime").invoke_endpoint(
        EndpointName="ep", Body=b"{}", ContentType="application/json", Accept="application/json")
    assert response["ContentType"] == "application/json"
    assert response["InvokedProductionVariant"] == "AllTraffic"
    answer = json.loads(response["Body"].read())
    assert answer["version"] == "v1" and answer["accept"] == "application/json"

    [pid] = instance_pids(cloud, "ep")
    sagemaker.delete_endpoint(EndpointName="ep")
    assert not pid_alive(pid)
    with pytest.raises(ClientError, match="Could not find endpoint"):
        sagemaker.describe_endpoint(EndpointName="ep")


def test_duplicate_create_is_rejected(cloud: LocalCloud) -> None:
    sagemaker = client(cloud, "sagemaker")
    create_config(cloud, "dup", {"version": "v1"})
    sagemaker.create_endpoint(EndpointName="dup", EndpointConfigName="dup")
    with pytest.raises(ClientError, match="Cannot create already existing endpoint"):
        sagemaker.create_endpoint(EndpointName="dup", EndpointConfigName="dup")
    assert wait_until_settled(cloud, "dup")["EndpointStatus"] == "InService"


def test_unknown_endpoint_is_validation_error(cloud: LocalCloud) -> None:
    with pytest.raises(ClientError) as caught:
        invoke(cloud, "nope")
    assert caught.value.response["Error"]["Code"] == "ValidationError"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "Endpoint nope of account" in caught.value.response["Error"]["Message"]


def test_failed_when_model_server_exits(cloud: LocalCloud) -> None:
    create_config(cloud, "broken", {"fail": "RuntimeError: model.pth is not a checkpoint"})
    client(cloud, "sagemaker").create_endpoint(EndpointName="ep", EndpointConfigName="broken")
    description = wait_until_settled(cloud, "ep")
    assert description["EndpointStatus"] == "Failed"
    reason = description["FailureReason"]
    assert "exited with code 3" in reason
    assert "RuntimeError: model.pth is not a checkpoint" in reason
    with pytest.raises(ClientError, match="not found"):
        invoke(cloud, "ep")


@pytest.mark.parametrize("data, expected", [
    (b"this is not a tarball", "Failed to extract model data"),
    (None, "Failed to download model data"),
])
def test_failed_on_bad_artifact(cloud: LocalCloud, data: bytes | None, expected: str) -> None:
    sagemaker = client(cloud, "sagemaker")
    create_config(cloud, "bad", data=data or b"")
    if data is None:  # point the model at an object that does not exist
        sagemaker.delete_model(ModelName="bad")
        sagemaker.create_model(ModelName="bad", ExecutionRoleArn=model_role(cloud), PrimaryContainer={
            "Image": "local/stepml", "ModelDataUrl": f"s3://{BUCKET}/missing/model.tar.gz"})
    sagemaker.create_endpoint(EndpointName="ep", EndpointConfigName="bad")
    description = wait_until_settled(cloud, "ep")
    assert description["EndpointStatus"] == "Failed"
    assert expected in description["FailureReason"]


def test_delete_while_creating_stops_the_instance(cloud: LocalCloud) -> None:
    sagemaker = client(cloud, "sagemaker")
    create_config(cloud, "slow", {"never_ready": True})
    sagemaker.create_endpoint(EndpointName="ep", EndpointConfigName="slow")
    endpoints = cloud.extensions["sagemaker.endpoints"]
    state = endpoints._states[(cloud.account_id, cloud.region, "ep")]
    deadline = time.monotonic() + 10
    while not any(f.instances and f.instances[0].pid for f in state.pending):
        assert time.monotonic() < deadline, "no instance started"
        time.sleep(0.05)
    pid = state.pending[0].instances[0].pid
    sagemaker.delete_endpoint(EndpointName="ep")
    assert not pid_alive(pid)
    assert sagemaker.list_endpoints()["Endpoints"] == []


def test_target_variant_routes_to_that_variant(cloud: LocalCloud) -> None:
    create_config(cloud, "a", {"version": "a"})
    create_config(cloud, "b", {"version": "b"})
    sagemaker = client(cloud, "sagemaker")
    sagemaker.create_endpoint_config(EndpointConfigName="ab", ProductionVariants=[
        {"VariantName": "A", "ModelName": "a", "InitialInstanceCount": 1,
         "InstanceType": "ml.m5.large", "InitialVariantWeight": 1.0},
        {"VariantName": "B", "ModelName": "b", "InitialInstanceCount": 1,
         "InstanceType": "ml.m5.large", "InitialVariantWeight": 0.0}])
    sagemaker.create_endpoint(EndpointName="ep", EndpointConfigName="ab")
    description = wait_until_settled(cloud, "ep")
    assert [v["VariantName"] for v in description["ProductionVariants"]] == ["A", "B"]
    runtime = client(cloud, "sagemaker-runtime")
    assert {invoke(cloud, "ep")["version"] for _ in range(5)} == {"a"}  # B weighs nothing
    response = runtime.invoke_endpoint(EndpointName="ep", Body=b"{}", TargetVariant="B",
                                       ContentType="application/json")
    assert response["InvokedProductionVariant"] == "B"
    assert json.loads(response["Body"].read())["version"] == "b"
    with pytest.raises(ClientError, match="TargetVariant is not valid"):
        runtime.invoke_endpoint(EndpointName="ep", Body=b"{}", TargetVariant="C",
                                ContentType="application/json")


def test_failed_when_the_model_is_gone(cloud: LocalCloud) -> None:
    sagemaker = client(cloud, "sagemaker")
    create_config(cloud, "gone", {"version": "v1"})
    sagemaker.delete_model(ModelName="gone")
    sagemaker.create_endpoint(EndpointName="ep", EndpointConfigName="gone")
    description = wait_until_settled(cloud, "ep")
    assert description["EndpointStatus"] == "Failed"
    assert "Could not find model" in description["FailureReason"]


def test_failed_on_ping_timeout(standin_script: Path) -> None:
    options = standin_options(standin_script, startup_timeout_s=1)
    settings = LocalCloudSettings(options={"sagemaker_endpoints": options})
    with LocalCloud(settings=settings, extensions=[ENDPOINTS]) as cloud:
        create_config(cloud, "slow", {"never_ready": True})
        client(cloud, "sagemaker").create_endpoint(EndpointName="ep", EndpointConfigName="slow")
        description = wait_until_settled(cloud, "ep")
        assert description["EndpointStatus"] == "Failed"
        reason = description["FailureReason"]
        assert reason.startswith("The primary container for production variant AllTraffic did not "
                                 "pass the ping health check. Please check CloudWatch logs")
        assert "did not answer /ping within 1 s" in reason
        assert instance_pids(cloud, "ep") == []


def test_round_robin_across_instances(cloud: LocalCloud) -> None:
    create_config(cloud, "two", {"version": "v1"}, instances=2)
    client(cloud, "sagemaker").create_endpoint(EndpointName="ep", EndpointConfigName="two")
    description = wait_until_settled(cloud, "ep")
    assert description["ProductionVariants"][0]["CurrentInstanceCount"] == 2
    ports = [invoke(cloud, "ep")["port"] for _ in range(10)]
    assert len(set(ports)) == 2
    assert all(a != b for a, b in zip(ports, ports[1:], strict=False))  # strictly alternating


def test_model_4xx_surfaces_as_model_error(cloud: LocalCloud) -> None:
    create_config(cloud, "v1", {"version": "v1"})
    client(cloud, "sagemaker").create_endpoint(EndpointName="ep", EndpointConfigName="v1")
    wait_until_settled(cloud, "ep")
    with pytest.raises(ClientError) as caught:
        invoke(cloud, "ep", {"status": 422})
    error = caught.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert error["Error"]["Code"] == "ModelError"
    assert error["OriginalStatusCode"] == 422
    assert json.loads(error["OriginalMessage"]) == {"error": "bad_input", "message": "refused"}
    assert error["LogStreamArn"].startswith(
        "arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/Endpoints/ep")
    assert "Received client error (422)" in error["Error"]["Message"]

    runtime = client(cloud, "sagemaker-runtime")
    with pytest.raises(runtime.exceptions.ModelError) as wrong_type:
        runtime.invoke_endpoint(EndpointName="ep", Body=b"x", ContentType="text/plain")
    assert wrong_type.value.response["OriginalStatusCode"] == 415
    assert invoke(cloud, "ep")["version"] == "v1"  # still serving


def test_update_is_blue_green_without_failed_requests(cloud: LocalCloud) -> None:
    sagemaker = client(cloud, "sagemaker")
    create_config(cloud, "v1", {"version": "v1"})
    create_config(cloud, "v2", {"version": "v2", "latency_s": 0.01}, instances=2)
    sagemaker.create_endpoint(EndpointName="ep", EndpointConfigName="v1")
    wait_until_settled(cloud, "ep")
    old_pids = instance_pids(cloud, "ep")

    stop = threading.Event()
    seen: list[list[str]] = [[] for _ in range(3)]
    failures: list[str] = []

    def loop(log: list[str]) -> None:
        runtime = client(cloud, "sagemaker-runtime")
        while not stop.is_set():
            try:
                response = runtime.invoke_endpoint(EndpointName="ep", Body=b"{}",
                                                   ContentType="application/json")
                log.append(json.loads(response["Body"].read())["version"])
            except Exception as error:  # any failure fails the test
                failures.append(repr(error))

    threads = [threading.Thread(target=loop, args=(log,)) for log in seen]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.3)
        sagemaker.update_endpoint(EndpointName="ep", EndpointConfigName="v2")
        assert sagemaker.describe_endpoint(EndpointName="ep")["EndpointStatus"] == "Updating"
        with pytest.raises(ClientError, match="Cannot update in-progress endpoint"):
            sagemaker.update_endpoint(EndpointName="ep", EndpointConfigName="v2")
        description = wait_until_settled(cloud, "ep")
        time.sleep(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join()

    assert failures == []
    assert description["EndpointStatus"] == "InService"
    assert description["EndpointConfigName"] == "v2"
    assert description["ProductionVariants"][0]["CurrentInstanceCount"] == 2
    for log in seen:  # each client saw v1, then only v2
        assert log and log[-1] == "v2"
        assert "v1" not in log[log.index("v2"):]
    assert not any(pid_alive(pid) for pid in old_pids)


def test_failed_update_keeps_the_old_fleet(cloud: LocalCloud) -> None:
    sagemaker = client(cloud, "sagemaker")
    create_config(cloud, "v1", {"version": "v1"})
    create_config(cloud, "v2", {"fail": "ImportError: no module named resnet"})
    sagemaker.create_endpoint(EndpointName="ep", EndpointConfigName="v1")
    wait_until_settled(cloud, "ep")
    sagemaker.update_endpoint(EndpointName="ep", EndpointConfigName="v2")
    description = wait_until_settled(cloud, "ep")
    assert description["EndpointStatus"] == "InService"
    assert description["EndpointConfigName"] == "v1"
    assert "ImportError: no module named resnet" in description["FailureReason"]
    assert invoke(cloud, "ep")["version"] == "v1"


def test_update_weights_and_capacities_changes_processes(cloud: LocalCloud) -> None:
    sagemaker = client(cloud, "sagemaker")
    create_config(cloud, "v1", {"version": "v1"})
    sagemaker.create_endpoint(EndpointName="ep", EndpointConfigName="v1")
    wait_until_settled(cloud, "ep")
    sagemaker.update_endpoint_weights_and_capacities(EndpointName="ep", DesiredWeightsAndCapacities=[
        {"VariantName": "AllTraffic", "DesiredInstanceCount": 2}])
    variant = sagemaker.describe_endpoint(EndpointName="ep")["ProductionVariants"][0]
    assert variant["DesiredInstanceCount"] == 2
    variant = wait_until_settled(cloud, "ep")["ProductionVariants"][0]
    assert (variant["CurrentInstanceCount"], variant["DesiredInstanceCount"]) == (2, 2)
    assert len({invoke(cloud, "ep")["pid"] for _ in range(4)}) == 2

    sagemaker.update_endpoint_weights_and_capacities(EndpointName="ep", DesiredWeightsAndCapacities=[
        {"VariantName": "AllTraffic", "DesiredInstanceCount": 1}])
    variant = wait_until_settled(cloud, "ep")["ProductionVariants"][0]
    assert variant["CurrentInstanceCount"] == 1
    assert len(instance_pids(cloud, "ep")) == 1


def test_invocations_reach_cloudwatch(cloud: LocalCloud) -> None:
    create_config(cloud, "v1", {"version": "v1"})
    client(cloud, "sagemaker").create_endpoint(EndpointName="ep", EndpointConfigName="v1")
    wait_until_settled(cloud, "ep")
    for _ in range(3):
        invoke(cloud, "ep")
    now = time.time()
    statistics = client(cloud, "cloudwatch").get_metric_statistics(
        Namespace="AWS/SageMaker", MetricName="Invocations", Statistics=["Sum"], Period=60,
        StartTime=now - 600, EndTime=now + 60,
        Dimensions=[{"Name": "EndpointName", "Value": "ep"},
                    {"Name": "VariantName", "Value": "AllTraffic"}])
    assert sum(point["Sum"] for point in statistics["Datapoints"]) == 3
    per_fleet = client(cloud, "cloudwatch").get_metric_statistics(  # what rollback alarms watch
        Namespace="AWS/SageMaker", MetricName="InvocationModelErrors", Statistics=["Sum", "SampleCount"],
        Period=60, StartTime=now - 600, EndTime=now + 60,
        Dimensions=[{"Name": "EndpointName", "Value": "ep"}, {"Name": "VariantName", "Value": "AllTraffic"},
                    {"Name": "EndpointConfigName", "Value": "v1"}])
    assert sum(p["SampleCount"] for p in per_fleet["Datapoints"]) == 3
    assert sum(p["Sum"] for p in per_fleet["Datapoints"]) == 0


def test_crashed_instance_is_replaced(cloud: LocalCloud) -> None:
    create_config(cloud, "v1", {"version": "v1"})
    client(cloud, "sagemaker").create_endpoint(EndpointName="ep", EndpointConfigName="v1")
    wait_until_settled(cloud, "ep")
    [pid] = instance_pids(cloud, "ep")
    os.kill(pid, 9)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and instance_pids(cloud, "ep") in ([], [pid]):
        time.sleep(0.1)
    [replacement] = instance_pids(cloud, "ep")
    assert replacement != pid
    assert invoke(cloud, "ep")["pid"] == replacement


def test_stop_kills_every_model_server(standin_script: Path) -> None:
    settings = LocalCloudSettings(options={"sagemaker_endpoints": standin_options(standin_script)})
    with LocalCloud(settings=settings, extensions=[ENDPOINTS]) as cloud:
        create_config(cloud, "two", {"version": "v1"}, instances=2)
        client(cloud, "sagemaker").create_endpoint(EndpointName="ep", EndpointConfigName="two")
        wait_until_settled(cloud, "ep")
        pids = instance_pids(cloud, "ep")
    assert len(pids) == 2 and not any(pid_alive(pid) for pid in pids)


# -- the real model server ---------------------------------------------------------------------

def resnet_artifact(classes: list[str], code: dict[str, bytes] | None = None) -> bytes:
    """A random-init resnet18 with the training head and, under code/, the serving code (the
    project's own unless ``code`` is given), as training's model.tar.gz holds them."""
    from infra_scripts.packaging import serving_files

    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None)
    net.fc = torch.nn.Sequential(torch.nn.Linear(512, 128), torch.nn.ReLU(),
                                 torch.nn.Linear(128, len(classes)))
    weights = io.BytesIO()
    torch.save(net.state_dict(), weights)
    files = {"model.pth": weights.getvalue(), "classes.json": json.dumps(classes).encode(),
             "hyperparameters.json": b'{"arch": "resnet18", "image_size": 32}'}
    code = serving_files() if code is None else code
    files.update({f"code/{name}": body for name, body in code.items()})
    return tarball(files)


def png_bytes() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 30, 90)).save(out, "PNG")
    return out.getvalue()


def test_real_model_server() -> None:
    """The PyTorch inference container (AWS's toolkits) serving training's model.tar.gz."""
    options = {"sagemaker_endpoints": {"startup_timeout_s": 60}}
    with LocalCloud(settings=LocalCloudSettings(options=options), extensions=[ENDPOINTS]) as cloud:
        classes = ["cat", "dog", "fox"]
        create_config(cloud, "resnet", data=resnet_artifact(classes), environment=SERVING_ENV)
        client(cloud, "sagemaker").create_endpoint(EndpointName="ep", EndpointConfigName="resnet")
        description = wait_until_settled(cloud, "ep", timeout_s=60)
        assert description["EndpointStatus"] == "InService", description.get("FailureReason")

        runtime = client(cloud, "sagemaker-runtime")
        response = runtime.invoke_endpoint(EndpointName="ep", Body=png_bytes(),
                                           ContentType="image/png", Accept="application/json")
        predictions = json.loads(response["Body"].read())["predictions"]
        assert predictions and {p["label"] for p in predictions} <= set(classes)

        with pytest.raises(runtime.exceptions.ModelError) as caught:
            runtime.invoke_endpoint(EndpointName="ep", Body=b"not an image",
                                    ContentType="image/png")
        error = caught.value.response
        assert 400 <= error["OriginalStatusCode"] < 500
        # The toolkit's error answer: the handler's message, then the traceback.
        first_line, traceback_text = error["OriginalMessage"].split("\n", 1)
        assert set(json.loads(first_line)) == {"error", "message"}
        assert "Traceback" in traceback_text
        response = runtime.invoke_endpoint(EndpointName="ep", Body=png_bytes(),
                                           ContentType="image/png")
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 200  # still serving


def test_an_instance_runs_as_the_models_execution_role(cloud: LocalCloud) -> None:
    """Issue 12: SageMaker hosting gives the container the model's ExecutionRoleArn session."""
    from moto.sts.models import sts_backends

    create_config(cloud, "ep-role")
    client(cloud, "sagemaker").create_endpoint(EndpointName="ep-role", EndpointConfigName="ep-role")
    assert wait_until_settled(cloud, "ep-role")["EndpointStatus"] == "InService"
    answer = invoke(cloud, "ep-role")
    assert answer["token"] is True and answer["key"] != cloud.credentials["AWS_ACCESS_KEY_ID"]
    sessions = {a.access_key_id: a.arn for a in sts_backends[cloud.account_id]["global"].assumed_roles}
    assert sessions[answer["key"]].startswith(f"arn:aws:sts::{cloud.account_id}:assumed-role/sagemaker/")

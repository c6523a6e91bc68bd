"""Predict Lambda under concurrent load on the local cloud (issue 4): 1, 10, 100 and 120 clients.

A real endpoint (the local PyTorch inference container, a tiny random-init resnet18 at 32 px)
behind the predict Lambda (``handlers.predict.handler``) with reserved concurrency 100. Each
client is a thread with its own boto3 Lambda client (no retries) sending small base64 PNGs.
Before each measured round every client sends one unmeasured request, so cold starts are
reported apart from warm latency.
Goal: 0 errors and 0 throttles at 100; at 120 the throttles (429) are counted, not hidden.

Run: .venv/bin/python -m benchmarks.bench_predict_load [--requests N] [--levels 1,10,100,120]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import multiprocessing
import os
import threading
import time
import zipfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from benchmarks.artifacts import serving_artifact
from benchmarks.machine import percentile, write_report
from infra_scripts.localcloud.core.server import LocalCloud, LocalCloudSettings
from infra_scripts.packaging import handler_dependencies_layer, serving_environment

PROJECT = Path(__file__).resolve().parent.parent
ENDPOINT = "bench-predict"
FUNCTION = "bench-predict"
RESERVED = 100
LEVELS = (1, 10, 100, 120)
CLASSES = ["cat", "dog", "fox"]
ROLE_POLICY = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
    "Action": "sts:AssumeRole"}]})


# -- set-up ----------------------------------------------------------------------------------

def tiny_artifact(arch: str = "resnet18", image_size: int = 32) -> bytes:
    """model.tar.gz of a random-init network with the training head, code/ in."""
    return serving_artifact(arch, image_size, CLASSES)


def model_role(cloud: LocalCloud) -> str:
    """The models' execution role: instances run as it (IAM is enforced), reading bench-models."""
    iam = cloud.boto3_client("iam")
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"Service": "sagemaker.amazonaws.com"}}]}
    try:
        arn = iam.get_role(RoleName="bench-sagemaker")["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        arn = iam.create_role(RoleName="bench-sagemaker",
                              AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(RoleName="bench-sagemaker", PolicyName="read-models", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::bench-models/*"},
            {"Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"], "Resource": "*"}]}))
    return arn


def deploy_endpoint(cloud: LocalCloud, name: str, instances: int = 1, timeout_s: float = 120.0,
                    arch: str = "resnet18", image_size: int = 32,
                    environment: dict[str, str] | None = None) -> float:
    """Upload the artifact, create model/config/endpoint; returns seconds to InService."""
    s3 = cloud.boto3_client("s3")
    if "bench-models" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket="bench-models")
    s3.put_object(Bucket="bench-models", Key=f"{name}/model.tar.gz", Body=tiny_artifact(arch, image_size))
    sagemaker = cloud.boto3_client("sagemaker")
    sagemaker.create_model(
        ModelName=name, ExecutionRoleArn=model_role(cloud),
        PrimaryContainer={"Image": "local/stepml",
                          "ModelDataUrl": f"s3://bench-models/{name}/model.tar.gz",
                          "Environment": {**serving_environment(cloud.region),
                                          **(environment or {})}})
    sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": instances,
        "InstanceType": "ml.m5.large"}])
    started = time.monotonic()
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    while time.monotonic() - started < timeout_s:
        status = sagemaker.describe_endpoint(EndpointName=name)
        if status["EndpointStatus"] == "InService":
            return time.monotonic() - started
        if status["EndpointStatus"] == "Failed":
            raise RuntimeError(f"endpoint failed: {status.get('FailureReason')}")
        time.sleep(0.2)
    raise RuntimeError("endpoint did not reach InService")


def predict_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in ("handlers/__init__.py", "handlers/predict.py"):
            archive.write(PROJECT / name, name)
    return buffer.getvalue()


def deploy_function(cloud: LocalCloud) -> None:
    iam = cloud.boto3_client("iam")
    role = iam.create_role(RoleName="bench-predict", AssumeRolePolicyDocument=ROLE_POLICY)
    client = cloud.boto3_client("lambda")
    # As the stack ships it: the handler's imports beyond the runtime come from the layer.
    layer = client.publish_layer_version(
        LayerName="bench-handler-dependencies", CompatibleRuntimes=["python3.11"],
        Content={"ZipFile": handler_dependencies_layer()})["LayerVersionArn"]
    client.create_function(
        FunctionName=FUNCTION, Runtime="python3.11", Role=role["Role"]["Arn"],
        Handler="handlers.predict.handler", Code={"ZipFile": predict_zip()}, Timeout=60,
        MemorySize=1024, Environment={"Variables": {"ENDPOINT_NAME": ENDPOINT}}, Layers=[layer])
    client.put_function_concurrency(FunctionName=FUNCTION, ReservedConcurrentExecutions=RESERVED)


def event() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (48, 40), (120, 200, 40)).save(out, "PNG")
    return json.dumps({"image": base64.b64encode(out.getvalue()).decode()}).encode()


# -- load ------------------------------------------------------------------------------------

@dataclass
class Outcome:
    latency_s: float
    kind: str  # ok | throttle | error
    detail: str = ""


@dataclass
class Level:
    clients: int
    requests: int
    ok: int
    errors: int
    throttles: int
    wall_s: float
    throughput_rps: float
    p50_ms: float
    p99_ms: float
    warmup_p50_ms: float
    warmup_max_ms: float
    warmup_throttles: int
    warmup_errors: int
    error_samples: list[str] = field(default_factory=list)


def lambda_client(cloud: dict[str, Any]) -> Any:
    return boto3.client(
        "lambda", endpoint_url=cloud["url"], region_name=cloud["region"],
        aws_access_key_id=cloud["credentials"]["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=cloud["credentials"]["AWS_SECRET_ACCESS_KEY"],
        config=Config(max_pool_connections=4, retries={"total_max_attempts": 1},
                      read_timeout=120, connect_timeout=10))


def call(client: Any, payload: bytes) -> Outcome:
    started = time.perf_counter()
    try:
        response = client.invoke(FunctionName=FUNCTION, Payload=payload)
    except ClientError as error:
        code = error.response["Error"]["Code"]
        kind = "throttle" if code == "TooManyRequestsException" else "error"
        return Outcome(time.perf_counter() - started, kind, code)
    except Exception as error:  # connection problems count as errors
        return Outcome(time.perf_counter() - started, "error", repr(error)[:200])
    latency = time.perf_counter() - started
    body = json.loads(response["Payload"].read() or b"{}")
    if response.get("FunctionError"):
        return Outcome(latency, "error", str(body.get("errorType")))
    if body.get("statusCode") != 200:
        return Outcome(latency, "error", f"{body.get('statusCode')}: {body.get('body', '')[:120]}")
    return Outcome(latency, "ok")


def run_round(clients: list[Any], per_client: int, payload: bytes) -> tuple[list[Outcome], float]:
    """Every client sends ``per_client`` requests back to back, all clients at once."""
    outcomes: list[list[Outcome]] = [[] for _ in clients]
    barrier = threading.Barrier(len(clients) + 1)

    def work(index: int) -> None:
        barrier.wait()
        for _ in range(per_client):
            outcomes[index].append(call(clients[index], payload))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return [o for per in outcomes for o in per], time.perf_counter() - started


def measure(cloud: dict[str, Any], count: int, per_client: int, payload: bytes) -> Level:
    clients = [lambda_client(cloud) for _ in range(count)]
    warmup, _ = run_round(clients, 1, payload)
    measured, wall = run_round(clients, per_client, payload)
    ok = [o.latency_s * 1000 for o in measured if o.kind == "ok"]
    kinds = Counter(o.kind for o in measured)
    samples = Counter(o.detail for o in measured if o.kind == "error")
    warm_ms = [o.latency_s * 1000 for o in warmup]
    return Level(
        clients=count, requests=len(measured), ok=kinds["ok"], errors=kinds["error"],
        throttles=kinds["throttle"], wall_s=round(wall, 2),
        throughput_rps=round(kinds["ok"] / wall, 1) if wall else 0.0,
        p50_ms=round(percentile(ok, 0.5), 1) if ok else 0.0,
        p99_ms=round(percentile(ok, 0.99), 1) if ok else 0.0,
        warmup_p50_ms=round(percentile(warm_ms, 0.5), 1),
        warmup_max_ms=round(max(warm_ms), 1),
        warmup_throttles=sum(o.kind == "throttle" for o in warmup),
        warmup_errors=sum(o.kind == "error" for o in warmup),
        error_samples=[f"{n}× {d}" for d, n in samples.most_common(3)],
    )


# -- report ----------------------------------------------------------------------------------

def markdown(levels: list[Level], setup: dict[str, Any]) -> str:
    lines = [
        "## Predict Lambda under concurrent load (local cloud)",
        "",
        f"Endpoint: 1 × the PyTorch inference container ({setup['model']}), InService in "
        f"{setup['endpoint_inservice_s']:.1f} s. Lambda `handlers.predict.handler`, reserved "
        f"concurrency {RESERVED}. Each client: one unmeasured warm-up request (cold starts), then "
        f"an equal share of about {setup['requests_per_level']} measured requests (at least 2) "
        "back to back; no client retries. The local cloud runs in its own process.",
        "",
        "| clients | requests | ok | errors | throttles (429) | throughput (req/s) | p50 ms "
        "| p99 ms | warm-up p50 / max ms | warm-up throttles |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for lv in levels:
        lines.append(
            f"| {lv.clients} | {lv.requests} | {lv.ok} | {lv.errors} | {lv.throttles} | "
            f"{lv.throughput_rps} | {lv.p50_ms} | {lv.p99_ms} | {lv.warmup_p50_ms} / "
            f"{lv.warmup_max_ms} | {lv.warmup_throttles} |")
    lines += ["", f"Lambda: {setup['lambda_stats']}.",
              f"1-min load average before / after the run: {setup['load_average_1m']} (the "
              "machine may be shared; anything above ~0.5 before means other work competed).",
              "Every request crosses: client → local cloud (Lambda Invoke) → warm worker process "
              "→ local cloud (InvokeEndpoint) → model server, all on the same cores as the "
              "clients."]
    for lv in levels:
        if lv.error_samples:
            lines.append(f"Errors at {lv.clients} clients: {'; '.join(lv.error_samples)}.")
    return "\n".join(lines)


def serve_cloud(connection: Connection) -> None:
    """Child process: the local cloud with the endpoint and the function, apart from the
    clients' process (its own interpreter and GIL, as AWS's front end is apart from clients)."""
    settings = LocalCloudSettings(options={"autoscaling": {"evaluation_period_s": 3600}})
    with LocalCloud(settings=settings) as cloud:
        inservice_s = deploy_endpoint(cloud, ENDPOINT)
        deploy_function(cloud)
        connection.send({"url": cloud.url, "region": cloud.region, "inservice_s": inservice_s,
                         "credentials": cloud.credentials})
        connection.recv()  # the clients are done
        connection.send(asdict(cloud.extensions["awslambda.runtime"].stats[FUNCTION]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200,
                        help="measured requests per level (at least 2 per client)")
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)))
    args = parser.parse_args()
    payload = event()
    load_before = os.getloadavg()[0]
    ours, theirs = multiprocessing.get_context("spawn").Pipe()
    server = multiprocessing.get_context("spawn").Process(target=serve_cloud, args=(theirs,))
    server.start()
    try:
        cloud = ours.recv()
        levels = []
        for count in (int(n) for n in args.levels.split(",")):
            level = measure(cloud, count, max(2, args.requests // count), payload)
            print(json.dumps(asdict(level)), flush=True)
            levels.append(level)
        ours.send("stats")
        stats = ours.recv()
    finally:
        server.join(timeout=60)
        if server.is_alive():
            server.terminate()
    setup = {"model": "resnet18, 3 classes, 32 px, random init",
             "endpoint_inservice_s": cloud["inservice_s"], "reserved_concurrency": RESERVED,
             "requests_per_level": args.requests,
             "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
             "lambda_stats": ", ".join(f"{k} {v}" for k, v in stats.items())}
    path = write_report("bench_predict_load",
                        {"setup": setup, "levels": [asdict(lv) for lv in levels]},
                        markdown(levels, setup))
    print(path.read_text())


if __name__ == "__main__":
    main()

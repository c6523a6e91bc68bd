"""Serving through the local cloud (issue 11): what a user's request pays over the bare model.

A child process runs the local cloud with one endpoint (the PyTorch inference container, a
random-init resnet18 at 64 px, model.tar.gz with code/) and the predict Lambda (python3.11
sandbox, dependencies layer, alias ``live``). The client process samples, call by call in turn
(as ``bench_inference`` does, with its worker thread and warm-up):

  bare forward     predict_fn on the preprocessed tensor, same network and weights, in-process
  InvokeEndpoint   boto3 sagemaker-runtime InvokeEndpoint with the JPEG, through the local cloud
  predict Lambda   boto3 Lambda Invoke (Qualifier ``live``) with ``{"image": <base64 JPEG>}``

Goals: InvokeEndpoint p50 − bare p50 ≤ 5 ms; predict Lambda p50 − bare p50 ≤ 10 ms. Before that
the child creates three more endpoints one after another and reports CreateEndpoint → InService
for each (goal ≤ 10 s).

Run: .venv/bin/python -m benchmarks.bench_serving [--samples N]
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing
import os
import statistics
import tempfile
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from benchmarks.artifacts import serving_model_files
from benchmarks.bench_inference import WorkerThread, make_jpeg, run_interleaved, stats, timed
from benchmarks.bench_predict_load import (
    CLASSES,
    ENDPOINT,
    FUNCTION,
    deploy_endpoint,
    deploy_function,
)
from benchmarks.machine import write_report
from infra_scripts.localcloud.core.server import LocalCloud, LocalCloudSettings

ARCH, IMAGE_SIZE = "resnet18", 64
EXTRA_ENDPOINTS = 3
GOALS_MS = {"InvokeEndpoint": 5.0, "predict Lambda": 10.0}


def serve_cloud(connection: Connection, workers: int | None) -> None:
    settings = LocalCloudSettings(options={"autoscaling": {"evaluation_period_s": 3600}})
    # The container's own knob; unset, it starts one worker per vCPU as TorchServe does.
    environment = {"SAGEMAKER_MODEL_SERVER_WORKERS": str(workers)} if workers else {}
    with LocalCloud(settings=settings) as cloud:
        inservice = [deploy_endpoint(cloud, f"bench-inservice-{n}", arch=ARCH, image_size=IMAGE_SIZE,
                                     environment=environment)
                     for n in range(EXTRA_ENDPOINTS)]
        sagemaker = cloud.boto3_client("sagemaker")
        for n in range(EXTRA_ENDPOINTS):
            sagemaker.delete_endpoint(EndpointName=f"bench-inservice-{n}")
        deploy_endpoint(cloud, ENDPOINT, arch=ARCH, image_size=IMAGE_SIZE, environment=environment)
        deploy_function(cloud)
        functions = cloud.boto3_client("lambda")
        version = functions.publish_version(FunctionName=FUNCTION)["Version"]
        functions.create_alias(FunctionName=FUNCTION, Name="live", FunctionVersion=version)
        connection.send({"url": cloud.url, "region": cloud.region, "inservice_s": inservice,
                         "credentials": cloud.credentials})
        connection.recv()


def client(cloud: dict[str, Any], service: str) -> Any:
    return boto3.client(service, endpoint_url=cloud["url"], region_name=cloud["region"],
                        config=Config(retries={"max_attempts": 1}, read_timeout=120),
                        aws_access_key_id=cloud["credentials"]["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=cloud["credentials"]["AWS_SECRET_ACCESS_KEY"])


def calls(cloud: dict[str, Any], jpeg: bytes, model_dir: Path) -> dict[str, Any]:
    from inference.inference import input_fn, model_fn, predict_fn

    model = model_fn(str(model_dir))
    tensor = model.transform(input_fn(jpeg, "image/jpeg"))
    worker = WorkerThread()
    runtime, functions = client(cloud, "sagemaker-runtime"), client(cloud, "lambda")
    event = json.dumps({"image": base64.b64encode(jpeg).decode()}).encode()

    def invoke_endpoint() -> None:
        response = runtime.invoke_endpoint(EndpointName=ENDPOINT, Body=jpeg, ContentType="image/jpeg",
                                           Accept="application/json")
        response["Body"].read()

    def invoke_lambda() -> None:
        response = functions.invoke(FunctionName=FUNCTION, Qualifier="live", Payload=event)
        payload = json.loads(response["Payload"].read())
        if response.get("FunctionError") or payload.get("statusCode", 200) != 200:
            raise RuntimeError(f"predict failed: {payload}")

    return {"bare forward": lambda: worker.time(lambda: predict_fn(tensor, model)),
            "InvokeEndpoint": lambda: timed(invoke_endpoint, 1)[0],
            "predict Lambda": lambda: timed(invoke_lambda, 1)[0]}


def markdown(result: dict[str, Any]) -> str:
    bare = result["modes"]["bare forward"]["p50_ms"]
    lines = [f"User-facing serving latency, {ARCH}@{IMAGE_SIZE}, one JPEG, one client, modes "
             f"sampled call by call in turn; endpoint workers: {result['workers']}.", "",
             "| path | p50 ms | p90 ms | p99 ms | p50 − bare p50 | goal |", "|---|---|---|---|---|---|"]
    for mode, row in result["modes"].items():
        goal = GOALS_MS.get(mode)
        extra = row["p50_ms"] - bare
        mark = "—" if goal is None else (f"≤ +{goal:g} ms " + ("met" if extra <= goal else "**missed**"))
        lines.append(f"| {mode} | {row['p50_ms']:.2f} | {row['p90_ms']:.2f} | {row['p99_ms']:.2f} | "
                     f"{'' if mode == 'bare forward' else f'+{extra:.2f} ms'} | {mark} |")
    inservice = result["inservice_s"]
    lines += ["", "CreateEndpoint → InService (one instance, the container loading the model): "
              + " / ".join(f"{s:.1f} s" for s in inservice)
              + f", median **{statistics.median(inservice):.1f} s** (goal ≤ 10 s).", "",
              f"Load average {result['load_before']} before / {result['load_after']} after; "
              f"{result['samples']} samples per path."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--workers", type=int, default=None,
                        help="SAGEMAKER_MODEL_SERVER_WORKERS for the endpoint (default: the container's)")
    args = parser.parse_args()
    load_before = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    server = context.Process(target=serve_cloud, args=(theirs, args.workers))
    server.start()
    try:
        cloud = ours.recv()
        with tempfile.TemporaryDirectory(prefix="stepml-bench-") as folder:
            model_dir = Path(folder)
            for name, body in serving_model_files(ARCH, IMAGE_SIZE, CLASSES).items():
                (model_dir / name).parent.mkdir(parents=True, exist_ok=True)
                (model_dir / name).write_bytes(body)
            samples = run_interleaved(calls(cloud, make_jpeg(IMAGE_SIZE), model_dir),
                                      args.samples, 0.01)
        ours.send("done")
    finally:
        server.join(timeout=60)
        if server.is_alive():
            server.terminate()
    result = {"modes": {mode: stats(values) for mode, values in samples.items()},
              "inservice_s": cloud["inservice_s"], "samples": args.samples,
              "workers": args.workers or "container default (one per vCPU)",
              "load_before": load_before,
              "load_after": ", ".join(f"{x:.2f}" for x in os.getloadavg())}
    name = "bench_serving" + (f"_workers{args.workers}" if args.workers else "")
    path = write_report(name, result, markdown(result))
    print(path.read_text())


if __name__ == "__main__":
    main()

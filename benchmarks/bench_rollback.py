"""Automatic rollback on the local cloud (issue 13): a guarded update to a model whose every
prediction fails, while one client keeps calling through the predict function's invoke (its
retry of a model 5xx included).

Real PyTorch inference containers (the serving toolkits over a tiny random-init ResNet-18), the
pipeline's DeploymentConfig and rollback alarms with shortened windows (alarm period 10 s,
baking 5 s, canary 25 %). Figures per trial: seconds from the alarm's StateUpdatedTimestamp to
the endpoint back InService on the old fleet alone (LastModifiedTime), the client's failed
requests, and as the same-run baseline the seconds the green fleet took to come up.

Run: .venv/bin/python -m benchmarks.bench_rollback [--trials 3]
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any

from benchmarks.bench_predict_load import deploy_endpoint, event, model_role, tiny_artifact
from benchmarks.machine import write_report
from handlers import predict
from handlers.rollout import deployment_config, put_alarms
from infra_scripts.localcloud.core.server import LocalCloud
from infra_scripts.packaging import INFERENCE_ENTRY, serving_environment, tar_gz
from infra_scripts.run import LOCAL_ROLLOUT
from statemachine.config import PipelineConfig

ENDPOINT = "bench-rollback"
SETTINGS = {**PipelineConfig().execution_defaults()["rollout"], **LOCAL_ROLLOUT}


def broken_artifact() -> bytes:
    """The tiny model whose serving program raises on every prediction (a 500 from the model)."""
    import io
    import tarfile

    files = {}
    with tarfile.open(fileobj=io.BytesIO(tiny_artifact()), mode="r:gz") as archive:
        for member in archive.getmembers():
            if member.isfile():
                files[member.name] = archive.extractfile(member).read()
    override = b"\n\ndef predict_fn(data, model):\n    raise RuntimeError('broken')\n"
    files[f"code/{INFERENCE_ENTRY}"] += override
    return tar_gz(files)


def config_for(cloud: LocalCloud, name: str, data: bytes) -> str:
    cloud.boto3_client("s3").put_object(Bucket="bench-models", Key=f"{name}/model.tar.gz", Body=data)
    sagemaker = cloud.boto3_client("sagemaker")
    role = model_role(cloud)
    sagemaker.create_model(ModelName=name, ExecutionRoleArn=role, PrimaryContainer={
        "Image": "local/stepml", "ModelDataUrl": f"s3://bench-models/{name}/model.tar.gz",
        "Environment": serving_environment(cloud.region)})
    sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1,
        "InstanceType": "ml.m5.large"}])
    return name


def trial(cloud: LocalCloud, index: int) -> dict[str, Any]:
    sagemaker, cloudwatch = cloud.boto3_client("sagemaker"), cloud.boto3_client("cloudwatch")
    config = config_for(cloud, f"broken-{index}", broken_artifact())
    answers: list[int] = []
    stop = threading.Event()
    body = event().decode()

    def call() -> None:
        while not stop.is_set():
            answers.append(predict.invoke(ENDPOINT, body)["statusCode"])

    caller = threading.Thread(target=call)
    caller.start()
    started = time.monotonic()
    alarms = put_alarms(cloudwatch, ENDPOINT, "AllTraffic", config, SETTINGS)
    sagemaker.update_endpoint(EndpointName=ENDPOINT, EndpointConfigName=config,
                              DeploymentConfig=deployment_config(SETTINGS, alarms))
    endpoints = cloud.extensions["sagemaker.endpoints"]
    state = endpoints._states[(cloud.account_id, cloud.region, ENDPOINT)]
    while state.canary is None and time.monotonic() - started < 300:
        time.sleep(0.05)
    green_up_s = time.monotonic() - started
    while sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointStatus"] != "InService":
        time.sleep(0.05)
    time.sleep(1.0)
    stop.set()
    caller.join()
    described = sagemaker.describe_endpoint(EndpointName=ENDPOINT)
    tripped = [a for a in cloudwatch.describe_alarms(AlarmNames=alarms)["MetricAlarms"]
               if a["StateValue"] == "ALARM"]
    first = min(a["StateUpdatedTimestamp"] for a in tripped)
    return {"alarm_to_old_fleet_s": (described["LastModifiedTime"] - first).total_seconds(),
            "failed_requests": sum(1 for s in answers if s != 200), "requests": len(answers),
            "green_fleet_up_s": green_up_s, "rolled_back": described["EndpointConfigName"] == ENDPOINT,
            "alarms": [a["AlarmName"] for a in tripped]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args(argv)
    with LocalCloud() as cloud:
        predict.runtime_client.cache_clear()
        client = cloud.boto3_client("sagemaker-runtime")
        original = predict.runtime_client
        predict.runtime_client = lambda: client  # the predict function's code, in process
        try:
            deploy_endpoint(cloud, ENDPOINT)
            trials = [trial(cloud, i) for i in range(args.trials)]
        finally:
            predict.runtime_client = original
    rows = "\n".join(f"| {i + 1} | {t['alarm_to_old_fleet_s']:.2f} | {t['failed_requests']} / "
                     f"{t['requests']} | {t['green_fleet_up_s']:.1f} |" for i, t in enumerate(trials))
    worst = max(t["alarm_to_old_fleet_s"] for t in trials)
    markdown = ("| trial | alarm → old fleet at 100 % (s) | failed / client requests | green fleet up (s) |\n"
                f"|---|---|---|---|\n{rows}\n\nworst {worst:.2f} s (goal ≤ 10 s); "
                f"rollout settings {SETTINGS}")
    path = write_report("bench_rollback", {"trials": trials, "settings": SETTINGS}, markdown)
    print(path.read_text())


if __name__ == "__main__":
    main()

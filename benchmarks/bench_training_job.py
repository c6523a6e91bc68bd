"""Local SageMaker training job overhead: CreateTrainingJob → Completed wall time minus the
script's own training time (its ``train_seconds=`` line), on the deploy's real script-mode
bundle and a tiny generated dataset. The overhead is what the local cloud adds around the
script: channel download, source-dir extraction, interpreter and torch start-up, the
model.tar.gz upload, status polling. Median of 3 jobs.

Run: .venv/bin/python -m benchmarks.bench_training_job
"""

from __future__ import annotations

import json
import re
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.machine import write_report
from infra_scripts import packaging
from infra_scripts.localcloud.core.server import LocalCloud
from training.dataset import make_dataset
from training.hpo import METRIC_DEFINITIONS

EXTENSION = "infra_scripts.localcloud.sagemaker.training"
BUCKET = "bench-training"
ROLE = "arn:aws:iam::123456789012:role/sagemaker"
JOBS = 3
TRAIN_SECONDS = re.compile(r"train_seconds=([0-9.]+)")


def stage(cloud: LocalCloud, dataset: Path) -> None:
    s3 = cloud.boto3_client("s3")
    s3.create_bucket(Bucket=BUCKET)
    for path in sorted(p for p in dataset.rglob("*") if p.is_file()):
        s3.upload_file(str(path), BUCKET, f"data/{path.relative_to(dataset).as_posix()}")
    s3.put_object(Bucket=BUCKET, Key="code/sourcedir.tar.gz", Body=packaging.training_source())


def run_job(cloud: LocalCloud, name: str) -> dict[str, float]:
    sagemaker = cloud.boto3_client("sagemaker")
    started = time.monotonic()
    sagemaker.create_training_job(
        TrainingJobName=name, RoleArn=ROLE,
        HyperParameters={"epochs": "3", "batch-size": "8", "image-size": "32", "arch": '"resnet18"',
                         "weights": '"none"', "sagemaker_program": json.dumps(packaging.TRAINING_ENTRY),
                         "sagemaker_submit_directory": f'"s3://{BUCKET}/code/sourcedir.tar.gz"'},
        AlgorithmSpecification={"TrainingImage": "pytorch", "TrainingInputMode": "File",
                                "MetricDefinitions": METRIC_DEFINITIONS},
        InputDataConfig=[{"ChannelName": "training", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/data"}}}],
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/output"},
        ResourceConfig={"InstanceType": "ml.c5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 1},
        StoppingCondition={"MaxRuntimeInSeconds": 600})
    while True:
        status = sagemaker.describe_training_job(TrainingJobName=name)["TrainingJobStatus"]
        if status in ("Completed", "Failed", "Stopped"):
            break
        time.sleep(0.05)
    total = time.monotonic() - started
    if status != "Completed":
        raise RuntimeError(f"{name} ended {status}")
    log = cloud.extensions["sagemaker.training"].log_text(name)
    script = float(TRAIN_SECONDS.findall(log)[-1])
    phases = phase_seconds(sagemaker.describe_training_job(TrainingJobName=name))
    return {"total_s": total, "train_s": script, "overhead_s": total - script, **phases}


def phase_seconds(described: dict) -> dict[str, float]:
    """Seconds in each SecondaryStatus: Starting+Downloading (the platform's inputs), Training
    (the container: the toolkit, the script's start-up and its training), Uploading."""
    times = {t["Status"]: t["StartTime"].timestamp() for t in described["SecondaryStatusTransitions"]}
    return {"inputs_s": times["Training"] - times["Starting"],
            "container_s": times["Uploading"] - times["Training"],
            "upload_s": times["Completed"] - times["Uploading"]}


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch, LocalCloud(extensions=[EXTENSION]) as cloud:
        stage(cloud, make_dataset(Path(scratch) / "data", classes=2, per_class=8, size=32, seed=0))
        jobs = [run_job(cloud, f"overhead-{index}") for index in range(JOBS)]
    overhead = statistics.median(job["overhead_s"] for job in jobs)
    rows = "\n".join(f"| {index + 1} | {job['total_s']:.1f} s | {job['train_s']:.1f} s | "
                     f"{job['overhead_s']:.1f} s | {job['inputs_s']:.1f} / {job['container_s']:.1f} / "
                     f"{job['upload_s']:.1f} s |" for index, job in enumerate(jobs))
    markdown = f"""
| job | CreateTrainingJob → Completed | script's train_seconds | overhead | inputs / container / upload |
|---|---|---|---|---|
{rows}

Each host runs the PyTorch training container's toolkits (sagemaker-training, whose framework
module imports torch once itself), then the script (which imports torch and torchvision again);
Uploading gzips the ~45 MB of resnet18 weights into model.tar.gz.

Median overhead: **{overhead:.1f} s** (goal ≤ 8 s). Tiny data (2 classes × 8 images, 32 px,
3 epochs) so the overhead dominates.
"""
    print(write_report("training_job", {"jobs": jobs, "overhead_s_median": overhead}, markdown).read_text())


if __name__ == "__main__":
    main()

"""CheckTraining: one poll of the training run, on either backend.

Returns ``training_job.status`` = InProgress or Completed (with the model artifact and final
metrics); a failed, stopped or overdue run raises TrainingFailed / TrainingTimedOut.
"""

from __future__ import annotations

import json
import time

from botocore.exceptions import ClientError

from handlers.common import client, error_code, split_s3_uri, state_handler, with_section
from handlers.errors import TrainingFailed, TrainingTimedOut


def sagemaker_status(job: dict) -> dict:
    described = client("sagemaker").describe_training_job(TrainingJobName=job["name"])
    status = described["TrainingJobStatus"]
    if status in ("Failed", "Stopped", "Stopping"):
        reason = described.get("FailureReason") or f"training job {status.lower()}"
        raise TrainingFailed(f"{job['name']}: {reason}")
    if status != "Completed":
        return {"status": "InProgress", "secondary_status": described.get("SecondaryStatus")}
    metrics = {m["MetricName"]: m["Value"] for m in described.get("FinalMetricDataList", [])}
    return {"status": "Completed", "model_artifact": described["ModelArtifacts"]["S3ModelArtifacts"],
            "metrics": metrics, "arn": described["TrainingJobArn"]}


def read_status_object(uri: str) -> dict | None:
    bucket, key = split_s3_uri(uri)
    try:
        return json.loads(client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
    except ClientError as error:
        if error_code(error) in ("NoSuchKey", "404"):
            return None
        raise


def instance_state(instance_id: str) -> str:
    reservations = client("ec2").describe_instances(InstanceIds=[instance_id])["Reservations"]
    return reservations[0]["Instances"][0]["State"]["Name"]


def ec2_status(job: dict) -> dict:
    status = read_status_object(job["status_uri"])
    if status and status.get("status") == "Completed":
        return {"status": "Completed", "model_artifact": status["model_artifact"],
                "metrics": status.get("metrics", {})}
    if status and status.get("status") == "Failed":
        raise TrainingFailed(f"{job['instance_id']}: {status.get('reason', 'training failed')}")
    state = instance_state(job["instance_id"])
    if state in ("shutting-down", "terminated", "stopped"):
        raise TrainingFailed(f"{job['instance_id']} is {state} without writing a status object")
    return {"status": "InProgress", "instance_state": state}


@state_handler
def handler(doc: dict) -> dict:
    job = doc["training_job"]
    result = sagemaker_status(job) if job["backend"] == "sagemaker" else ec2_status(job)
    overdue = time.time() - job["started_at"] > doc["training"]["max_wait_seconds"]
    if result["status"] != "Completed" and overdue:
        raise TrainingTimedOut(f"training still {result['status']} after "
                               f"{doc['training']['max_wait_seconds']} s")
    return with_section(doc, "training_job", result)

"""StartEC2Training: launch one instance that trains, uploads, writes a status object and
terminates itself (InstanceInitiatedShutdownBehavior=terminate).

The AMI is an AWS Deep Learning AMI with PyTorch (EC2_AMI_PARAMETER, or the pinned EC2_AMI_ID).
Its root volume is sized for the job: the AMI's root device (DescribeImages) gets a gp3 volume
of max(EC2_ROOT_VOLUME_GB, the AMI snapshot + MIN_FREE_GB), deleted with the instance. IMDSv2 is
required (HttpTokens=required), with a hop limit of 1: only the instance's own processes (the
user data runs on the host, not in a container) can reach the metadata service.

Idempotent: an instance already tagged with this run is reused (a ClientToken alone is not
enough: it expires and the local cloud ignores it).
"""

from __future__ import annotations

import time

from handlers import registry
from handlers.common import client, logger, setting, state_handler, training_hyperparameters, with_section
from handlers.ec2_user_data import build_user_data
from handlers.naming import instance_name, run_instance_filter, run_tags

MIN_FREE_GB = 20  # scratch the job needs beyond the AMI: dataset copy, checkpoints, model, logs
DEFAULT_ROOT_VOLUME_GB = 100
LIVE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down"]


def existing_instance(run_id: str) -> str | None:
    reservations = client("ec2").describe_instances(Filters=[
        run_instance_filter([run_id]),
        {"Name": "instance-state-name", "Values": LIVE_STATES},
    ])["Reservations"]
    instances = [i for r in reservations for i in r["Instances"]]
    return instances[0]["InstanceId"] if instances else None


def image_id() -> str:
    pinned = setting("EC2_AMI_ID", "")
    if pinned:
        return pinned
    parameter = setting("EC2_AMI_PARAMETER")
    return client("ssm").get_parameter(Name=parameter)["Parameter"]["Value"]


def root_volume(image: str) -> dict:
    """The block device mapping that resizes the AMI's root volume (gp3, deleted with the instance)."""
    images = client("ec2").describe_images(ImageIds=[image])["Images"]
    if not images:
        raise RuntimeError(f"AMI {image} not found in this region")
    device = images[0]["RootDeviceName"]
    snapshot_gb = max([m["Ebs"].get("VolumeSize", 0) for m in images[0].get("BlockDeviceMappings", [])
                       if m.get("DeviceName") == device and "Ebs" in m] or [0])
    size = max(int(setting("EC2_ROOT_VOLUME_GB", str(DEFAULT_ROOT_VOLUME_GB))), snapshot_gb + MIN_FREE_GB)
    return {"DeviceName": device,
            "Ebs": {"VolumeSize": size, "VolumeType": "gp3", "DeleteOnTermination": True}}


def run_uris(doc: dict) -> dict[str, str]:
    base = f"s3://{doc['bucket']}/{doc['model_prefix']}{doc['run_id']}"
    return {"model": f"{base}/output", "status": f"{base}/status.json"}


def launch(doc: dict, uris: dict[str, str], baseline: str | None) -> str:
    # --baseline: the live model, evaluated beside the candidate on the same test split (the gate).
    hyperparameters = {**training_hyperparameters(doc["training"]),
                       **({"baseline": baseline} if baseline else {})}
    user_data = build_user_data(
        code_uri=setting("EC2_CODE_URI"), data_uri=doc["dataset"]["s3_uri"],
        model_uri=uris["model"], status_uri=uris["status"],
        hyperparameters=hyperparameters, region=setting("AWS_REGION", "us-east-1"),
    )
    tags = [*run_tags(doc["run_id"]), {"Key": "Name", "Value": instance_name(doc["run_id"])},
            {"Key": "stepml:purpose", "Value": "training"}]
    image = image_id()
    response = client("ec2").run_instances(
        ImageId=image, InstanceType=doc["training"]["ec2_instance_type"], MinCount=1, MaxCount=1,
        UserData=user_data, ClientToken=doc["run_id"][:64],
        IamInstanceProfile={"Name": setting("EC2_INSTANCE_PROFILE")},
        InstanceInitiatedShutdownBehavior="terminate",
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
        BlockDeviceMappings=[root_volume(image)],
        MetadataOptions={"HttpTokens": "required", "HttpEndpoint": "enabled",
                         "HttpPutResponseHopLimit": 1},
    )
    return response["Instances"][0]["InstanceId"]


@state_handler
def handler(doc: dict) -> dict:
    uris = run_uris(doc)
    baseline = registry.live_model_data(doc["endpoint"]["name"])
    instance_id = existing_instance(doc["run_id"])
    if instance_id:
        logger.info("training instance already launched; reusing", instance_id=instance_id)
    else:
        instance_id = launch(doc, uris, baseline)
    doc = with_section(doc, "baseline", {"model_data": baseline})
    return with_section(doc, "training_job", {
        "backend": "ec2", "instance_id": instance_id, "status": "InProgress",
        "status_uri": uris["status"], "model_uri": uris["model"],
        "started_at": doc.get("training_job", {}).get("started_at", time.time()),
    })

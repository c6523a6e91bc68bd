"""CreateModel: a SageMaker model from the trained artifact and the PyTorch serving container."""

from __future__ import annotations

from handlers.common import (
    check_reusable,
    client,
    sagemaker_describe,
    setting,
    state_handler,
    with_section,
)
from handlers.naming import resource_name, run_tags


@state_handler
def handler(doc: dict) -> dict:
    name = resource_name(doc["run_id"])
    artifact = doc["training_job"]["model_artifact"]
    existing = sagemaker_describe("describe_model", ModelName=name)
    if existing is not None:  # a retry or redrive of this run: the same model, or refuse
        data = existing.get("PrimaryContainer", {}).get("ModelDataUrl")
        check_reusable("model", name, existing["ModelArn"], doc["run_id"],
                       None if data == artifact else f"model data {data}, not {artifact}")
    else:
        client("sagemaker").create_model(
            ModelName=name,
            ExecutionRoleArn=setting("SAGEMAKER_ROLE_ARN"),
            PrimaryContainer={
                "Image": setting("INFERENCE_IMAGE_URI"),
                "ModelDataUrl": artifact,
                # The PyTorch inference container's contract: the program in model.tar.gz's
                # code/, which the container serves from /opt/ml/model/code.
                "Environment": {
                    "SAGEMAKER_PROGRAM": setting("INFERENCE_PROGRAM", "serve_entry.py"),
                    "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
                    "SAGEMAKER_REGION": setting("AWS_REGION", "us-east-1"),
                    "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
                },
            },
            Tags=run_tags(doc["run_id"]),
        )
    return with_section(doc, "model", {"name": name})

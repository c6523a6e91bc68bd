"""CreateModel: a SageMaker model from the trained artifact and the PyTorch serving container."""

from __future__ import annotations

from handlers.common import client, sagemaker_describe, setting, state_handler, with_section


@state_handler
def handler(doc: dict) -> dict:
    name = doc["run_id"][:63]
    if sagemaker_describe("describe_model", ModelName=name) is None:
        client("sagemaker").create_model(
            ModelName=name,
            ExecutionRoleArn=setting("SAGEMAKER_ROLE_ARN"),
            PrimaryContainer={
                "Image": setting("INFERENCE_IMAGE_URI"),
                "ModelDataUrl": doc["training_job"]["model_artifact"],
                # The PyTorch inference container's contract: the program in model.tar.gz's
                # code/, which the container serves from /opt/ml/model/code.
                "Environment": {
                    "SAGEMAKER_PROGRAM": setting("INFERENCE_PROGRAM", "serve_entry.py"),
                    "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
                    "SAGEMAKER_REGION": setting("AWS_REGION", "us-east-1"),
                    "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
                },
            },
            Tags=[{"Key": "stepml:run-id", "Value": doc["run_id"]}],
        )
    return with_section(doc, "model", {"name": name})

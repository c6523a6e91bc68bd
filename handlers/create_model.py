"""CreateModel: a SageMaker model from the trained artifact and the PyTorch serving container."""

from __future__ import annotations

from botocore.exceptions import ClientError

from handlers.common import client, error_code, setting, state_handler, with_section


def model_exists(name: str) -> bool:
    try:
        client("sagemaker").describe_model(ModelName=name)
        return True
    except ClientError as error:
        if error_code(error) == "ValidationException":
            return False
        raise


@state_handler
def handler(doc: dict) -> dict:
    name = doc["run_id"][:63]
    if not model_exists(name):
        client("sagemaker").create_model(
            ModelName=name,
            ExecutionRoleArn=setting("SAGEMAKER_ROLE_ARN"),
            PrimaryContainer={
                "Image": setting("INFERENCE_IMAGE_URI"),
                "ModelDataUrl": doc["training_job"]["model_artifact"],
                "Environment": {
                    "SAGEMAKER_PROGRAM": setting("INFERENCE_PROGRAM", "serve_entry.py"),
                    "SAGEMAKER_SUBMIT_DIRECTORY": setting("INFERENCE_SOURCE_URI"),
                    "SAGEMAKER_REGION": setting("AWS_REGION", "us-east-1"),
                },
            },
            Tags=[{"Key": "stepml:run-id", "Value": doc["run_id"]}],
        )
    return with_section(doc, "model", {"name": name})

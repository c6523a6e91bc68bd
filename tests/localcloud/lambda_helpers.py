"""Helpers to deploy throwaway Lambda functions onto a running local cloud."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

ROLE_POLICY = json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                   "Action": "sts:AssumeRole"}],
})


def zip_files(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def lambda_role(cloud: Any, name: str = "test-lambda-role") -> str:
    iam = cloud.boto3_client("iam")
    try:
        return iam.get_role(RoleName=name)["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        return iam.create_role(RoleName=name, AssumeRolePolicyDocument=ROLE_POLICY)["Role"]["Arn"]


def create_function(cloud: Any, name: str, source: str, handler: str = "app.handler",
                    timeout: int = 5, files: dict[str, str] | None = None, **extra: Any) -> dict:
    client = cloud.boto3_client("lambda")
    package = zip_files(files if files is not None else {"app.py": source})
    return client.create_function(
        FunctionName=name, Runtime="python3.11", Role=lambda_role(cloud), Handler=handler,
        Code={"ZipFile": package}, Timeout=timeout, **extra,
    )


def invoke(cloud: Any, name: str, event: Any = None, **extra: Any) -> tuple[dict, Any]:
    response = cloud.boto3_client("lambda").invoke(
        FunctionName=name, Payload=json.dumps(event or {}), **extra
    )
    return response, json.loads(response["Payload"].read())

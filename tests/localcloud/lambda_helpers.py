"""Helpers to deploy throwaway Lambda functions onto a running local cloud."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

from tests.roles import service_role


def zip_files(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def lambda_role(cloud: Any, name: str = "test-lambda-role") -> str:
    return service_role(cloud, name, "lambda.amazonaws.com")


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

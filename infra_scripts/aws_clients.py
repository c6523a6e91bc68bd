"""The operator side's one boto3 session and client factory (deploy, run, executions, console).

Region: the explicit one (``--region``), else boto3's standard resolution
(AWS_DEFAULT_REGION, the profile's region), else the pipeline config's region. Against a local
endpoint with no credentials configured, the local cloud's fixed ones (botocore refuses to sign
without some). The endpoint is only what the caller passes (the CLI reads $AWS_ENDPOINT_URL
for its --endpoint-url). Clients are built once per service.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

DEFAULT_REGION = "us-east-1"  # the pipeline config's default region too (statemachine/config.py)


def local_credentials() -> dict[str, str]:
    from infra_scripts.localcloud.core.server import LOCAL_CREDENTIALS

    return {"aws_access_key_id": LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]}


def resolve_session(region: str | None = None, profile: str | None = None,
                    endpoint_url: str | None = None, fallback_region: str = DEFAULT_REGION,
                    force_local_credentials: bool = False) -> boto3.Session:
    base = boto3.Session(profile_name=profile)
    region = region or base.region_name or fallback_region
    if endpoint_url and (force_local_credentials or base.get_credentials() is None):
        return boto3.Session(region_name=region, **local_credentials())
    return boto3.Session(profile_name=profile, region_name=region)


class AwsClients:
    """A session, its region and endpoint, and one cached client per service."""

    def __init__(self, region: str | None = None, endpoint_url: str | None = None,
                 profile: str | None = None, fallback_region: str = DEFAULT_REGION,
                 force_local_credentials: bool = False, session: boto3.Session | None = None) -> None:
        self.endpoint_url = endpoint_url or None
        self.session = session or resolve_session(region, profile, self.endpoint_url, fallback_region,
                                                  force_local_credentials)
        self.region: str = self.session.region_name or fallback_region
        self._clients: dict[str, Any] = {}

    @classmethod
    def for_local_cloud(cls, endpoint_url: str, region: str) -> AwsClients:
        """The local cloud's clients, whatever AWS credentials the shell holds."""
        return cls(region, endpoint_url, force_local_credentials=True)

    @property
    def on_aws(self) -> bool:
        return not self.endpoint_url

    def client(self, service: str, config: Config | None = None) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(
                service, region_name=self.region, endpoint_url=self.endpoint_url, config=config)
        return self._clients[service]

    def partition(self) -> str:
        return self.session.get_partition_for_region(self.region)

"""The operator side's one boto3 session and client factory (deploy, run, executions, console).

Region: the explicit one (``--region``), else boto3's standard resolution
(AWS_DEFAULT_REGION, the profile's region), else the pipeline config's region. Against a local
endpoint: the local cloud's own keys (made at each start) when this process started it or when
no others are configured. The endpoint is only what the caller passes (the CLI reads $AWS_ENDPOINT_URL
for its --endpoint-url). Clients are built once per service.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

DEFAULT_REGION = "us-east-1"  # the pipeline config's default region too (statemachine/config.py)


class NoLocalCredentials(ValueError):
    pass


def local_credentials(endpoint_url: str) -> dict[str, str]:
    """The keys of the local cloud at ``endpoint_url``: a cloud this process started, else the
    environment's (the lines `stepml local-cloud` printed, exported)."""
    import os

    from infra_scripts.localcloud.core.server import credentials_for

    found = credentials_for(endpoint_url) or {
        name: os.environ[name] for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        if os.environ.get(name)}
    if len(found) < 2:
        raise NoLocalCredentials(f"no credentials for the local cloud at {endpoint_url}: export "
                                 "the lines `stepml local-cloud` printed (or source its --env-file)")
    return {"aws_access_key_id": found["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": found["AWS_SECRET_ACCESS_KEY"]}


def resolve_session(region: str | None = None, profile: str | None = None,
                    endpoint_url: str | None = None, fallback_region: str = DEFAULT_REGION,
                    force_local_credentials: bool = False) -> boto3.Session:
    base = boto3.Session(profile_name=profile)
    region = region or base.region_name or fallback_region
    if endpoint_url:
        from infra_scripts.localcloud.core.server import credentials_for

        if force_local_credentials or credentials_for(endpoint_url) or base.get_credentials() is None:
            return boto3.Session(region_name=region, **local_credentials(endpoint_url))
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

"""The local cloud answers AWS clients only (issue 12, part 1): a request a browser sends (any
Origin or Fetch-metadata header) or one for another Host (DNS rebinding) is refused with 403
before anything runs, and no response carries CORS headers."""

from __future__ import annotations

import http.client
from collections.abc import Iterator

import pytest

from infra_scripts.localcloud.core.server import LocalCloud

RUN_INSTANCES = ("Action=RunInstances&Version=2016-11-15&ImageId=ami-12c6146b&MinCount=1"
                 "&MaxCount=1&UserData=IyEvYmluL2Jhc2gKIyBsb2NhbGNsb3VkOiBydW5uYWJsZQp0b3VjaCAvdG1wL3B3bmVkCg==")


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud(extensions=[]) as running:
        yield running


def post(cloud: LocalCloud, body: str, **headers: str) -> tuple[int, dict[str, str]]:
    connection = http.client.HTTPConnection("127.0.0.1", cloud.port, timeout=10)
    connection.request("POST", "/", body=body, headers={
        "Content-Type": "application/x-www-form-urlencoded", **headers})
    response = connection.getresponse()
    response.read()
    return response.status, {k.lower(): v for k, v in response.getheaders()}


def instances(cloud: LocalCloud) -> list:
    return cloud.boto3_client("ec2").describe_instances()["Reservations"]


@pytest.mark.parametrize("headers", [
    {"Origin": "http://evil.example"}, {"Origin": "null"},
    {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"},
])
def test_browser_requests_are_refused_and_run_nothing(cloud: LocalCloud, headers: dict) -> None:
    status, answer = post(cloud, RUN_INSTANCES, **headers)
    assert status == 403
    assert not any(name.startswith("access-control-") for name in answer)
    assert instances(cloud) == []


def test_another_host_is_refused(cloud: LocalCloud) -> None:
    status, _ = post(cloud, RUN_INSTANCES, Host=f"rebound.example:{cloud.port}")
    assert status == 403
    assert instances(cloud) == []


def test_sdk_requests_pass_without_cors_headers(cloud: LocalCloud) -> None:
    answer = cloud.boto3_client("sts").get_caller_identity()
    assert answer["Account"] == cloud.account_id
    headers = {k.lower() for k in answer["ResponseMetadata"]["HTTPHeaders"]}
    assert not any(name.startswith("access-control-") for name in headers)
    localhost = cloud.url.replace("127.0.0.1", "localhost")  # moto's interpreter uses this name
    import boto3

    sts = boto3.client("sts", endpoint_url=localhost, region_name="us-east-1",
                       aws_access_key_id=cloud.credentials["AWS_ACCESS_KEY_ID"],
                       aws_secret_access_key=cloud.credentials["AWS_SECRET_ACCESS_KEY"])
    assert sts.get_caller_identity()["Account"] == cloud.account_id

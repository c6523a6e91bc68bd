"""Every request to the local cloud is SigV4-signed by a key it knows (issue 12, part 1): the
signature is recomputed with botocore's signer; unsigned, unknown-key, wrong-signature,
skewed and expired-session requests get AWS's codes and a 403; IAM users' keys and STS
sessions sign like the administrator's."""

from __future__ import annotations

import datetime
import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from infra_scripts.localcloud.core.server import LocalCloud

EXTENSIONS = ["infra_scripts.localcloud.iam.signatures"]


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud(extensions=EXTENSIONS) as running:
        yield running


def client(cloud: LocalCloud, service: str, key: str | None = None, secret: str | None = None,
           token: str | None = None, **options: object) -> object:
    return boto3.session.Session().client(
        service, endpoint_url=cloud.url, region_name=cloud.region,
        aws_access_key_id=key or cloud.credentials["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=secret or cloud.credentials["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=token, config=Config(retries={"total_max_attempts": 1}, **options))


def code_of(call: object) -> tuple[int, str]:
    with pytest.raises(ClientError) as refused:
        call()
    answer = refused.value.response
    return answer["ResponseMetadata"]["HTTPStatusCode"], answer["Error"]["Code"]


def test_the_administrators_keys_sign_every_protocol(cloud: LocalCloud) -> None:
    s3 = client(cloud, "s3")
    s3.create_bucket(Bucket="signed")
    s3.put_object(Bucket="signed", Key="a b/c+d.txt", Body=b"x" * 100)  # spaces, plus: S3's raw path
    assert s3.get_object(Bucket="signed", Key="a b/c+d.txt")["Body"].read() == b"x" * 100
    assert client(cloud, "sts").get_caller_identity()["Account"] == cloud.account_id  # query
    assert client(cloud, "sagemaker").list_endpoints()["Endpoints"] == []  # JSON
    assert client(cloud, "lambda").list_functions()["Functions"] == []  # REST-JSON
    assert client(cloud, "ec2").describe_instances()["Reservations"] == []  # EC2 query


def test_unsigned_requests_are_refused(cloud: LocalCloud) -> None:
    request = urllib.request.Request(cloud.url + "/", data=b"Action=GetCallerIdentity&Version=2011-06-15")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403 and b"<Code>MissingAuthenticationToken</Code>" in refused.value.read()
    request = urllib.request.Request(cloud.url + "/", data=b"{}", headers={
        "X-Amz-Target": "SageMaker.ListEndpoints", "Content-Type": "application/x-amz-json-1.1"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert json.loads(refused.value.read())["__type"] == "MissingAuthenticationTokenException"


@pytest.mark.parametrize(("service", "call", "code"), [
    ("sagemaker", lambda c: c.list_endpoints(), "UnrecognizedClientException"),
    ("sts", lambda c: c.get_caller_identity(), "InvalidClientTokenId"),
    ("s3", lambda c: c.list_buckets(), "InvalidAccessKeyId"),
])
def test_an_unknown_key_is_refused(cloud: LocalCloud, service: str, call: object, code: str) -> None:
    stranger = client(cloud, service, key="AKIAIOSFODNN7EXAMPLE", secret="wJalrXUtnFEMI/K7MDENG")
    assert code_of(lambda: call(stranger)) == (403, code)


@pytest.mark.parametrize(("service", "call", "code"), [
    ("sagemaker", lambda c: c.list_endpoints(), "InvalidSignatureException"),
    ("sts", lambda c: c.get_caller_identity(), "SignatureDoesNotMatch"),
    ("s3", lambda c: c.list_buckets(), "SignatureDoesNotMatch"),
])
def test_a_wrong_secret_is_refused(cloud: LocalCloud, service: str, call: object, code: str) -> None:
    forger = client(cloud, service, secret="not-the-secret")
    assert code_of(lambda: call(forger)) == (403, code)


def test_a_request_signed_20_minutes_ago_is_refused(cloud: LocalCloud,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import botocore.auth

    past = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) - datetime.timedelta(minutes=20)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: past)
    assert code_of(lambda: client(cloud, "sagemaker").list_endpoints()) == (403, "InvalidSignatureException")


def test_sts_sessions_sign_and_expire(cloud: LocalCloud) -> None:
    iam = client(cloud, "iam")
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "sts:AssumeRole",
        "Principal": {"AWS": f"arn:aws:iam::{cloud.account_id}:root"}}]}
    role = iam.create_role(RoleName="signer", AssumeRolePolicyDocument=json.dumps(trust))
    keys = client(cloud, "sts").assume_role(RoleArn=role["Role"]["Arn"], RoleSessionName="ses")["Credentials"]
    session = client(cloud, "sts", keys["AccessKeyId"], keys["SecretAccessKey"], keys["SessionToken"])
    assert "assumed-role/signer/ses" in session.get_caller_identity()["Arn"]
    wrong_token = client(cloud, "sts", keys["AccessKeyId"], keys["SecretAccessKey"], "forged")
    assert code_of(wrong_token.get_caller_identity) == (403, "InvalidClientTokenId")
    from moto.sts.models import sts_backends

    for assumed in sts_backends[cloud.account_id]["global"].assumed_roles:
        if assumed.access_key_id == keys["AccessKeyId"]:
            assumed.expiration = datetime.datetime(2020, 1, 1)
    assert code_of(session.get_caller_identity) == (403, "ExpiredToken")


def test_presigned_urls_are_checked(cloud: LocalCloud) -> None:
    s3 = client(cloud, "s3", signature_version="s3v4")
    s3.create_bucket(Bucket="presigned")
    s3.put_object(Bucket="presigned", Key="k", Body=b"xyz")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "presigned", "Key": "k"})
    assert urllib.request.urlopen(url, timeout=10).read() == b"xyz"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url.replace("/k?", "/other?"), timeout=10)
    assert refused.value.code == 403 and b"SignatureDoesNotMatch" in refused.value.read()

"""Per-request cost of the local cloud's identity checks (issue 12): SigV4 verification
(``iam/signatures.py``) and, for an IAM user's key, policy evaluation (``iam/enforcement.py``).

Requests are signed by botocore exactly as a client would sign them (a SageMaker
DescribeEndpoint, JSON protocol, and an S3 PutObject of 64 KiB), turned into WSGI requests
and checked in-process, 2,000 times each; p50 and p99 in milliseconds. Baseline in the same run:
werkzeug building the request object alone.

Run: .venv/bin/python -m benchmarks.bench_signatures
"""

from __future__ import annotations

import io
import json
import os
import time
from typing import Any

from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from benchmarks.machine import percentile, write_report
from infra_scripts.localcloud.core.server import LocalCloud, LocalCloudSettings
from infra_scripts.localcloud.iam import enforcement, signatures

RUNS = 2000


def signed_environ(cloud: LocalCloud, keys: dict[str, str], service: str, method: str, path: str,
                   body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    from botocore.auth import S3SigV4Auth, SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method=method, url=f"{cloud.url}{path}", data=body, headers=dict(headers))
    signer = S3SigV4Auth if service == "s3" else SigV4Auth
    signer(Credentials(keys["AWS_ACCESS_KEY_ID"], keys["AWS_SECRET_ACCESS_KEY"],
                       keys.get("AWS_SESSION_TOKEN")), service,
           cloud.region).add_auth(request)
    return EnvironBuilder(path=path, method=method, data=body, headers=dict(request.headers),
                          base_url=cloud.url).get_environ()


def timed(check: Any, environ: dict[str, Any]) -> list[float]:
    samples = []
    for _ in range(RUNS):
        copy = dict(environ)
        copy["wsgi.input"] = io.BytesIO(environ["stepml.body"])
        started = time.perf_counter()
        check(Request(copy))
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def summary(samples: list[float]) -> dict[str, float]:
    return {"p50_ms": round(percentile(samples, 0.5), 3), "p99_ms": round(percentile(samples, 0.99), 3)}


def hosting_role_session(cloud: LocalCloud) -> dict[str, str]:
    """An STS session of the stack's hosting-handlers role with its deployed policy (13
    statements, conditions included): what a real handler's request is evaluated against."""
    from infra_scripts import policies
    from statemachine.config import PipelineConfig

    config, iam = PipelineConfig(endpoint_name="stepml-classifier"), cloud.boto3_client("iam")
    name = f"{config.prefix}-handlers-hosting"
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(
        policies.trust("lambda.amazonaws.com")))["Role"]["Arn"]
    document = policies.concrete_policies(config, cloud.account_id)["handlers-hosting"]
    iam.put_role_policy(RoleName=name, PolicyName=name, PolicyDocument=json.dumps(document))
    return cloud.role_env(arn, "bench")


def main() -> None:
    settings = LocalCloudSettings(options={"iam": {"enforce": True}})
    with LocalCloud(settings=settings, extensions=[]) as cloud:
        iam = cloud.boto3_client("iam")
        iam.create_user(UserName="bench")
        iam.put_user_policy(UserName="bench", PolicyName="p", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sagemaker:*",
                                                    "Resource": "*"}]}))
        key = iam.create_access_key(UserName="bench")["AccessKey"]
        user = {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
        hosting = hosting_role_session(cloud)
        body = json.dumps({"EndpointName": "stepml-classifier"}).encode()
        json_headers = {"X-Amz-Target": "SageMaker.DescribeEndpoint",
                        "Content-Type": "application/x-amz-json-1.1"}
        blob = os.urandom(64 * 1024)
        checker = enforcement.IamEnforcement(cloud)
        cases = {
            "DescribeEndpoint (JSON), administrator": ("sagemaker", "POST", "/", body, json_headers,
                                                       cloud.credentials),
            "PutObject 64 KiB (S3), administrator": ("s3", "PUT", "/bucket/key", blob,
                                                     {"Content-Type": "application/octet-stream"},
                                                     cloud.credentials),
            "DescribeEndpoint (JSON), IAM user": ("sagemaker", "POST", "/", body, json_headers, user),
            "DescribeEndpoint (JSON), the hosting handlers' role session (the stack's policy)": (
                "sagemaker", "POST", "/", body, json_headers, hosting),
        }
        results = {}
        for name, (service, method, path, payload, headers, keys) in cases.items():
            environ = signed_environ(cloud, keys, service, method, path, payload, headers)
            environ["stepml.body"] = payload
            verdict = signatures.refusal(cloud, Request({**environ, "wsgi.input": io.BytesIO(payload)}))
            assert verdict is None, f"{name}: the benchmark's own request was refused: {verdict}"
            allowed = Request({**environ, "wsgi.input": io.BytesIO(payload)})
            assert not checker.denies(allowed), f"{name}: its policy denies it (would time a deny)"
            results[name] = {
                "request object only": summary(timed(lambda request: None, environ)),
                "signature": summary(timed(lambda request: signatures.refusal(cloud, request), environ)),
                "signature + policy": summary(timed(
                    lambda request: (signatures.refusal(cloud, request), checker.denies(request)),
                    environ)),
            }
    lines = ["| request | request object only | signature check | signature + policy evaluation |",
             "|---|---|---|---|"]
    for name, row in results.items():
        cells = [f"{row[k]['p50_ms']} / {row[k]['p99_ms']} ms"
                 for k in ("request object only", "signature", "signature + policy")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"p50 / p99 of {RUNS} checks each, in-process; load average "
              f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}."]
    path = write_report("signatures", {"results": results, "runs": RUNS}, "\n".join(lines))
    print(path.read_text())


if __name__ == "__main__":
    main()

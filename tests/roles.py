"""Roles for stand-in processes in the local cloud's tests.

IAM enforcement is on by default, so a Lambda function, training job, endpoint or instance a test
starts runs as its role and may do only what that role's policy allows, as on AWS; a role that
does not exist allows nothing. The stack's own roles are held to least privilege elsewhere
(``tests/infra/test_iam_enforcement.py`` and the mutation table in ``tests/e2e``); the stand-ins
of the component tests get ``TEST_ACCESS``: the services those tests exercise, nothing else.
"""

from __future__ import annotations

import json
from typing import Any

TEST_ACCESS = {"Version": "2012-10-17", "Statement": [{
    "Sid": "StandInsOfComponentTests", "Effect": "Allow", "Resource": "*",
    "Action": ["s3:*", "logs:*", "cloudwatch:PutMetricData", "sagemaker:Describe*",
               "lambda:GetFunction*", "lambda:InvokeFunction", "states:Describe*"]}]}


def trust(service: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]})


def service_role(cloud: Any, name: str, service: str, policy: dict | None = None) -> str:
    """The role ``name`` (made once per cloud) that ``service`` assumes, with ``policy`` inline
    (``TEST_ACCESS`` by default); returns its ARN."""
    iam = cloud.boto3_client("iam")
    try:
        arn = iam.get_role(RoleName=name)["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust(service))["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName="test-access",
                        PolicyDocument=json.dumps(policy or TEST_ACCESS))
    return arn

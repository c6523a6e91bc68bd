"""``stepml preflight``: will this config deploy and run in this account and region? Checked
before anything is created (``stepml deploy`` and ``stepml run --aws`` run it first).

Each check gives what it found, what the config needs, pass/fail, and the fix: the exact quota
request or config change. A blocking failure makes the command exit non-zero; a warning (a
tuning run or a blue/green update past the quota) does not.

Rules, from AWS's documentation:
- Lambda keeps 100 concurrency unreserved, or all of an account limit below 100 ("You can
  reserve up to the Unreserved account concurrency value minus 100",
  https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html; new accounts
  are refused at "[10]"). Provisioned concurrency comes out of the reservation when there is
  one, else out of the unreserved pool.
- SageMaker instance quotas are per instance type and use ("<type> for training job usage",
  "<type> for endpoint usage", https://docs.aws.amazon.com/general/latest/gr/sagemaker.html);
  a type the region does not offer has no quota there. An endpoint update is blue/green: the
  new fleet starts beside the old one, which may be scaled out to ``autoscaling_max``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from handlers.quotas import LAMBDA_CONCURRENCY_QUOTA
from infra_scripts.cfn.validation import bucket_name_problem

UNRESERVED_MINIMUM = 100
TUNING_PARALLEL = 2  # the README's example tuning input; a warning only


@dataclass(frozen=True)
class Check:
    name: str
    found: str
    needed: str
    ok: bool
    fix: str = ""
    blocking: bool = True

    @property
    def verdict(self) -> str:
        return "pass" if self.ok else ("FAIL" if self.blocking else "warn")


def quota_request(service: str, code: str, value: float) -> str:
    return (f"aws service-quotas request-service-quota-increase --service-code {service} "
            f"--quota-code {code} --desired-value {value:g}")


class Preflight:
    """The checks, over a Deployer (its config, clients and region facts)."""

    def __init__(self, deployer: Any) -> None:
        self.deployer, self.config = deployer, deployer.config
        self._sagemaker_quotas: dict[str, dict] | None = None

    def client(self, service: str) -> Any:
        return self.deployer.client(service)

    def run(self) -> list[Check]:
        checks: list[Check] = []
        for step in (self.settings, self.identity, self.lambda_concurrency, self.sagemaker_instances,
                     self.ec2_instance_type, self.images, self.bucket, self.ami):
            try:
                checks.extend(step())
            except (ClientError, BotoCoreError) as error:
                checks.append(Check(step.__name__.replace("_", " "), f"error: {error}", "an answer",
                                    False, "check credentials, region and permissions"))
        return checks

    # -- the checks ---------------------------------------------------------------------------
    def settings(self) -> Iterator[Check]:
        from infra_scripts.cfn.validation import DeployError, check_config

        try:
            check_config(self.config)
        except DeployError as error:
            yield Check("config", str(error), "valid settings", False, "fix the settings named")
            return
        yield Check("config", "valid", "valid settings", True)

    def identity(self) -> Iterator[Check]:
        caller = self.client("sts").get_caller_identity()
        yield Check("identity", caller["Arn"], "credentials", True)
        regions = self.deployer.session.get_available_regions("sagemaker") or [self.config.region]
        offered = self.config.region in regions or self.deployer.local
        yield Check("region", self.config.region, "a region with SageMaker", offered,
                    "" if offered else f"set region to one of {', '.join(sorted(regions))}")

    def lambda_concurrency(self) -> Iterator[Check]:
        limits = self.client("lambda").get_account_settings()["AccountLimit"]
        limit, unreserved = int(limits["ConcurrentExecutions"]), int(limits["UnreservedConcurrentExecutions"])
        minimum = min(UNRESERVED_MINIMUM, limit)
        ours = self._current_reservation()
        reservable = unreserved + ours - minimum
        reserved, provisioned = self.config.reserved_concurrency, self.config.provisioned_concurrency
        pool = reserved if reserved else reservable  # where provisioned concurrency comes from
        needed = f"reserved {reserved}, provisioned {provisioned}; {minimum} stays unreserved"
        found = f"limit {limit}, unreserved {unreserved}, reservable {max(reservable, 0)}"
        ok = reserved <= reservable and provisioned <= max(pool, 0)
        fix = ""
        if not ok:
            others = limit - unreserved - ours  # other functions' reservations
            raise_to = others + max(reserved, provisioned) + UNRESERVED_MINIMUM
            fixed = max(reservable, 0)
            fix = (f"{quota_request('lambda', LAMBDA_CONCURRENCY_QUOTA, raise_to)}; or set "
                   + (f"reserved_concurrency = {fixed} and provisioned_concurrency = "
                      f"{min(provisioned, fixed)}" if fixed else
                      "reserved_concurrency = 0 and provisioned_concurrency = 0 (no reservation)"))
        yield Check("Lambda concurrency (predict)", found, needed, ok, fix)

    def _current_reservation(self) -> int:
        name = f"{self.config.prefix}-predict"
        try:
            answer = self.client("lambda").get_function_concurrency(FunctionName=name)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
            return 0
        return int(answer.get("ReservedConcurrentExecutions") or 0)

    def sagemaker_quotas(self) -> dict[str, dict]:
        if self._sagemaker_quotas is None:
            quotas: dict[str, dict] = {}
            for operation in ("list_aws_default_service_quotas", "list_service_quotas"):
                for page in self.client("service-quotas").get_paginator(operation).paginate(
                        ServiceCode="sagemaker"):
                    quotas.update({q["QuotaName"]: q for q in page["Quotas"]})  # applied win
            self._sagemaker_quotas = quotas
        return self._sagemaker_quotas

    def sagemaker_instances(self) -> Iterator[Check]:
        c = self.config
        if c.training_backend == "sagemaker":
            yield self._quota(f"{c.training_instance_type} for training job usage",
                              c.training_instance_count, "training")
            yield self._quota(f"{c.training_instance_type} for training job usage",
                              c.training_instance_count * TUNING_PARALLEL,
                              f"tuning, {TUNING_PARALLEL} parallel trials", blocking=False)
        yield self._quota(f"{c.endpoint_instance_type} for endpoint usage", c.endpoint_instance_count,
                          "endpoint")
        yield self._quota(f"{c.endpoint_instance_type} for endpoint usage",
                          c.autoscaling_max + c.endpoint_instance_count,
                          "blue/green update beside a scaled-out fleet", blocking=False)

    def _quota(self, name: str, needed: int, use: str, blocking: bool = True) -> Check:
        quota = self.sagemaker_quotas().get(name)
        instance_type = name.split(" ", 1)[0]
        if quota is None:
            return Check(f"SageMaker {instance_type} ({use})", "not offered in this region",
                         f"{needed} instances", False,
                         f"choose an instance type {self.config.region} offers", blocking)
        value = float(quota["Value"])
        ok = value >= needed
        fix = "" if ok else quota_request("sagemaker", quota["QuotaCode"], needed)
        return Check(f"SageMaker '{name}' ({use})", f"{value:g}", f"{needed}", ok, fix, blocking)

    def ec2_instance_type(self) -> Iterator[Check]:
        if self.config.training_backend != "ec2":
            return
        kind = self.config.ec2_instance_type
        offered = self.client("ec2").describe_instance_type_offerings(
            LocationType="region", Filters=[{"Name": "instance-type", "Values": [kind]}]
        )["InstanceTypeOfferings"]
        yield Check(f"EC2 {kind}", "offered" if offered else "not offered", "offered in the region",
                    bool(offered), "" if offered else "set ec2_instance_type")

    def images(self) -> Iterator[Check]:
        for scope, instance_type in (("training", self.config.training_instance_type),
                                     ("inference", self.config.endpoint_instance_type)):
            yield self._image(scope, instance_type)

    def _image(self, scope: str, instance_type: str) -> Check:
        from infra_scripts.cfn.validation import DeployError

        try:
            uri = self.deployer.dlc_image(scope, instance_type)
        except DeployError as error:
            return Check(f"PyTorch DLC ({scope})", str(error), "an image for the region", False,
                         "choose a region with the PyTorch DLC")
        return Check(f"PyTorch DLC ({scope})", uri, "an image for the region", True)

    def bucket(self) -> Iterator[Check]:
        name = self.config.bucket
        problem = bucket_name_problem(name)
        if problem:
            yield Check("bucket name", name, "a valid S3 bucket name", False, f"set bucket: {problem}")
            return
        try:
            self.client("s3").head_bucket(Bucket=name, ExpectedBucketOwner=self.deployer.account_id())
            found, ok = "exists in this account", True
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            found, ok = (("free: deploy creates it", True) if code in ("404", "NoSuchBucket", "NotFound")
                         else (f"owned by another account ({code})", False))
        yield Check("bucket", f"{name}: {found}", "yours or free", ok,
                    "" if ok else "set bucket to a globally unique name")

    def ami(self) -> Iterator[Check]:
        from infra_scripts.cfn.validation import DeployError

        if self.config.training_backend != "ec2":
            return
        try:
            self.deployer.check_ami()
        except DeployError as error:
            yield Check("EC2 AMI", str(error), "an AMI in the region", False,
                        "set ec2_ami_id or ec2_ami_parameter")
            return
        yield Check("EC2 AMI", self.config.ec2_ami_id or self.config.ec2_ami_parameter,
                    "an AMI in the region", True)


def failed(checks: list[Check]) -> list[Check]:
    return [check for check in checks if not check.ok and check.blocking]


def table_rows(checks: list[Check]) -> list[tuple[str, str, str, str, str]]:
    return [(c.name, _short(c.found), c.needed, c.verdict, c.fix) for c in checks]


def _short(text: str, width: int = 70) -> str:
    text = re.sub(r"\s+", " ", text)
    return text if len(text) <= width else text[:width - 1] + "…"



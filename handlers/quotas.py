"""Quota refusals (SageMaker ResourceLimitExceeded, Lambda's unreserved-concurrency minimum,
EC2's vCPU limit) as QuotaExceeded: a named error the state machine catches into Cleanup, whose
message says which quota to raise and how."""

from __future__ import annotations

import re

from botocore.exceptions import ClientError

from handlers.errors import QuotaExceeded

_SAGEMAKER_QUOTA = re.compile(r"service limit '([^']+)'")
LAMBDA_CONCURRENCY_QUOTA = "L-B99A9384"  # Lambda "Concurrent executions"
# EC2 "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances" (vCPUs)
EC2_STANDARD_VCPU_QUOTA = "L-1216C47A"


def quota_exceeded(error: ClientError) -> QuotaExceeded | None:
    """A quota refusal as QuotaExceeded naming the quota and the request that raises it."""
    code = error.response.get("Error", {}).get("Code", "")
    message = error.response.get("Error", {}).get("Message", "")
    if code == "ResourceLimitExceeded":
        found = _SAGEMAKER_QUOTA.search(message)
        name = found.group(1) if found else "the SageMaker quota named above"
        return QuotaExceeded(
            f"{message} Raise '{name}': find its code with `aws service-quotas list-service-quotas "
            f"--service-code sagemaker --query \"Quotas[?QuotaName=='{name}'].QuotaCode\"`, then "
            "`aws service-quotas request-service-quota-increase --service-code sagemaker "
            "--quota-code CODE --desired-value N` (`stepml preflight` prints both).")
    if code == "InvalidParameterValueException" and "UnreservedConcurrentExecution" in message:
        return QuotaExceeded(
            f"{message} Lambda's 'Concurrent executions' quota ({LAMBDA_CONCURRENCY_QUOTA}) leaves "
            "nothing to reserve: `aws service-quotas request-service-quota-increase --service-code "
            f"lambda --quota-code {LAMBDA_CONCURRENCY_QUOTA} --desired-value N` (N ≥ reserved + 100), "
            "or deploy with reserved_concurrency = 0 and provisioned_concurrency = 0 (no reservation).")
    if code in ("VcpuLimitExceeded", "InstanceLimitExceeded"):
        return QuotaExceeded(
            f"{message} Raise EC2's on-demand vCPU quota ({EC2_STANDARD_VCPU_QUOTA}): `aws "
            "service-quotas request-service-quota-increase --service-code ec2 --quota-code "
            f"{EC2_STANDARD_VCPU_QUOTA} --desired-value N`.")
    return None

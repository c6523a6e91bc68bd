"""Account profiles: the quotas the local cloud's account has, so a new AWS account's limits can
be rehearsed here (``stepml local-cloud --account-profile new``, config ``account_profile``).

``default`` is a long-standing account: Lambda's documented default of 1,000 concurrent
executions and SageMaker instance quotas generous enough that nothing here hits them.

``new`` is a new account as AWS documents and users report it:
- Lambda: "New AWS accounts have reduced concurrency and memory quotas"
  (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html); the value seen in
  new accounts is 10, and reserving then fails with "… below its minimum value of [10]"
  (e.g. awslabs/fhir-works-on-aws-deployment#691, DataDog/datadog-serverless-functions#621).
- SageMaker: per-instance-type quotas start at 0 for most types ("my newly created account has
  every instance type … limited to 0", aws/amazon-sagemaker-examples#593; "'ml.m4.xlarge for
  endpoint usage' is 0 Instances" in a new account, awsdocs/amazon-sagemaker-developer-guide#70),
  and "Number of instances across all training jobs" is 4 (same report).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

TRAINING_USAGE = "{} for training job usage"
ENDPOINT_USAGE = "{} for endpoint usage"
ALL_TRAINING_INSTANCES = "Number of instances across all training jobs"
LAMBDA_CONCURRENCY = "Concurrent executions"
LAMBDA_CONCURRENCY_CODE = "L-B99A9384"  # Lambda's real quota code for concurrent executions
UNRESERVED_MINIMUM = 100  # Lambda keeps this much unreserved, or all of a smaller account limit

# The SageMaker instance types the local cloud lists quotas for (what the config may ask for).
INSTANCE_TYPES = (
    "ml.t3.medium", "ml.m5.large", "ml.m5.xlarge", "ml.m5.2xlarge", "ml.c5.large", "ml.c5.xlarge",
    "ml.c5.2xlarge", "ml.c5.4xlarge", "ml.g4dn.xlarge", "ml.g5.xlarge", "ml.p3.2xlarge",
)


@dataclass(frozen=True)
class AccountProfile:
    name: str
    lambda_concurrency: int
    training_instances: int  # per instance type
    endpoint_instances: int  # per instance type
    all_training_instances: int
    overrides: dict[str, int] = field(default_factory=dict)  # quota name → value

    def sagemaker_quotas(self) -> dict[str, int]:
        quotas = {ALL_TRAINING_INSTANCES: self.all_training_instances}
        for instance_type in INSTANCE_TYPES:
            quotas[TRAINING_USAGE.format(instance_type)] = self.training_instances
            quotas[ENDPOINT_USAGE.format(instance_type)] = self.endpoint_instances
        return {**quotas, **self.overrides}

    def unreserved_minimum(self) -> int:
        return min(UNRESERVED_MINIMUM, self.lambda_concurrency)


PROFILES = {
    "default": AccountProfile("default", lambda_concurrency=1000, training_instances=20,
                              endpoint_instances=20, all_training_instances=40),
    "new": AccountProfile("new", lambda_concurrency=10, training_instances=0, endpoint_instances=0,
                          all_training_instances=4,
                          overrides={ENDPOINT_USAGE.format("ml.t3.medium"): 1}),
}


def profile(name: str) -> AccountProfile:
    if name not in PROFILES:
        raise ValueError(f"unknown account profile {name!r}; one of {', '.join(PROFILES)}")
    return PROFILES[name]


def quota_code(service: str, name: str) -> str:
    """A stable L-XXXXXXXX code per quota (AWS's are opaque too; Lambda's is its real one)."""
    if service == "lambda" and name == LAMBDA_CONCURRENCY:
        return LAMBDA_CONCURRENCY_CODE
    return "L-" + hashlib.sha1(f"{service}/{name}".encode()).hexdigest()[:8].upper()

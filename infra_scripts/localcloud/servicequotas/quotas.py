"""Service Quotas for SageMaker and Lambda from the account profile (``core/accounts.py``), and
SageMaker's instance quotas enforced as AWS enforces them.

API: ListServiceQuotas, GetServiceQuota, ListAWSDefaultServiceQuotas and GetAWSDefaultServiceQuota
for ``sagemaker`` and ``lambda`` (moto implements only ``vpc``); other services go to moto.

Enforcement: CreateTrainingJob, CreateHyperParameterTuningJob (its parallel trials), CreateEndpoint
and UpdateEndpoint (blue/green: the new fleet starts beside the old one) are refused with
``ResourceLimitExceeded`` and AWS's wording ("The account-level service limit '<quota>' is N
Instances, with current utilization of U Instances and a request delta of D Instances. …") when
the instances in use plus the request exceed a quota. Not enforced: autoscaling scale-out past
the endpoint quota (AWS fails the scaling activity), spot and processing quotas.
"""

from __future__ import annotations

import json
from typing import Any

from werkzeug.wrappers import Request, Response

from infra_scripts.localcloud.core import accounts
from infra_scripts.localcloud.core.accounts import (
    ALL_TRAINING_INSTANCES,
    ENDPOINT_USAGE,
    LAMBDA_CONCURRENCY,
    TRAINING_USAGE,
    AccountProfile,
)
from infra_scripts.localcloud.core.requests import peek_body, request_region
from infra_scripts.localcloud.core.server import LocalCloud, aws_error, json_response

QUOTAS_PREFIX = "ServiceQuotasV20190624."
SERVICE_NAMES = {"sagemaker": "Amazon SageMaker", "lambda": "AWS Lambda"}
LIVE_ENDPOINT = ("Creating", "InService", "Updating", "SystemUpdating", "RollingBack")
GUARDED = ("SageMaker.CreateTrainingJob", "SageMaker.CreateHyperParameterTuningJob",
           "SageMaker.CreateEndpoint", "SageMaker.UpdateEndpoint")
REFUSAL = "localcloud.quota_refusal"


def account_profile(cloud: LocalCloud) -> AccountProfile:
    return accounts.profile(str(cloud.settings.option("account", "profile", "default")))


def quota_values(profile: AccountProfile, service: str) -> dict[str, int]:
    if service == "lambda":
        return {LAMBDA_CONCURRENCY: profile.lambda_concurrency}
    return profile.sagemaker_quotas()


def quota_document(cloud: LocalCloud, region: str, service: str, name: str, value: int) -> dict:
    code = accounts.quota_code(service, name)
    return {"ServiceCode": service, "ServiceName": SERVICE_NAMES[service], "QuotaCode": code,
            "QuotaName": name, "Value": float(value), "Unit": "None", "Adjustable": True,
            "GlobalQuota": False,
            "QuotaArn": f"arn:aws:servicequotas:{region}:{cloud.account_id}:{service}/{code}"}


def _body(request: Request) -> dict[str, Any]:
    return json.loads(peek_body(request) or b"{}")


def _is_ours(request: Request) -> bool:
    target = request.headers.get("X-Amz-Target", "")
    return target.startswith(QUOTAS_PREFIX) and _body(request).get("ServiceCode") in SERVICE_NAMES


def _answer_quotas(cloud: LocalCloud, request: Request) -> Response:
    operation = request.headers["X-Amz-Target"].removeprefix(QUOTAS_PREFIX)
    body, region = _body(request), request_region(request, cloud.region)
    service = body["ServiceCode"]
    documents = [quota_document(cloud, region, service, name, value)
                 for name, value in quota_values(account_profile(cloud), service).items()]
    if operation in ("ListServiceQuotas", "ListAWSDefaultServiceQuotas"):
        return json_response(200, {"Quotas": documents})
    if operation in ("GetServiceQuota", "GetAWSDefaultServiceQuota"):
        for document in documents:
            if document["QuotaCode"] == body.get("QuotaCode"):
                return json_response(200, {"Quota": document})
        return aws_error(400, "NoSuchResourceException", "The request failed because the "
                         "specified service quota does not exist.")
    return aws_error(400, "InvalidParameterValueException", f"{operation} is not emulated")


# -- SageMaker enforcement ------------------------------------------------------------------------
def training_in_use(backend: Any) -> dict[str, int]:
    """Instances of in-progress training jobs, by instance type."""
    used: dict[str, int] = {}
    for job in backend.training_jobs.values():
        if job.training_job_status == "InProgress":
            config = job.resource_config or {}
            used[config.get("InstanceType", "")] = (used.get(config.get("InstanceType", ""), 0)
                                                    + int(config.get("InstanceCount", 1)))
    return used


def endpoints_in_use(backend: Any) -> dict[str, int]:
    """Instances of live endpoints, by instance type (their current counts where known)."""
    used: dict[str, int] = {}
    for endpoint in backend.endpoints.values():
        if endpoint.endpoint_status not in LIVE_ENDPOINT:
            continue
        for variant in endpoint.production_variants or []:
            kind = variant.get("InstanceType") or _config_type(backend, endpoint, variant)
            count = variant.get("CurrentInstanceCount", variant.get("InitialInstanceCount", 1))
            used[kind] = used.get(kind, 0) + int(count or 0)
    return used


def _config_type(backend: Any, endpoint: Any, variant: dict) -> str:
    config = backend.endpoint_configs.get(endpoint.endpoint_config_name)
    for row in (config.production_variants if config else []):
        if row.get("VariantName") == variant.get("VariantName"):
            return row.get("InstanceType", "")
    return ""


def _exceeded(name: str, limit: int, used: int, delta: int) -> str | None:
    if used + delta <= limit:
        return None
    return (f"The account-level service limit '{name}' is {limit} Instances, with current "
            f"utilization of {used} Instances and a request delta of {delta} Instances. Please use "
            "AWS Service Quotas to request an increase for this quota. If AWS Service Quotas is not "
            "available, contact AWS support to request an increase for this quota.")


def training_refusal(quotas: dict[str, int], backend: Any, resource: dict, parallel: int = 1) -> str | None:
    kind, delta = resource.get("InstanceType", ""), int(resource.get("InstanceCount", 1)) * parallel
    used = training_in_use(backend)
    name = TRAINING_USAGE.format(kind)
    return (_exceeded(name, quotas.get(name, 0), used.get(kind, 0), delta)
            or _exceeded(ALL_TRAINING_INSTANCES, quotas[ALL_TRAINING_INSTANCES],
                         sum(used.values()), delta))


def endpoint_refusal(quotas: dict[str, int], backend: Any, config_name: str) -> str | None:
    config = backend.endpoint_configs.get(config_name)
    if config is None:
        return None  # moto answers the missing config itself
    used = endpoints_in_use(backend)
    wanted: dict[str, int] = {}
    for row in config.production_variants:
        kind = row.get("InstanceType", "")
        wanted[kind] = wanted.get(kind, 0) + int(row.get("InitialInstanceCount") or 0)
    for kind, delta in wanted.items():
        name = ENDPOINT_USAGE.format(kind)
        refusal = _exceeded(name, quotas.get(name, 0), used.get(kind, 0), delta)
        if refusal:
            return refusal
    return None


def refusal(cloud: LocalCloud, request: Request) -> str | None:
    operation = request.headers.get("X-Amz-Target", "").removeprefix("SageMaker.")
    body = _body(request)
    backend = cloud.backend("sagemaker", request_region(request, cloud.region))
    quotas = account_profile(cloud).sagemaker_quotas()
    if operation == "CreateTrainingJob":
        return training_refusal(quotas, backend, body.get("ResourceConfig") or {})
    if operation == "CreateHyperParameterTuningJob":
        definition = body.get("TrainingJobDefinition") or {}
        parallel = int((body.get("HyperParameterTuningJobConfig") or {}).get(
            "ResourceLimits", {}).get("MaxParallelTrainingJobs", 1))
        return training_refusal(quotas, backend, definition.get("ResourceConfig") or {}, parallel)
    return endpoint_refusal(quotas, backend, body.get("EndpointConfigName", ""))


def install(cloud: LocalCloud) -> None:
    account_profile(cloud)  # an unknown profile fails the start, not the first request

    def guarded(request: Request) -> bool:
        if request.headers.get("X-Amz-Target", "") not in GUARDED:
            return False
        request.environ[REFUSAL] = refusal(cloud, request)
        return request.environ[REFUSAL] is not None

    cloud.add_route(_is_ours, lambda request: _answer_quotas(cloud, request))
    cloud.add_route(guarded, lambda request: aws_error(400, "ResourceLimitExceeded",
                                                       request.environ[REFUSAL]))

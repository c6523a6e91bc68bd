"""What a request asks IAM: its action, the real ARN of each resource it touches, and the
condition keys AWS sets for it.

One request can need several authorizations, as on AWS: ``CreateTrainingJob`` also needs
``iam:PassRole`` on its role (with ``iam:PassedToService``); ``RunInstances`` is authorized on the
instance, the image, the subnet, the network interface, the security group and the volume, plus
``iam:PassRole`` for the instance profile's role and ``ec2:CreateTags`` (``ec2:CreateAction``) when
it tags at launch; a target-tracking ``PutScalingPolicy`` needs the CloudWatch alarm actions
Application Auto Scaling performs for the caller; ``RegisterScalableTarget`` needs
``iam:CreateServiceLinkedRole`` while the service-linked role does not exist. Condition keys: the
``aws:RequestTag/*`` and ``aws:TagKeys`` of a create, the ``aws:ResourceTag/*`` of an existing
resource (from moto's own records), ``ec2:InstanceProfile``, ``s3:prefix``,
``application-autoscaling:*``, ``cloudwatch:namespace``, ``iam:AWSServiceName``.

``identify`` answers ``None`` for a request it cannot name: the caller denies it (fail closed).
Sources: the Service Authorization Reference pages of each service (actions, resource types,
condition keys): https://docs.aws.amazon.com/service-authorization/latest/reference/
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, unquote

from werkzeug.wrappers import Request

from infra_scripts.localcloud.autoscaling.controller import LINKED_ROLES
from infra_scripts.localcloud.core.requests import CredentialScope as Signed
from infra_scripts.localcloud.core.requests import peek_body
from infra_scripts.localcloud.iam.evaluation import AuthRequest

Context = dict[str, Any]

TARGET_TRACKING_ALARM_ACTIONS = ("cloudwatch:PutMetricAlarm", "cloudwatch:DescribeAlarms",
                                 "cloudwatch:DeleteAlarms")


class Target:
    """The request being named: its signature scope, account, and parsed bodies (lazily)."""

    def __init__(self, request: Request, signed: Signed, account: str) -> None:
        self.request, self.signed, self.account = request, signed, account

    def arn(self, service: str, resource: str, region: str | None = None,
            account: str | None = None) -> str:
        region = self.signed.region if region is None else region
        account = self.account if account is None else account
        return f"arn:aws:{service}:{region}:{account}:{resource}"

    def json(self) -> dict:
        try:
            body = json.loads(peek_body(self.request) or b"{}")
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    def form(self) -> dict[str, str]:
        """Query-protocol parameters (EC2, IAM, STS), from the body and the query string."""
        parsed = parse_qs(peek_body(self.request).decode("utf-8", "replace"))
        values = {key: items[0] for key, items in parsed.items()}
        values.update({key: value for key, value in self.request.args.items()})
        return values

    def backend(self, service: str, region: str | None = None) -> Any:
        from moto.backends import get_backend

        backends = get_backend(service)[self.account]
        return backends["global" if service == "iam" else region or self.signed.region]

    def target_operation(self, prefix: str) -> str | None:
        target = self.request.headers.get("X-Amz-Target", "")
        return target.split(".", 1)[1] if target.startswith(prefix + ".") else None


# -- tags as condition keys -------------------------------------------------------------------------
def request_tags(tags: list[dict] | dict | None) -> Context:
    """aws:RequestTag/<key> for each tag a create carries, and aws:TagKeys (multivalued)."""
    pairs = tags.items() if isinstance(tags, dict) else (
        (str(t.get("Key")), str(t.get("Value", ""))) for t in tags or [] if isinstance(t, dict))
    context: Context = {f"aws:RequestTag/{key}": value for key, value in pairs}
    if context:
        context["aws:TagKeys"] = [key.split("/", 1)[1] for key in context]
    return context


def resource_tags(pairs: list[dict] | dict | None) -> Context:
    items = pairs.items() if isinstance(pairs, dict) else (
        (str(t.get("Key")), str(t.get("Value", ""))) for t in pairs or [])
    return {f"aws:ResourceTag/{key}": value for key, value in items}


# -- SageMaker --------------------------------------------------------------------------------------
SAGEMAKER_RESOURCES = (  # body key → resource type; the first present names the call's resource
    ("EndpointName", "endpoint"), ("EndpointConfigName", "endpoint-config"),
    ("ModelName", "model"), ("TrainingJobName", "training-job"),
    ("HyperParameterTuningJobName", "hyper-parameter-tuning-job"),
)
SAGEMAKER_PASSED_ROLES = {  # operation → where its body names the role SageMaker will assume
    "CreateTrainingJob": ("RoleArn",),
    "CreateModel": ("ExecutionRoleArn",),
    "CreateHyperParameterTuningJob": ("TrainingJobDefinition", "RoleArn"),
}


def _sagemaker_tags(target: Target, arn: str) -> Context:
    try:
        return resource_tags(target.backend("sagemaker").list_tags(arn=arn)[0])
    except Exception:  # noqa: BLE001 - a resource that does not exist (yet) has no tags
        return {}


def _dig(body: dict, path: tuple[str, ...]) -> Any:
    for key in path:
        body = body.get(key) if isinstance(body, dict) else None
    return body


MODEL_PACKAGE_OPERATIONS = ("CreateModelPackage", "ListModelPackages", "DescribeModelPackage",
                            "UpdateModelPackage", "DeleteModelPackage")


def _model_package_calls(target: Target, operation: str, body: dict) -> list[AuthRequest] | None:
    """The registry's calls: a package is model-package/<group>/<version>; creating and listing
    are authorized on the group's packages (the version is not known yet)."""
    if operation in ("CreateModelPackageGroup", "DescribeModelPackageGroup", "DeleteModelPackageGroup"):
        name = str(body.get("ModelPackageGroupName", "")).lower()
        return [AuthRequest(f"sagemaker:{operation}", target.arn("sagemaker", f"model-package-group/{name}"),
                            request_tags(body.get("Tags")) if operation.startswith("Create") else {})]
    if operation not in MODEL_PACKAGE_OPERATIONS:
        return None
    named = body.get("ModelPackageArn") or body.get("ModelPackageName")
    if isinstance(named, str) and named.startswith("arn:"):
        arn = named
    else:
        group = str(body.get("ModelPackageGroupName") or named or "").lower()
        arn = target.arn("sagemaker", f"model-package/{group}/*")
    if operation == "CreateModelPackage":
        context = request_tags(body.get("Tags"))
        return [AuthRequest(f"sagemaker:{operation}", arn, context),
                *([AuthRequest("sagemaker:AddTags", arn, context)] if body.get("Tags") else [])]
    return [AuthRequest(f"sagemaker:{operation}", arn, _sagemaker_tags(target, arn))]


def sagemaker_calls(target: Target) -> list[AuthRequest] | None:
    request = target.request
    runtime = re.fullmatch(r"/endpoints/([^/]+)/(async-)?invocations", request.path)
    if runtime and request.method == "POST":
        action = "InvokeEndpointAsync" if runtime.group(2) else "InvokeEndpoint"
        name = unquote(runtime.group(1)).lower()  # SageMaker ARNs are lower case
        return [AuthRequest(f"sagemaker:{action}", target.arn("sagemaker", f"endpoint/{name}"))]
    operation = target.target_operation("SageMaker")
    if operation is None:
        return None
    body = target.json()
    packages = _model_package_calls(target, operation, body)
    if packages is not None:
        return packages
    resources = [target.arn("sagemaker", f"{kind}/{body[key].lower()}")
                 for key, kind in SAGEMAKER_RESOURCES if isinstance(body.get(key), str)]
    if operation in ("CreateEndpoint", "UpdateEndpoint"):
        pass  # authorized on the endpoint and on the endpoint config it is given
    elif resources:
        resources = resources[:1]
    elif isinstance(body.get("ResourceArn"), str):
        resources = [body["ResourceArn"]]
    elif operation.startswith("List"):
        return [AuthRequest(f"sagemaker:{operation}", "*")]
    else:
        return None
    creating = operation.startswith("Create")
    calls = []
    for arn in resources:
        context = request_tags(body.get("Tags")) if creating else _sagemaker_tags(target, arn)
        calls.append(AuthRequest(f"sagemaker:{operation}", arn, context))
        if creating and body.get("Tags") and arn == resources[0]:
            calls.append(AuthRequest("sagemaker:AddTags", arn, context))  # tag-on-create
    if operation == "AddTags":
        calls[0] = AuthRequest("sagemaker:AddTags", resources[0], request_tags(body.get("Tags")))
    role = _dig(body, SAGEMAKER_PASSED_ROLES.get(operation, ("-",)))
    if isinstance(role, str):
        calls.append(AuthRequest("iam:PassRole", role,
                                 {"iam:PassedToService": "sagemaker.amazonaws.com"}))
    return calls


# -- Lambda -----------------------------------------------------------------------------------------
LAMBDA_PATHS = (  # (method, path regex, action); the function name is group "fn"
    ("POST", r"/2015-03-31/functions/(?P<fn>[^/]+)/invocations/?", "lambda:InvokeFunction"),
    ("GET", r"/2015-03-31/functions/(?P<fn>[^/]+)/?", "lambda:GetFunction"),
    ("DELETE", r"/2015-03-31/functions/(?P<fn>[^/]+)/?", "lambda:DeleteFunction"),
    ("GET", r"/2015-03-31/functions/(?P<fn>[^/]+)/configuration/?",
     "lambda:GetFunctionConfiguration"),
    ("PUT", r"/2015-03-31/functions/(?P<fn>[^/]+)/configuration/?",
     "lambda:UpdateFunctionConfiguration"),
    ("PUT", r"/2015-03-31/functions/(?P<fn>[^/]+)/code/?", "lambda:UpdateFunctionCode"),
    ("POST", r"/2015-03-31/functions/(?P<fn>[^/]+)/versions/?", "lambda:PublishVersion"),
    ("GET", r"/2015-03-31/functions/(?P<fn>[^/]+)/versions/?", "lambda:ListVersionsByFunction"),
    ("POST", r"/2015-03-31/functions/(?P<fn>[^/]+)/aliases/?", "lambda:CreateAlias"),
    ("GET", r"/2015-03-31/functions/(?P<fn>[^/]+)/aliases/[^/]+/?", "lambda:GetAlias"),
    ("PUT", r"/2015-03-31/functions/(?P<fn>[^/]+)/aliases/[^/]+/?", "lambda:UpdateAlias"),
    ("PUT", r"/2017-10-31/functions/(?P<fn>[^/]+)/concurrency/?", "lambda:PutFunctionConcurrency"),
    ("DELETE", r"/2017-10-31/functions/(?P<fn>[^/]+)/concurrency/?",
     "lambda:DeleteFunctionConcurrency"),
    ("GET", r"/2019-09-30/functions/(?P<fn>[^/]+)/concurrency/?", "lambda:GetFunctionConcurrency"),
    ("PUT", r"/2019-09-30/functions/(?P<fn>[^/]+)/provisioned-concurrency/?",
     "lambda:PutProvisionedConcurrencyConfig"),
    ("GET", r"/2019-09-30/functions/(?P<fn>[^/]+)/provisioned-concurrency/?",
     "lambda:GetProvisionedConcurrencyConfig"),
    ("DELETE", r"/2019-09-30/functions/(?P<fn>[^/]+)/provisioned-concurrency/?",
     "lambda:DeleteProvisionedConcurrencyConfig"),
)


def lambda_calls(target: Target) -> list[AuthRequest] | None:
    request = target.request
    for method, pattern, action in LAMBDA_PATHS:
        found = re.fullmatch(pattern, request.path)
        if found and request.method == method:
            name = unquote(found.group("fn"))
            qualifier = request.args.get("Qualifier")
            if name.startswith("arn:"):
                arn = name
            else:
                name, _, inline = name.partition(":")
                qualifier = qualifier or inline or None
                arn = target.arn("lambda", f"function:{name}")
            qualified = f"{arn}:{qualifier}" if qualifier and arn.count(":") == 6 else arn
            return [AuthRequest(action, qualified)]
    if request.method == "GET" and re.fullmatch(r"/2015-03-31/functions/?", request.path):
        return [AuthRequest("lambda:ListFunctions", "*")]
    return None


# -- S3 ---------------------------------------------------------------------------------------------
S3_PLAIN_ARGUMENTS = {"versionId", "list-type", "prefix", "delimiter", "max-keys",
                      "continuation-token", "start-after", "encoding-type", "fetch-owner", "x-id",
                      "partNumber"}
S3_OBJECT_ACTIONS = {"GET": "s3:GetObject", "HEAD": "s3:GetObject", "PUT": "s3:PutObject",
                     "DELETE": "s3:DeleteObject"}
S3_MULTIPART = {("POST", "uploads"): "s3:PutObject", ("PUT", "uploadId"): "s3:PutObject",
                ("POST", "uploadId"): "s3:PutObject", ("DELETE", "uploadId"): "s3:AbortMultipartUpload"}


def _bucket_and_key(request: Request) -> tuple[str, str]:
    host = request.host.split(":")[0]
    virtual = re.match(r"^(.+?)\.(s3[.-]|localhost)", host)
    if virtual and not host.startswith("s3."):
        return virtual.group(1), unquote(request.path.lstrip("/"))
    bucket, _, key = request.path.lstrip("/").partition("/")
    return unquote(bucket), unquote(key)


def s3_calls(target: Target) -> list[AuthRequest] | None:
    request = target.request
    bucket, key = _bucket_and_key(request)
    if not bucket:
        return [AuthRequest("s3:ListAllMyBuckets", "*")] if request.method == "GET" else None
    bucket_arn = f"arn:aws:s3:::{bucket}"
    extra = set(request.args) - S3_PLAIN_ARGUMENTS
    if key and extra:
        # Multipart uploads (boto3's upload_file above its threshold) are PutObject to IAM.
        action = next((a for (method, arg), a in S3_MULTIPART.items()
                       if request.method == method and arg in extra), None)
        return [AuthRequest(action, f"{bucket_arn}/{key}")] if action else None
    if extra:
        return None  # other sub-resources (acl, policy, tagging…) are not modelled: denied
    if key:
        action = S3_OBJECT_ACTIONS.get(request.method)
        return [AuthRequest(action, f"{bucket_arn}/{key}")] if action else None
    if request.method in ("GET", "HEAD"):
        prefix = request.args.get("prefix")
        context = {} if prefix is None or request.method == "HEAD" else {"s3:prefix": prefix}
        return [AuthRequest("s3:ListBucket", bucket_arn, context)]
    return None


# -- Step Functions, STS ----------------------------------------------------------------------------
def states_calls(target: Target) -> list[AuthRequest] | None:
    operation = target.target_operation("AWSStepFunctions")
    if operation is None:
        return None
    body = target.json()
    for key in ("executionArn", "stateMachineArn"):
        if isinstance(body.get(key), str):
            return [AuthRequest(f"states:{operation}", body[key])]
    return [AuthRequest(f"states:{operation}", "*")] if operation.startswith("List") else None


def sts_calls(target: Target) -> list[AuthRequest] | None:
    form = target.form()
    action = form.get("Action", "")
    if action == "GetCallerIdentity":
        return [AuthRequest("sts:GetCallerIdentity", "*")]
    if action == "AssumeRole" and form.get("RoleArn"):
        return [AuthRequest("sts:AssumeRole", form["RoleArn"])]
    return None


# -- EC2 --------------------------------------------------------------------------------------------
EC2_UNSCOPED = {"DescribeInstances", "DescribeImages", "DescribeInstanceStatus", "DescribeTags",
                "DescribeSubnets", "DescribeVpcs", "DescribeSecurityGroups",
                "DescribeIamInstanceProfileAssociations"}


def _numbered(form: dict[str, str], prefix: str) -> list[str]:
    pattern = re.compile(rf"{re.escape(prefix)}\.(\d+)$")
    found = sorted((int(m.group(1)), value) for key, value in form.items() if (m := pattern.match(key)))
    return [value for _, value in found]


def _tag_specifications(form: dict[str, str], resource_type: str) -> list[dict]:
    tags = []
    for number in range(1, 50):
        kind = form.get(f"TagSpecification.{number}.ResourceType")
        if kind is None:
            break
        if kind == resource_type:
            for index in range(1, 51):
                key = form.get(f"TagSpecification.{number}.Tag.{index}.Key")
                if key is None:
                    break
                value = form.get(f"TagSpecification.{number}.Tag.{index}.Value", "")
                tags.append({"Key": key, "Value": value})
    return tags


def _instance_profile(target: Target, form: dict[str, str]) -> Any:
    from moto.ec2.utils import filter_iam_instance_profiles

    name, arn = form.get("IamInstanceProfile.Name"), form.get("IamInstanceProfile.Arn")
    if not (name or arn):
        return None
    try:
        return filter_iam_instance_profiles(target.account, "aws", arn, name)
    except Exception:  # noqa: BLE001 - moto answers the missing profile itself
        return None


def run_instances_calls(target: Target, form: dict[str, str]) -> list[AuthRequest]:
    instance_tags = _tag_specifications(form, "instance")
    profile = _instance_profile(target, form)
    instance_context = request_tags(instance_tags)
    if profile is not None:
        instance_context["ec2:InstanceProfile"] = profile.arn
    subnet = form.get("SubnetId") or "*"
    groups = _numbered(form, "SecurityGroupId") or ["*"]
    calls = [AuthRequest("ec2:RunInstances", target.arn("ec2", "instance/*"), instance_context),
             AuthRequest("ec2:RunInstances", target.arn("ec2", f"image/{form.get('ImageId', '*')}",
                                                        account="")),
             AuthRequest("ec2:RunInstances", target.arn("ec2", f"subnet/{subnet}")),
             AuthRequest("ec2:RunInstances", target.arn("ec2", "network-interface/*")),
             AuthRequest("ec2:RunInstances", target.arn("ec2", "volume/*")),
             *(AuthRequest("ec2:RunInstances", target.arn("ec2", f"security-group/{group}"))
               for group in groups)]
    if instance_tags:
        calls.append(AuthRequest("ec2:CreateTags", target.arn("ec2", "instance/*"),
                                 {**request_tags(instance_tags), "ec2:CreateAction": "RunInstances"}))
    for role in profile.roles if profile is not None else []:
        calls.append(AuthRequest("iam:PassRole", role.arn, {"iam:PassedToService": "ec2.amazonaws.com"}))
    return calls


def _instance_context(target: Target, instance_id: str) -> Context:
    backend = target.backend("ec2")
    context = resource_tags(dict(backend.tags.get(instance_id, {})))
    association = backend.iam_instance_profile_associations.get(instance_id)
    if association is not None:
        context["ec2:InstanceProfile"] = association.iam_instance_profile.arn
    return context


def ec2_calls(target: Target) -> list[AuthRequest] | None:
    form = target.form()
    action = form.get("Action", "")
    if action in EC2_UNSCOPED:
        return [AuthRequest(f"ec2:{action}", "*")]
    if action == "RunInstances":
        return run_instances_calls(target, form)
    if action in ("TerminateInstances", "StopInstances", "StartInstances", "RebootInstances"):
        return [AuthRequest(f"ec2:{action}", target.arn("ec2", f"instance/{instance}"),
                            _instance_context(target, instance))
                for instance in _numbered(form, "InstanceId")] or None
    return None


# -- SSM, CloudWatch Logs, Application Auto Scaling, CloudWatch, IAM -------------------------------
def ssm_calls(target: Target) -> list[AuthRequest] | None:
    operation, body = target.target_operation("AmazonSSM"), target.json()
    if operation in ("GetParameter", "GetParameters") and (body.get("Name") or body.get("Names")):
        names = [body["Name"]] if body.get("Name") else list(body["Names"])
        # AWS's public parameters (/aws/service/…) belong to no account: their ARN's is empty.
        return [AuthRequest(f"ssm:{operation}", target.arn(
            "ssm", f"parameter/{name.lstrip('/')}", account="" if name.startswith("/aws/") else None))
            for name in names]
    return None


def logs_calls(target: Target) -> list[AuthRequest] | None:
    operation, body = target.target_operation("Logs_20140328"), target.json()
    group = body.get("logGroupName")
    if operation is None or not isinstance(group, str):
        describing = operation and operation.startswith("Describe")
        return [AuthRequest(f"logs:{operation}", "*")] if describing else None
    group_arn = target.arn("logs", f"log-group:{group}")
    stream = body.get("logStreamName")
    if isinstance(stream, str):
        return [AuthRequest(f"logs:{operation}", f"{group_arn}:log-stream:{stream}")]
    if operation in ("DescribeLogStreams", "FilterLogEvents"):
        return [AuthRequest(f"logs:{operation}", f"{group_arn}:log-stream:*")]
    return [AuthRequest(f"logs:{operation}", group_arn)]


def _scalable_target_arn(target: Target, namespace: str, resource_id: str, dimension: str) -> str:
    backend = target.backend("application-autoscaling")
    existing = backend.targets.get(dimension, {}).get(resource_id)
    if existing is not None:
        return existing.arn
    return target.arn("application-autoscaling", "scalable-target/new")  # AWS names it on creation


def autoscaling_calls(target: Target) -> list[AuthRequest] | None:
    operation, body = target.target_operation("AnyScaleFrontendService"), target.json()
    if operation is None:
        return None
    namespace, resource_id = body.get("ServiceNamespace", ""), body.get("ResourceId")
    dimension = body.get("ScalableDimension", "")
    context = {"application-autoscaling:service-namespace": namespace} if namespace else {}
    if dimension:
        context["application-autoscaling:scalable-dimension"] = dimension
    if not isinstance(resource_id, str):
        return [AuthRequest(f"application-autoscaling:{operation}", "*", context)] \
            if operation.startswith("Describe") else None
    arn = _scalable_target_arn(target, namespace, resource_id, dimension)
    calls = [AuthRequest(f"application-autoscaling:{operation}", arn, context)]
    if operation == "RegisterScalableTarget" and namespace in LINKED_ROLES:
        service, role = LINKED_ROLES[namespace]
        if not _role_exists(target, role):
            path = f"aws-service-role/{service}/{role}"
            calls.append(AuthRequest("iam:CreateServiceLinkedRole",
                                     f"arn:aws:iam::{target.account}:role/{path}",
                                     {"iam:AWSServiceName": service}))
    if operation == "PutScalingPolicy" and body.get("PolicyType") == "TargetTrackingScaling":
        alarms = target.arn("cloudwatch", f"alarm:TargetTracking-{resource_id}-AlarmHigh-new")
        calls += [AuthRequest(action, alarms) for action in TARGET_TRACKING_ALARM_ACTIONS]
    return calls


def _role_exists(target: Target, name: str) -> bool:
    try:
        target.backend("iam").get_role(name)
    except Exception:  # noqa: BLE001 - moto's NoSuchEntity
        return False
    return True


ALARM_WRITES = ("PutMetricAlarm", "SetAlarmState", "DeleteAlarms")


def cloudwatch_calls(target: Target) -> list[AuthRequest] | None:
    found = re.fullmatch(r"/service/GraniteServiceVersion20100801/operation/(\w+)", target.request.path)
    operation = (found.group(1) if found else None) or target.target_operation(
        "GraniteServiceVersion20100801") or target.form().get("Action")
    if not operation:
        return None
    # Reads have no resource-level permission; alarm writes are authorized on the alarms they
    # name (JSON protocol, or the query protocol of older SDKs). A CBOR body is not decoded here,
    # so such a write is denied. Target-tracking alarms are authorized through PutScalingPolicy.
    if operation.startswith(("Get", "List", "Describe")):
        return [AuthRequest(f"cloudwatch:{operation}", "*")]
    if operation not in ALARM_WRITES:
        return None
    body, form = target.json(), target.form()
    names = body.get("AlarmNames") or ([body["AlarmName"]] if body.get("AlarmName") else []) or [
        value for key, value in form.items() if key == "AlarmName" or key.startswith("AlarmNames.member.")]
    if not names or not all(isinstance(name, str) for name in names):
        return None
    return [AuthRequest(f"cloudwatch:{operation}", target.arn("cloudwatch", f"alarm:{name}"))
            for name in names]


def iam_calls(target: Target) -> list[AuthRequest] | None:
    form = target.form()
    action = form.get("Action", "")
    if action in ("GetRole", "GetInstanceProfile"):
        kind, key = (("role", "RoleName") if action == "GetRole"
                     else ("instance-profile", "InstanceProfileName"))
        arn = f"arn:aws:iam::{target.account}:{kind}/{form.get(key, '')}"
        return [AuthRequest(f"iam:{action}", arn)]
    return None


SERVICES: dict[str, Callable[[Target], list[AuthRequest] | None]] = {
    "sagemaker": sagemaker_calls, "lambda": lambda_calls, "s3": s3_calls, "states": states_calls,
    "sts": sts_calls, "ec2": ec2_calls, "ssm": ssm_calls, "logs": logs_calls,
    "application-autoscaling": autoscaling_calls, "monitoring": cloudwatch_calls, "iam": iam_calls,
}


def identify(request: Request, signed: Signed, account: str) -> list[AuthRequest] | None:
    """Every authorization the request needs, or None when the local cloud cannot name them."""
    namer = SERVICES.get(signed.service)
    return namer(Target(request, signed, account)) if namer else None

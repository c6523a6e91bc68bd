"""IAM authorization on the local cloud, with the real resource ARN of each call.

moto's own request-time enforcement checks most services against resource ``*``, so a policy
scoped to one endpoint ARN would be denied everywhere. This extension sits in front of every
route (it is first in ``DEFAULT_EXTENSIONS``) and, when switched on
(``settings.options["iam"]["enforce"] = True``; off by default, or ``extension.enforce`` at run
time), authorizes each request signed by an IAM principal:

* Who: the SigV4 access key id names the principal through moto's own lookup
  (``moto.iam.access_control.create_access_key``): an IAM user's access key, or STS AssumeRole
  credentials (with their session token). Any other key — the local cloud's own credentials,
  made at each start (``LocalCloud.credentials``), that the deployer, handlers and training use
  — acts as the account's administrator and is not checked. ``iam/signatures.py`` (installed
  before this) has verified the signature, so the key id is the identity.
* What: the action and resource ARN of the call, for the APIs in ``identify`` (sagemaker-runtime
  InvokeEndpoint; SageMaker calls by endpoint, endpoint config, model, training or tuning job;
  Lambda invoke and function configuration; S3 objects and buckets; Step Functions executions
  and state machines; STS). A call it cannot name is denied: fail closed.
* How: every statement of the principal's inline and attached policies (a user's groups too)
  through moto's evaluator (``IAMPolicyStatement.is_action_permitted``, which matches resource
  ARNs); an explicit Deny wins, otherwise one Allow is needed. A statement whose condition does
  not hold does not apply (moto itself would answer Deny). moto evaluates only ``StringEquals``
  conditions and treats the rest as met, so local enforcement proves actions and resources, not
  conditions; session policies are not applied.
* Denied: HTTP 403 in the service's error shape (``AccessDeniedException`` for JSON services,
  ``AccessDenied`` XML for S3 and the query services, ``UnauthorizedOperation`` for EC2), with
  AWS's wording; the request never reaches moto or the local compute.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

from werkzeug.wrappers import Request, Response

from infra_scripts.localcloud.core.requests import CredentialScope as Signed
from infra_scripts.localcloud.core.requests import credential_scope, peek_body
from infra_scripts.localcloud.core.server import LocalCloud, protocol_error

OPTIONS = "iam"
DENIAL_KEY = "stepml.iam.denial"
ALWAYS_ALLOWED = {"sts:GetCallerIdentity"}  # AWS answers it for any valid credentials


@dataclass(frozen=True)
class Call:
    action: str  # e.g. "sagemaker:InvokeEndpoint"
    resource: str  # ARN, or "*" for calls without a resource


# -- who ------------------------------------------------------------------------------------------
def principal(cloud: LocalCloud, signed: Signed, headers: dict[str, str]) -> Any | None:
    """moto's access key object (``.arn``, ``.collect_policies()``), or None for a key IAM and
    STS never issued (the local cloud's administrator credentials)."""
    from moto.iam.access_control import CreateAccessKeyFailure, create_access_key
    from moto.utilities.utils import get_partition

    try:
        return create_access_key(cloud.account_id, get_partition(signed.region),
                                 signed.access_key, headers)
    except CreateAccessKeyFailure:
        return None


# -- what -----------------------------------------------------------------------------------------
def _arn(signed: Signed, account: str, service: str, resource: str) -> str:
    return f"arn:aws:{service}:{signed.region}:{account}:{resource}"


SAGEMAKER_RESOURCES = (  # body key → resource type, first match names the call's resource
    ("EndpointName", "endpoint"), ("EndpointConfigName", "endpoint-config"),
    ("ModelName", "model"), ("TrainingJobName", "training-job"),
    ("HyperParameterTuningJobName", "hyper-parameter-tuning-job"),
)
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
    ("PUT", r"/2015-03-31/functions/(?P<fn>[^/]+)/aliases/[^/]+/?", "lambda:UpdateAlias"),
    ("PUT", r"/2017-10-31/functions/(?P<fn>[^/]+)/concurrency/?", "lambda:PutFunctionConcurrency"),
    ("PUT", r"/2019-09-30/functions/(?P<fn>[^/]+)/provisioned-concurrency/?",
     "lambda:PutProvisionedConcurrencyConfig"),
    ("GET", r"/2019-09-30/functions/(?P<fn>[^/]+)/provisioned-concurrency/?",
     "lambda:GetProvisionedConcurrencyConfig"),
    ("DELETE", r"/2019-09-30/functions/(?P<fn>[^/]+)/provisioned-concurrency/?",
     "lambda:DeleteProvisionedConcurrencyConfig"),
)
STATES_ARN_KEYS = ("executionArn", "stateMachineArn")


def _json_body(request: Request) -> dict:
    try:
        body = json.loads(peek_body(request) or b"{}")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def sagemaker_call(request: Request, signed: Signed, account: str) -> Call | None:
    runtime = re.fullmatch(r"/endpoints/([^/]+)/(async-)?invocations", request.path)
    if runtime and request.method == "POST":
        action = "InvokeEndpointAsync" if runtime.group(2) else "InvokeEndpoint"
        name = unquote(runtime.group(1)).lower()  # SageMaker ARNs are lower case
        return Call(f"sagemaker:{action}", _arn(signed, account, "sagemaker", f"endpoint/{name}"))
    target = request.headers.get("X-Amz-Target", "")
    if not target.startswith("SageMaker."):
        return None
    operation, body = target.split(".", 1)[1], _json_body(request)
    for key, kind in SAGEMAKER_RESOURCES:
        if isinstance(body.get(key), str):
            resource = f"{kind}/{body[key].lower()}"
            return Call(f"sagemaker:{operation}", _arn(signed, account, "sagemaker", resource))
    if isinstance(body.get("ResourceArn"), str):
        return Call(f"sagemaker:{operation}", body["ResourceArn"])
    return Call(f"sagemaker:{operation}", "*") if operation.startswith("List") else None


def lambda_call(request: Request, signed: Signed, account: str) -> Call | None:
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
                arn = _arn(signed, account, "lambda", f"function:{name}")
            return Call(action, f"{arn}:{qualifier}" if qualifier and arn.count(":") == 6 else arn)
    if request.method == "GET" and re.fullmatch(r"/2015-03-31/functions/?", request.path):
        return Call("lambda:ListFunctions", "*")
    return None


def _bucket_and_key(request: Request) -> tuple[str, str]:
    host = request.host.split(":")[0]
    virtual = re.match(r"^(.+?)\.(s3[.-]|localhost)", host)
    if virtual and not host.startswith("s3."):
        return virtual.group(1), unquote(request.path.lstrip("/"))
    bucket, _, key = request.path.lstrip("/").partition("/")
    return unquote(bucket), unquote(key)


def s3_call(request: Request) -> Call | None:
    bucket, key = _bucket_and_key(request)
    sub = set(request.args) - {"versionId", "list-type", "prefix", "delimiter", "max-keys",
                               "continuation-token", "start-after", "encoding-type",
                               "fetch-owner", "x-id", "partNumber"}
    if not bucket:
        return Call("s3:ListAllMyBuckets", "*") if request.method == "GET" else None
    if sub:
        return None  # sub-resources (acl, policy, tagging, uploads…) are not modelled
    bucket_arn = f"arn:aws:s3:::{bucket}"
    if key:
        actions = {"GET": "s3:GetObject", "HEAD": "s3:GetObject", "PUT": "s3:PutObject",
                   "DELETE": "s3:DeleteObject"}
        action = actions.get(request.method)
        return Call(action, f"{bucket_arn}/{key}") if action else None
    if request.method in ("GET", "HEAD"):
        return Call("s3:ListBucket", bucket_arn)
    return None


def states_call(request: Request) -> Call | None:
    target = request.headers.get("X-Amz-Target", "")
    if not target.startswith("AWSStepFunctions."):
        return None
    operation, body = target.split(".", 1)[1], _json_body(request)
    for key in STATES_ARN_KEYS:
        if isinstance(body.get(key), str):
            return Call(f"states:{operation}", body[key])
    return Call(f"states:{operation}", "*") if operation.startswith("List") else None


def sts_call(request: Request) -> Call | None:
    form = parse_qs(peek_body(request).decode("utf-8", "replace"))
    action = (request.args.get("Action") or form.get("Action", [""])[0])
    if action == "GetCallerIdentity":
        return Call("sts:GetCallerIdentity", "*")
    if action == "AssumeRole" and form.get("RoleArn"):
        return Call("sts:AssumeRole", form["RoleArn"][0])
    return None


def identify(request: Request, signed: Signed, account: str) -> Call | None:
    """The call's action and resource, or None when the local cloud cannot name them."""
    if signed.service == "sagemaker":
        return sagemaker_call(request, signed, account)
    if signed.service == "lambda":
        return lambda_call(request, signed, account)
    if signed.service == "s3":
        return s3_call(request)
    if signed.service == "states":
        return states_call(request)
    if signed.service == "sts":
        return sts_call(request)
    return None


# -- how ------------------------------------------------------------------------------------------
def documents(who: Any) -> list[dict]:
    """The principal's policy documents as dicts (moto hands back several shapes)."""
    from moto.iam.models import Policy

    found = []
    for policy in who.collect_policies():
        if isinstance(policy, Policy):
            policy = next(v.document for v in policy.versions if v.is_default)
        elif isinstance(policy, dict) and "policy_document" in policy:
            policy = policy["policy_document"]
        found.append(json.loads(policy) if isinstance(policy, str) else policy)
    return found


def statement_result(statement: dict, action: str, resource: str) -> Any:
    """moto's verdict on one statement; a statement whose condition fails does not apply."""
    from moto.iam.access_control import IAMPolicyStatement, PermissionResult

    bare = {key: value for key, value in statement.items() if key != "Condition"}
    result = IAMPolicyStatement(bare).is_action_permitted(action, resource)
    if result is PermissionResult.NEUTRAL or "Condition" not in statement:
        return result
    probe = {"Effect": "Allow", "Action": action, "Resource": "*",
             "Condition": statement["Condition"]}
    holds = IAMPolicyStatement(probe).is_action_permitted(action, "*")
    return result if holds is PermissionResult.PERMITTED else PermissionResult.NEUTRAL


def is_allowed(policy_documents: list[dict], call: Call) -> bool:
    from moto.iam.access_control import PermissionResult

    allowed = False
    for document in policy_documents:
        statements = document.get("Statement", [])
        for statement in statements if isinstance(statements, list) else [statements]:
            result = statement_result(statement, call.action, call.resource)
            if result is PermissionResult.DENIED:
                return False
            allowed = allowed or result is PermissionResult.PERMITTED
    return allowed


# -- the route ------------------------------------------------------------------------------------
class IamEnforcement:
    def __init__(self, cloud: LocalCloud) -> None:
        self.cloud = cloud
        self.enforce = bool(cloud.settings.option(OPTIONS, "enforce", False))
        self.decisions: list[tuple[str, Call | None, bool]] = []  # (principal, call, allowed)

    def denies(self, request: Request) -> bool:
        """Route matcher: True (and the denial stashed) when the request must be refused."""
        if not self.enforce:
            return False
        signed = credential_scope(request)
        if signed is None:
            return False
        who = principal(self.cloud, signed, dict(request.headers))
        if who is None:
            return False
        call = identify(request, signed, self.cloud.account_id)
        allowed = call is not None and (call.action in ALWAYS_ALLOWED
                                        or is_allowed(documents(who), call))
        self.decisions.append((who.arn, call, allowed))
        if not allowed:
            request.environ[DENIAL_KEY] = (signed.service, _message(who.arn, call))
        return not allowed

    @staticmethod
    def respond(request: Request) -> Response:
        service, message = request.environ[DENIAL_KEY]
        json_protocol = (request.headers.get("X-Amz-Target") or service == "lambda"
                         or request.path.startswith("/endpoints/"))
        code = ("AccessDeniedException" if json_protocol
                else "UnauthorizedOperation" if service == "ec2" else "AccessDenied")
        return protocol_error(request, service, 403, code, message)


def _message(arn: str, call: Call | None) -> str:
    if call is None:
        return (f"User: {arn} is not authorized to perform this call: the local cloud's IAM "
                "enforcement cannot name its action and resource, so it denies it")
    return (f"User: {arn} is not authorized to perform: {call.action} on resource: "
            f"{call.resource} because no identity-based policy allows the {call.action} action")


def install(cloud: LocalCloud) -> IamEnforcement:
    enforcement = IamEnforcement(cloud)
    cloud.add_route(enforcement.denies, enforcement.respond)
    return enforcement

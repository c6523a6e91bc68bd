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
import threading
from dataclasses import dataclass
from typing import Any

from werkzeug.wrappers import Request, Response

from infra_scripts.localcloud.core.requests import CredentialScope as Signed
from infra_scripts.localcloud.core.requests import credential_scope
from infra_scripts.localcloud.core.server import LocalCloud, protocol_error
from infra_scripts.localcloud.iam.calls import identify
from infra_scripts.localcloud.iam.evaluation import AuthRequest, Decision, evaluate

OPTIONS = "iam"
DENIAL_KEY = "stepml.iam.denial"
ALWAYS_ALLOWED = {"sts:GetCallerIdentity"}  # AWS answers it for any valid credentials


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


# -- how ------------------------------------------------------------------------------------------
def named_documents(who: Any) -> list[tuple[str, dict]]:
    """The principal's identity policies as (name, document) pairs; the name starts the
    statement ids decisions record. moto's ``collect_policies`` drops the names of a role's
    inline policies, so a role's are read here."""
    from moto.iam.models import Policy

    role = getattr(who, "_owner_role_name", None)
    if role is not None:
        if role not in {r.name for r in who.backend.roles.values()}:
            return []  # a session of a role deleted since (or never made): nothing is allowed
        inline = [(name, who.backend.get_role_policy(role, name)[1])
                  for name in who.backend.list_role_policies(role)]
        attached = who.backend.list_attached_role_policies(role)[0]
    else:
        inline, attached = [], []
        for policy in who.collect_policies():
            if isinstance(policy, dict) and "policy_document" in policy:
                inline.append((str(policy.get("policy_name")), policy["policy_document"]))
            else:
                attached.append(policy)
    found = list(inline)
    for policy in attached:
        if isinstance(policy, Policy):
            found.append((policy.name, next(v.document for v in policy.versions if v.is_default)))
    return [(name, json.loads(doc) if isinstance(doc, str) else doc) for name, doc in found]


@dataclass(frozen=True)
class Decided:
    """One authorization of one request: who, what, and the statements that allowed it."""
    principal: str
    request: AuthRequest | None  # None: the local cloud could not name the call
    decision: Decision | None

    @property
    def allowed(self) -> bool:
        return self.decision is not None and self.decision.allowed


# -- the route ------------------------------------------------------------------------------------
class IamEnforcement:
    def __init__(self, cloud: LocalCloud) -> None:
        self.cloud = cloud
        self.enforce = bool(cloud.settings.option(OPTIONS, "enforce", True))
        self.decisions: list[Decided] = []
        self._lock = threading.Lock()

    def authorize(self, who: Any, signed: Signed, request: Request) -> Decided | None:
        """The first authorization the request fails, or None when every one is allowed."""
        calls = identify(request, signed, self.cloud.account_id)
        if calls is None:
            return self._record(Decided(who.arn, None, None))
        documents = None
        for call in calls:
            if call.action in ALWAYS_ALLOWED:
                continue
            documents = documents if documents is not None else named_documents(who)
            decided = self._record(Decided(who.arn, call, evaluate(documents, call)))
            if not decided.allowed:
                return decided
        return None

    def _record(self, decided: Decided) -> Decided:
        with self._lock:
            self.decisions.append(decided)
        return decided

    def denies(self, request: Request) -> bool:
        """Route matcher: True (and the denial stashed) when the request must be refused."""
        if not self.enforce:
            return False
        signed = credential_scope(request)
        if signed is None:
            return False
        who = principal(self.cloud, signed, dict(request.headers))
        if who is None:
            return False  # the cloud's administrator
        failed = self.authorize(who, signed, request)
        if failed is not None:
            request.environ[DENIAL_KEY] = (signed.service, _message(failed))
        return failed is not None

    @staticmethod
    def respond(request: Request) -> Response:
        service, message = request.environ[DENIAL_KEY]
        json_protocol = (request.headers.get("X-Amz-Target") or service == "lambda"
                         or request.path.startswith("/endpoints/"))
        code = ("AccessDeniedException" if json_protocol
                else "UnauthorizedOperation" if service == "ec2" else "AccessDenied")
        return protocol_error(request, service, 403, code, message)


def _message(decided: Decided) -> str:
    arn, call = decided.principal, decided.request
    if call is None:
        return (f"User: {arn} is not authorized to perform this call: the local cloud's IAM "
                "enforcement cannot name its action and resource, so it denies it")
    why = ("with an explicit deny in an identity-based policy"
           if decided.decision is not None and decided.decision.reason == "explicit-deny"
           else f"because no identity-based policy allows the {call.action} action")
    return f"User: {arn} is not authorized to perform: {call.action} on resource: {call.resource} {why}"


def install(cloud: LocalCloud) -> IamEnforcement:
    enforcement = IamEnforcement(cloud)
    cloud.add_route(enforcement.denies, enforcement.respond)
    return enforcement

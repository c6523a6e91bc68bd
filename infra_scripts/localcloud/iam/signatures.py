"""Signature Version 4 on the local cloud: every request is signed by a key this cloud knows, or
refused with AWS's error code and a 403 before any route or moto sees it.

Keys: the cloud's administrator pair (made at each start, ``LocalCloud.credentials``), IAM users'
access keys and STS session credentials (their session token must match), both from moto's
backends. The signature is recomputed with botocore's own signer (``SigV4Auth``; ``S3SigV4Auth``
for S3, whose paths are not normalised) over the request as received: its method, raw path and
query, the headers named in ``SignedHeaders``, and the payload hash (the
``X-Amz-Content-SHA256`` header where the client sent one, else the body's SHA-256). Presigned
URLs (``X-Amz-Signature`` in the query) are checked the same way, over the query minus the
signature and with their ``X-Amz-Expires``.

Refusals, as AWS words them ("Signature Version 4 signing process",
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv.html, and each service's common
errors, e.g. https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html):
unsigned → ``MissingAuthenticationToken`` (S3: ``AccessDenied``); unknown key →
``UnrecognizedClientException`` (query services: ``InvalidClientTokenId``; S3:
``InvalidAccessKeyId``); wrong signature → ``InvalidSignatureException`` (query services and S3:
``SignatureDoesNotMatch``); a request time more than 15 minutes off → ``InvalidSignatureException``
"Signature expired"; an expired session → ``ExpiredTokenException`` (query: ``ExpiredToken``).

moto's Step Functions interpreter calls Lambda and other services over HTTP with the fixed key
``ak``; its client factory is replaced so that a Lambda Task is signed with an STS session of the
executing state machine's ``roleArn`` (as Step Functions invokes it), anything else as the cloud's
administrator.
"""

from __future__ import annotations

import hmac
import re
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from werkzeug.wrappers import Request, Response

from infra_scripts.localcloud.core.requests import peek_body
from infra_scripts.localcloud.core.server import LocalCloud, protocol_error

OPTIONS = "signatures"
REFUSAL_KEY = "stepml.signature.refusal"
MAX_SKEW_S = 15 * 60
ROLE_SESSION_REUSE_S = 3600  # the sessions last 12 h (LocalCloud.role_env)
_AUTHORIZATION = re.compile(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request,"
                            r"\s*SignedHeaders=([^,]+),\s*Signature=([0-9a-f]{64})")
JSON_CODES = {"missing": "MissingAuthenticationTokenException", "unknown": "UnrecognizedClientException",
              "mismatch": "InvalidSignatureException", "expired": "ExpiredTokenException"}
QUERY_CODES = {"missing": "MissingAuthenticationToken", "unknown": "InvalidClientTokenId",
               "mismatch": "SignatureDoesNotMatch", "expired": "ExpiredToken"}
S3_CODES = {"missing": "AccessDenied", "unknown": "InvalidAccessKeyId",
            "mismatch": "SignatureDoesNotMatch", "expired": "ExpiredToken"}
MESSAGES = {
    "missing": "Request is missing Authentication Token",
    "unknown": "The security token included in the request is invalid.",
    "mismatch": "The request signature we calculated does not match the signature you provided. "
                "Check your AWS Secret Access Key and signing method.",
    "expired": "The security token included in the request is expired",
}


@dataclass(frozen=True)
class Signed:
    access_key: str
    region: str
    service: str
    signed_headers: list[str]
    signature: str
    timestamp: str  # yyyymmddThhmmssZ
    presigned: bool


def parse(request: Request) -> Signed | None:
    found = _AUTHORIZATION.search(request.headers.get("Authorization", ""))
    if found:
        key, _, region, service, headers, signature = found.groups()
        return Signed(key, region, service, headers.split(";"), signature,
                      request.headers.get("X-Amz-Date", ""), False)
    if "X-Amz-Signature" in request.args:
        parts = request.args.get("X-Amz-Credential", "").split("/")
        if len(parts) < 5:
            return None
        return Signed(parts[0], parts[2], parts[3], request.args.get("X-Amz-SignedHeaders", "").split(";"),
                      request.args["X-Amz-Signature"], request.args.get("X-Amz-Date", ""), True)
    return None


def keys_of(cloud: LocalCloud, signed: Signed, request: Request) -> tuple[str, str | None] | str:
    """(secret, session token) of the signing key, or the refusal's kind."""
    if hmac.compare_digest(signed.access_key, cloud.credentials["AWS_ACCESS_KEY_ID"]):
        return cloud.credentials["AWS_SECRET_ACCESS_KEY"], None
    from moto.iam.access_control import CreateAccessKeyFailure, create_access_key
    from moto.utilities.utils import get_partition

    headers = dict(request.headers)
    token = headers.get("X-Amz-Security-Token") or request.args.get("X-Amz-Security-Token")
    if token:
        headers["X-Amz-Security-Token"] = token
    try:
        key = create_access_key(cloud.account_id, get_partition(signed.region), signed.access_key,
                                headers)
    except CreateAccessKeyFailure:
        return "unknown"
    role = getattr(key, "_owner_role_name", None)
    if role is not None and _session_expired(cloud, signed):
        return "expired"
    credentials = key.create_credentials()
    return credentials.secret_key, credentials.token


def _session_expired(cloud: LocalCloud, signed: Signed) -> bool:
    from moto.sts.models import sts_backends

    for assumed in sts_backends[cloud.account_id]["global"].assumed_roles:
        if assumed.access_key_id == signed.access_key:
            return assumed.expiration.replace(tzinfo=UTC) < datetime.now(UTC)
    return False


def expected_signature(request: Request, signed: Signed, secret: str, token: str | None) -> str:
    from botocore.auth import S3SigV4Auth, SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or request.full_path
    path, _, query = raw.partition("?")
    if signed.presigned:  # the signature is over the query without itself
        pairs = [p for p in query.split("&") if p and not p.startswith("X-Amz-Signature=")]
        query = "&".join(pairs)
    headers = {name: request.headers.get(name, "") for name in signed.signed_headers}
    url = f"{request.scheme}://{request.host}{path}" + (f"?{query}" if query else "")
    aws_request = AWSRequest(method=request.method, url=url, headers=headers,
                             data=b"" if signed.presigned else peek_body(request))
    aws_request.context["timestamp"] = signed.timestamp
    signer = (S3SigV4Auth if signed.service == "s3" else SigV4Auth)(
        Credentials(signed.access_key, secret, token), signed.service, signed.region)
    canonical = signer.canonical_request(aws_request)
    if signed.presigned:  # a presigned URL signs no payload
        canonical = canonical.rsplit("\n", 1)[0] + "\nUNSIGNED-PAYLOAD"
    return signer.signature(signer.string_to_sign(aws_request, canonical), aws_request)


def _skewed(signed: Signed, request: Request) -> bool:
    try:
        stamp = datetime.strptime(signed.timestamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return True
    if signed.presigned:
        expires = int(request.args.get("X-Amz-Expires", "0") or 0)
        return time.time() > stamp + expires or stamp > time.time() + MAX_SKEW_S
    return abs(time.time() - stamp) > MAX_SKEW_S


def refusal(cloud: LocalCloud, request: Request) -> tuple[str, str, str] | None:
    """(kind, service, message) when the request is not validly signed, else None."""
    signed = parse(request)
    if signed is None:
        return "missing", _service_guess(request), MESSAGES["missing"]
    keys = keys_of(cloud, signed, request)
    if isinstance(keys, str):
        return keys, signed.service, MESSAGES[keys]
    if _skewed(signed, request):
        return "mismatch", signed.service, ("Signature expired: the request time "
                                            f"{signed.timestamp} is more than 15 minutes off")
    if not hmac.compare_digest(expected_signature(request, signed, *keys), signed.signature):
        return "mismatch", signed.service, MESSAGES["mismatch"]
    return None


def _service_guess(request: Request) -> str:
    if request.headers.get("X-Amz-Target") or request.path.startswith("/20"):
        return "json"
    return "s3" if request.method in ("GET", "PUT", "HEAD", "DELETE") else "query"


def respond(request: Request) -> Response:
    kind, service, message = request.environ[REFUSAL_KEY]
    json_protocol = request.headers.get("X-Amz-Target") or service in ("lambda", "json") or \
        request.path.startswith("/endpoints/")
    codes = JSON_CODES if json_protocol else S3_CODES if service == "s3" else QUERY_CODES
    return protocol_error(request, service, 403, codes[kind], message)


class StateMachineRoles:
    """The interpreter's calls, signed as the executing state machine's role (Step Functions
    invokes Tasks with the role's credentials), with one cached STS session per role."""

    def __init__(self, cloud: LocalCloud) -> None:
        self.cloud = cloud
        self.current = threading.local()  # .role_arn while a Lambda Task is invoked
        self._sessions: dict[str, tuple[float, dict[str, str]]] = {}
        self._lock = threading.Lock()

    def keys(self) -> dict[str, str]:
        role_arn = getattr(self.current, "role_arn", None)
        if not role_arn:  # only Lambda Tasks are associated with a role (all the workflow has)
            return dict(self.cloud.credentials)
        with self._lock:
            made, keys = self._sessions.get(role_arn, (None, {}))
            if made is None or time.monotonic() - made > ROLE_SESSION_REUSE_S:
                keys = self.cloud.role_env(role_arn, "StepFunctions")
                self._sessions[role_arn] = (time.monotonic(), keys)
        return keys

    def as_role(self, original: Any) -> Any:
        def invoke_as_role(env: Any, *args: Any, **kwargs: Any) -> Any:
            self.current.role_arn = env.aws_execution_details.role_arn
            try:
                return original(env, *args, **kwargs)
            finally:
                self.current.role_arn = None

        return invoke_as_role


def sign_interpreter_calls(cloud: LocalCloud) -> StateMachineRoles:
    """moto's Step Functions interpreter signs with ``ak``/``sk``: sign its Lambda Tasks as the
    state machine's role, anything else as the administrator."""
    import importlib
    import pkgutil

    import moto.stepfunctions.parser.asl as asl
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
    from moto.stepfunctions.parser.asl.utils import boto_client

    roles = StateMachineRoles(cloud)
    for info in pkgutil.walk_packages(asl.__path__, asl.__name__ + "."):
        try:  # import every user of the factory now, so each module's reference is replaced
            importlib.import_module(info.name)
        except ImportError:  # parts of LocalStack's interpreter that moto does not ship
            continue
    original = boto_client.boto_client_for

    def signed_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        client = original(region, service, state_credentials)
        keys = roles.keys()
        credentials = client._request_signer._credentials  # the SDK's own signer, re-keyed
        credentials.access_key = keys["AWS_ACCESS_KEY_ID"]
        credentials.secret_key = keys["AWS_SECRET_ACCESS_KEY"]
        credentials.token = keys.get("AWS_SESSION_TOKEN")
        return client

    for module in list(sys.modules.values()):
        if getattr(module, "boto_client_for", None) is original:
            cloud.patch(module, "boto_client_for", signed_client_for)
    for name in ("execute_lambda_function_integration", "exec_lambda_function"):
        cloud.patch(lambda_eval_utils, name, roles.as_role(getattr(lambda_eval_utils, name)))
    return roles


def install(cloud: LocalCloud) -> None:
    if not bool(cloud.settings.option(OPTIONS, "verify", True)):
        return
    sign_interpreter_calls(cloud)

    def refused(request: Request) -> bool:
        request.environ[REFUSAL_KEY] = refusal(cloud, request)
        return request.environ[REFUSAL_KEY] is not None

    cloud.add_route(refused, respond)


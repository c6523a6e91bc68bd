"""What a SigV4-signed request says about itself: the key, region and service it was signed for."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

from werkzeug.wrappers import Request

# Authorization: AWS4-HMAC-SHA256 Credential=<key>/<yyyymmdd>/<region>/<service>/aws4_request, …
_CREDENTIAL = re.compile(r"Credential=([^/]+)/\d{8}/([^/]+)/([^/]+)/")


@dataclass(frozen=True)
class CredentialScope:
    access_key: str
    region: str
    service: str


def credential_scope(request: Request) -> CredentialScope | None:
    """The scope from the Authorization header, or from a presigned URL's X-Amz-Credential."""
    found = _CREDENTIAL.search(request.headers.get("Authorization", ""))
    if found:
        return CredentialScope(*found.groups())
    parts = request.args.get("X-Amz-Credential", "").split("/")
    return CredentialScope(parts[0], parts[2], parts[3]) if len(parts) >= 4 else None


def request_region(request: Request, default: str) -> str:
    """The region a request was signed for; moto keeps one backend per region."""
    scope = credential_scope(request)
    return scope.region if scope else default


def peek_body(request: Request) -> bytes:
    """The body, read without taking it from moto: WSGI input is put back for the next reader."""
    data = request.get_data(cache=True)
    request.environ["wsgi.input"] = io.BytesIO(data)
    return data

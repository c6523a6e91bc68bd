"""Fetching a client-supplied image URL without becoming an SSRF proxy.

Policy: only `https://` and `s3://`; every hostname is resolved first and refused if *any* of its
addresses is not public (loopback, private, link-local incl. 169.254.169.254, unspecified,
multicast, reserved, CGNAT, or a v4 one hidden in a v6 form); the connection then goes to the
vetted address itself (no second DNS lookup, so DNS rebinding cannot swap it); at most
`max_redirects` redirects, each re-vetted; a byte cap and per-operation plus overall timeouts.
S3 objects are read with boto3 (which honours AWS_ENDPOINT_URL) under the same byte cap.
"""
from __future__ import annotations

import functools
import http.client
import ipaddress
import os
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from . import errors
from .errors import InferenceError
from .limits import Limits

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Target:
    """One vetted hop: the URL as given, where to connect, and what to ask for."""

    url: str
    host: str
    port: int
    path: str
    address: str


def fetch(url: str, limits: Limits) -> bytes:
    """The bytes behind an s3:// or https:// URL, or InferenceError (413 / 422)."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "s3":
        return fetch_s3(url, limits)
    if scheme == "https":
        return fetch_https(url, limits)
    raise _refused(f"URL scheme {scheme or '(none)'!r} is not allowed; use https:// or s3://")


# --------------------------------------------------------------------------- address policy
def is_allowed_address(ip: IPAddress) -> bool:
    """True only for globally routable unicast addresses (checked again for embedded v4)."""
    for candidate in _with_embedded_v4(ip):
        if (candidate.is_loopback or candidate.is_private or candidate.is_link_local
                or candidate.is_unspecified or candidate.is_multicast or candidate.is_reserved
                or not candidate.is_global):
            return False
    return True


def _with_embedded_v4(ip: IPAddress) -> list[IPAddress]:
    found: list[IPAddress] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            found.append(ip.ipv4_mapped)
        if ip.sixtofour:
            found.append(ip.sixtofour)
        if ip.teredo:
            found.extend(ip.teredo)
        if ip in _NAT64:
            found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def resolve_host(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (IP literals, odd forms included, give themselves)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def vet_url(url: str) -> Target:
    """Check scheme and host of an https URL, resolve it, and pick the address to connect to."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "https":
        raise _refused(f"URL scheme {parts.scheme or '(none)'!r} is not allowed here; use https://")
    if parts.username is not None or parts.password is not None:
        raise _refused("credentials in the URL are not allowed")
    host = parts.hostname
    if not host:
        raise _refused("the URL has no host")
    try:
        port = parts.port or 443
    except ValueError:
        raise _refused("the URL has an invalid port") from None
    address = _vetted_address(host, port)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(url=url, host=host, port=port, path=path, address=address)


def _vetted_address(host: str, port: int) -> str:
    try:
        addresses = resolve_host(host, port)
    except (OSError, UnicodeError) as err:
        raise _fetch_failed(f"cannot resolve {host!r}: {err}") from None
    if not addresses:
        raise _fetch_failed(f"{host!r} has no addresses")
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop a v6 zone id
        if not is_allowed_address(ip):
            raise _refused(f"{host!r} resolves to {ip}, which is not a public address")
    return addresses[0]


# --------------------------------------------------------------------------- https
class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a pre-resolved address; TLS still verifies the certificate for `host` (SNI)."""

    def __init__(self, target: Target, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(target.host, target.port, timeout=timeout, context=context)
        self._address = target.address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)
        self.pinned_sock = self.sock  # http.client drops .sock once a response will close

    def set_read_timeout(self, seconds: float) -> None:
        self.pinned_sock.settimeout(seconds)


def ssl_context() -> ssl.SSLContext:
    """The system trust store (tests swap this for one trusting their own CA)."""
    return ssl.create_default_context()


def fetch_https(url: str, limits: Limits) -> bytes:
    deadline = time.monotonic() + limits.fetch_deadline
    for _ in range(limits.max_redirects + 1):
        target = vet_url(url)
        location, body = _get(target, limits, deadline)
        if location is None:
            return body
        url = urljoin(url, location)
    raise _refused(f"more than {limits.max_redirects} redirects")


def _get(target: Target, limits: Limits, deadline: float) -> tuple[str | None, bytes]:
    """One request: (redirect location, b"") or (None, body)."""
    conn: _PinnedHTTPSConnection | None = None
    try:
        conn = _PinnedHTTPSConnection(target, _remaining(deadline, limits), ssl_context())
        conn.request("GET", target.path, headers={
            "User-Agent": "stepml-inference/1", "Accept": "image/*",
            "Accept-Encoding": "identity",
        })
        response = conn.getresponse()
        if response.status in REDIRECT_STATUSES:
            location = response.getheader("Location")
            if not location:
                raise _fetch_failed(f"redirect {response.status} without a Location")
            return location, b""
        if response.status != 200:
            raise _fetch_failed(f"{target.host} answered HTTP {response.status}")
        return None, _read_capped(conn, response, limits, deadline)
    except TimeoutError:  # socket.timeout is an alias
        raise _fetch_failed(f"timed out fetching from {target.host}") from None
    except ssl.SSLError as err:
        raise _fetch_failed(f"TLS error with {target.host}: {err.reason or err}") from None
    except (OSError, http.client.HTTPException) as err:
        raise _fetch_failed(f"cannot fetch from {target.host}: {err}") from None
    finally:
        if conn is not None:
            conn.close()


def _read_capped(conn: _PinnedHTTPSConnection, response: http.client.HTTPResponse,
                 limits: Limits, deadline: float) -> bytes:
    declared = response.getheader("Content-Length")
    if declared and declared.isdigit() and int(declared) > limits.max_image_bytes:
        raise _too_large(f"the URL's content is {declared} bytes")
    chunks: list[bytes] = []
    total = 0
    while True:
        conn.set_read_timeout(_remaining(deadline, limits))  # a slow drip still meets the deadline
        chunk = response.read1(_CHUNK)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > limits.max_image_bytes:
            raise _too_large("the URL's content is larger than the limit")
        chunks.append(chunk)


def _remaining(deadline: float, limits: Limits) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("fetch deadline passed")
    return min(limits.fetch_timeout, left)


# --------------------------------------------------------------------------- s3
def fetch_s3(url: str, limits: Limits) -> bytes:
    parts = urlsplit(url)
    bucket, key = parts.netloc, parts.path.lstrip("/")
    if not bucket or not key:
        raise _refused("an s3 URL needs a bucket and a key: s3://bucket/key")
    from botocore.exceptions import BotoCoreError, ClientError

    client = s3_client()
    try:
        size = client.head_object(Bucket=bucket, Key=key)["ContentLength"]
        if size > limits.max_image_bytes:
            raise _too_large(f"s3://{bucket}/{key} is {size} bytes")
        if size == 0:
            return b""
        # Range caps the read even if the object is replaced between HEAD and GET.
        response = client.get_object(Bucket=bucket, Key=key,
                                     Range=f"bytes=0-{limits.max_image_bytes}")
        body = response["Body"].read(limits.max_image_bytes + 1)
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "error")
        raise _fetch_failed(f"cannot read s3://{bucket}/{key}: {code}") from None
    except BotoCoreError as err:
        raise _fetch_failed(f"cannot read s3://{bucket}/{key}: {err}") from None
    if len(body) > limits.max_image_bytes:
        raise _too_large(f"s3://{bucket}/{key} is larger than the limit")
    return body


def s3_client():
    """A cached S3 client per endpoint/region setting (clients are thread-safe once built)."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    limits = Limits.from_env()
    return _s3_client(endpoint, region, limits.fetch_timeout)


@functools.lru_cache(maxsize=4)
def _s3_client(endpoint: str | None, region: str | None, timeout: float):
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=timeout, read_timeout=timeout,
                    retries={"max_attempts": 2, "mode": "standard"})
    # A fresh Session: boto3's default session is not safe to create clients from in threads.
    return boto3.session.Session().client("s3", region_name=region, config=config)


# --------------------------------------------------------------------------- errors
def _refused(message: str) -> InferenceError:
    return InferenceError(422, errors.URL_REFUSED, message)


def _fetch_failed(message: str) -> InferenceError:
    return InferenceError(422, errors.URL_FETCH_FAILED, message)


def _too_large(message: str) -> InferenceError:
    return InferenceError(413, errors.PAYLOAD_TOO_LARGE, message)

"""Safety of untrusted input: URL policy, the https and s3 fetchers, image decoding limits."""
from __future__ import annotations

import ipaddress
import socket

import boto3
import pytest
from moto import mock_aws

from inference import safe_fetch
from inference.errors import InferenceError
from inference.images import decode_image
from inference.limits import Limits
from tests.inference.helpers import ImageHost, image_bytes, png_bomb


def _error(call, *args) -> InferenceError:
    with pytest.raises(InferenceError) as caught:
        call(*args)
    return caught.value


# --------------------------------------------------------------------------- address policy
@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.8.9.10", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254",
    "0.0.0.0", "100.64.0.1", "224.0.0.1", "240.0.0.1", "255.255.255.255", "192.0.2.1",
    "::1", "::", "fe80::1", "fc00::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254",
    "2002:0a00:0001::1", "64:ff9b::a00:1", "2001:0:4136:e378:8000:63bf:f5ff:fffe",
])
def test_non_public_addresses_refused(address: str) -> None:
    assert not safe_fetch.is_allowed_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700::1111"])
def test_public_addresses_allowed(address: str) -> None:
    assert safe_fetch.is_allowed_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("url", [
    "file:///etc/passwd", "http://127.0.0.1/x.jpg", "http://169.254.169.254/latest/meta-data/",
    "ftp://example.com/x.jpg", "gopher://x", "x.jpg", "//example.com/x.jpg",
    "https://127.0.0.1/x.jpg", "https://169.254.169.254/latest/meta-data/",
    "https://10.0.0.8/x.jpg", "https://192.168.1.20/x.jpg", "https://[::1]/x.jpg",
    "https://[::ffff:10.0.0.1]/x.jpg", "https://2130706433/x.jpg", "https://0x7f.1/x.jpg",
    "https://localhost/x.jpg", "https://user:pw@example.com/x.jpg", "https:///x.jpg",
    "s3://bucket-only", "s3:///key",
])
def test_refused_urls(url: str) -> None:
    err = _error(safe_fetch.fetch, url, Limits())
    assert (err.status, err.code) == (422, "URLRefused"), err.reason


def test_name_resolving_to_private_address_refused(fake_dns: dict[str, list[str]]) -> None:
    fake_dns["intranet.example.com"] = ["10.20.30.40"]
    err = _error(safe_fetch.fetch, "https://intranet.example.com/cat.jpg", Limits())
    assert (err.status, err.code) == (422, "URLRefused")
    assert "10.20.30.40" in err.reason


def test_any_private_address_among_several_refuses(fake_dns: dict[str, list[str]]) -> None:
    fake_dns["mixed.example.com"] = ["93.184.215.14", "127.0.0.1"]
    assert _error(safe_fetch.vet_url, "https://mixed.example.com/").code == "URLRefused"


def test_unresolvable_name_is_a_fetch_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> list:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    err = _error(safe_fetch.fetch, "https://nowhere.invalid/x.jpg", Limits())
    assert (err.status, err.code) == (422, "URLFetchFailed")


# --------------------------------------------------------------------------- https fetch
def test_https_fetch_connects_to_the_vetted_address(image_host: ImageHost, jpeg: bytes,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    def no_second_lookup(host: str, *args: object, **kwargs: object) -> list:
        if host in ("img.test", "hop.test"):
            raise AssertionError("the connection re-resolved the name (DNS rebinding risk)")
        return real_getaddrinfo(host, *args, **kwargs)

    real_getaddrinfo = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", no_second_lookup)
    assert safe_fetch.fetch(image_host.url("/cat.jpg"), Limits()) == jpeg


def test_three_redirects_followed_fourth_refused(image_host: ImageHost, jpeg: bytes) -> None:
    assert safe_fetch.fetch(image_host.url("/hops/2", "hop.test"), Limits()) == jpeg
    err = _error(safe_fetch.fetch, image_host.url("/hops/3"), Limits())
    assert (err.status, err.code) == (422, "URLRefused") and "redirects" in err.reason
    assert image_host.hits.get("/cat.jpg") == 1  # only the first chain reached the image


@pytest.mark.parametrize("target", [
    "https://intranet.test/cat.jpg", "http://img.test/cat.jpg",
    "https://169.254.169.254/latest/meta-data/", "file:///etc/passwd", "s3://bucket/key",
])
def test_each_redirect_is_rechecked(image_host: ImageHost, target: str) -> None:
    err = _error(safe_fetch.fetch, image_host.url(f"/redirect?to={target}"), Limits())
    assert (err.status, err.code) == (422, "URLRefused"), err.reason


def test_size_cap_declared_and_streamed(image_host: ImageHost) -> None:
    limits = Limits(max_image_bytes=1024 * 1024)
    for path in ("/big-declared", "/big-stream"):
        err = _error(safe_fetch.fetch, image_host.url(path), limits)
        assert (err.status, err.code) == (413, "PayloadTooLarge"), path


def test_slow_drip_hits_the_deadline(image_host: ImageHost) -> None:
    err = _error(safe_fetch.fetch, image_host.url("/slow"),
                 Limits(fetch_timeout=1.0, fetch_deadline=0.5))
    assert (err.status, err.code) == (422, "URLFetchFailed") and "timed out" in err.reason


def test_upstream_error_status_and_bad_certificate(image_host: ImageHost,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    err = _error(safe_fetch.fetch, image_host.url("/missing.jpg"), Limits())
    assert (err.status, err.code) == (422, "URLFetchFailed") and "404" in err.reason
    monkeypatch.setattr(safe_fetch, "ssl_context", __import__("ssl").create_default_context)
    err = _error(safe_fetch.fetch, image_host.url("/cat.jpg"), Limits())
    assert (err.status, err.code) == (422, "URLFetchFailed") and "TLS" in err.reason


# --------------------------------------------------------------------------- s3 fetch
@pytest.fixture
def s3_bucket(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    safe_fetch._s3_client.cache_clear()
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="images")
        yield s3
    safe_fetch._s3_client.cache_clear()


def test_s3_fetch_and_cap(s3_bucket, jpeg: bytes) -> None:
    s3_bucket.put_object(Bucket="images", Key="cats/cat.jpg", Body=jpeg)
    assert safe_fetch.fetch("s3://images/cats/cat.jpg", Limits()) == jpeg
    err = _error(safe_fetch.fetch, "s3://images/cats/cat.jpg", Limits(max_image_bytes=100))
    assert (err.status, err.code) == (413, "PayloadTooLarge")


@pytest.mark.parametrize("url", ["s3://images/missing.jpg", "s3://no-such-bucket/x.jpg"])
def test_s3_missing_object_is_a_fetch_failure(s3_bucket, url: str) -> None:
    err = _error(safe_fetch.fetch, url, Limits())
    assert (err.status, err.code) == (422, "URLFetchFailed")


# --------------------------------------------------------------------------- image decoding
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "BMP", "GIF", "WEBP"])
def test_allowed_formats_decode(fmt: str) -> None:
    assert decode_image(image_bytes(fmt), Limits()).mode == "RGB"


def test_other_formats_refused() -> None:
    err = _error(decode_image, image_bytes("TIFF"), Limits())
    assert (err.status, err.code) == (400, "InvalidImage")


def test_truncated_jpeg_is_invalid(jpeg: bytes) -> None:
    err = _error(decode_image, jpeg[: len(jpeg) // 2], Limits())
    assert (err.status, err.code) == (400, "InvalidImage")


def test_corrupt_png_fails_verify() -> None:
    data = bytearray(image_bytes("PNG"))
    data[60] ^= 0xFF  # inside the IDAT data: its CRC no longer matches
    assert _error(decode_image, bytes(data), Limits()).code == "InvalidImage"


def test_decompression_bomb_refused_before_decoding() -> None:
    err = _error(decode_image, png_bomb(), Limits())
    assert (err.status, err.code) == (413, "ImageTooLarge")


def test_pillow_bomb_guard_also_maps_to_413() -> None:
    # With our own cap set beyond Pillow's, Pillow's DecompressionBombError answers instead.
    err = _error(decode_image, png_bomb(), Limits(max_pixels=10**12))
    assert (err.status, err.code) == (413, "ImageTooLarge")


def test_pixel_cap_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPML_MAX_PIXELS", "1000")
    err = _error(decode_image, image_bytes("PNG", size=(40, 30)), Limits.from_env())
    assert (err.status, err.code) == (413, "ImageTooLarge")
    assert decode_image(image_bytes("PNG", size=(20, 20)), Limits.from_env())


def test_bad_limit_setting_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPML_MAX_IMAGE_BYTES", "lots")
    with pytest.raises(ValueError, match="STEPML_MAX_IMAGE_BYTES"):
        Limits.from_env()

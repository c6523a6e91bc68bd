"""Shared fixtures: fake AWS credentials so nothing can reach a real account."""

import os

import pytest

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.pop("AWS_PROFILE", None)


@pytest.fixture
def artifacts_dir(request: pytest.FixtureRequest) -> str:
    """Where tests leave files worth looking at (screenshots, graphs); kept after the run."""
    path = os.path.join(os.path.dirname(__file__), "..", "test-artifacts")
    os.makedirs(path, exist_ok=True)
    return os.path.abspath(path)


# -- tiers: `make test` runs every one, `make test-unit` the fast inner loop ----------------------
LOCAL_SERVERS = ("LocalCloud(", "ThreadedMotoServer")  # what starts a server or real compute


def _starts_servers(path: str, cache: dict[str, bool] = {}) -> bool:  # noqa: B006 - a memo
    if path not in cache:
        with open(path, encoding="utf-8") as source:
            text = source.read()
        cache[path] = any(marker in text for marker in LOCAL_SERVERS)
    return cache[path]


def tier(item: pytest.Item) -> str:
    """browser (chromium), e2e (whole pipelines), localcloud (a local cloud or moto server,
    real processes), else unit (in-process moto, pure code)."""
    path = str(item.path)
    if item.path.name == "test_browser.py":
        return "browser"
    if f"{os.sep}e2e{os.sep}" in path:
        return "e2e"
    if "cloud" in getattr(item, "fixturenames", ()) or _starts_servers(path):
        return "localcloud"
    return "unit"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(tier(item))

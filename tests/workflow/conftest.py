"""One local cloud for the workflow tests (package scope: started once, stopped before any other
test package starts its own), with the throwaway step function deployed."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from infra_scripts.localcloud.core.server import LocalCloud
from tests.workflow.helpers import deploy_step_function


@pytest.fixture(scope="package")
def cloud():
    with LocalCloud() as running:
        yield running


@pytest.fixture(scope="package")
def calls_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("calls")


@pytest.fixture(scope="package")
def step_arn(cloud, calls_dir) -> str:
    return deploy_step_function(cloud, calls_dir)


@pytest.fixture
def cli() -> click.Group:
    """A fresh `stepml` group with the workflow commands, as cli.COMMAND_MODULES will add them."""
    from infra_scripts.cli import main
    from infra_scripts.commands import workflow_cli

    group = click.Group("stepml", params=main.params, callback=main.callback)
    workflow_cli.register(group)
    return group

"""The deployed stack's functions initialise in the python3.11 runtime sandbox: the check that
would have caught handlers importing Powertools with no layer to ship it (every Task would have
failed at ValidateInput with Runtime.ImportModuleError on AWS)."""

from __future__ import annotations

import pytest

from infra_scripts.deploy import Deployer
from infra_scripts.localcloud.core.server import LocalCloud
from statemachine.config import PipelineConfig

pytestmark = pytest.mark.parity
CONFIG = PipelineConfig(prefix="initcheck", bucket="initcheck-artifacts", endpoint_name="initcheck-ep")


def test_every_deployed_handler_module_initialises_in_the_sandbox():
    """AWS: a function's init imports its handler module in the runtime, with only the zip, its
    layers and the runtime's SDK on the path (https://docs.aws.amazon.com/lambda/latest/dg/python-package.html)."""
    with LocalCloud() as cloud:
        Deployer.for_local_cloud(CONFIG, cloud.url).deploy()
        runtime = cloud.extensions["awslambda.runtime"]
        functions = [fn for fn in cloud.backend("lambda").list_functions()
                     if fn.function_name.startswith(f"{CONFIG.prefix}-")]
        assert len(functions) >= 15, [fn.function_name for fn in functions]
        failures = {}
        for fn in functions:
            environment, error = runtime.start_environment(fn)
            if error is not None:
                failures[fn.function_name] = error.decode()
            else:
                runtime.add_idle(environment)
        assert failures == {}
        assert all(fn.layers for fn in functions), "every handler carries the dependencies layer"

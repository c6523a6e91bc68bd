"""moto's Step Functions interpreter logs evaluation errors at ERROR (e.g. `Exception=NoSuchJsonPathError`
for ShouldTune's Choice); they belong in the cloud's work dir, not in `stepml run`'s display
(issue 14)."""

from __future__ import annotations

import logging

import pytest

from infra_scripts.localcloud.core.server import INTERPRETER_LOGGER, LocalCloud

EVALUATOR = f"{INTERPRETER_LOGGER}.asl.component.eval_component"  # where moto logs them


def test_interpreter_errors_go_to_the_work_dir_not_the_terminal(capfd: pytest.CaptureFixture) -> None:
    with LocalCloud(extensions=[]) as cloud:
        logging.getLogger(EVALUATOR).error("Exception=NoSuchJsonPathError at '$.tuning.max_jobs'")
        kept = (cloud.work_dir / "stepfunctions-interpreter.log").read_text()
    captured = capfd.readouterr()
    assert "NoSuchJsonPathError" in kept
    assert "NoSuchJsonPathError" not in captured.out + captured.err
    assert logging.getLogger(INTERPRETER_LOGGER).propagate  # restored on stop

"""The moto internals redrive.py and s3_events.py build on (pinned moto 5.2). If one of these
fails after a moto upgrade, re-check those modules against the new moto before anything else."""

from __future__ import annotations

import copy
import inspect

import pytest


def test_stepfunctions_interpreter_seams_used_by_redrive():
    from moto.stepfunctions.parser.asl.component.common.flow.start_at import StartAt
    from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    from infra_scripts.localcloud.stepfunctions.redrive import check_moto_seams

    check_moto_seams()
    assert "start_at_name" in inspect.signature(StartAt).parameters
    assert hasattr(BaseExecutionWorkerCommunication, "terminated")
    assert "_execution_communication" in inspect.getsource(ExecutionWorker.__init__)
    logic = inspect.getsource(ExecutionWorker._execution_logic)
    assert "program.eval(self.env)" in logic and "terminated()" in logic, (
        "moto changed how an execution runs; redrive mirrors ExecutionWorker._execution_logic")


def test_redrive_is_still_missing_from_moto():
    """If moto implements RedriveExecution itself, drop our route and use moto's."""
    from moto.stepfunctions.responses import StepFunctionResponse

    assert not hasattr(StepFunctionResponse, "redrive_execution")


def test_s3_sends_eventbridge_events_to_every_rule():
    from moto.s3 import notifications

    source = inspect.getsource(notifications._send_event_bridge_message)
    assert "rule.send_to_targets(event, transform_input=False)" in source


def test_moto_events_still_cannot_deliver_to_lambda_or_step_functions():
    """s3_events delivers these itself; if moto starts doing it, we would deliver twice."""
    from moto.events.models import EventPattern, Rule
    from moto.events.utils import _BASE_EVENT_MESSAGE, EventTemplateParser

    moto_send = getattr(Rule.send_to_targets, "__wrapped__", Rule.send_to_targets)  # unpatched
    rule = Rule.__new__(Rule)
    rule.event_pattern = EventPattern(None, {})
    rule.account_id, rule.region_name = "123456789012", "us-east-1"
    for arn in ("arn:aws:lambda:us-east-1:123456789012:function:f",
                "arn:aws:states:us-east-1:123456789012:stateMachine:m"):
        rule.targets = [{"Id": "t", "Arn": arn}]
        with pytest.raises(NotImplementedError):
            moto_send(rule, copy.deepcopy(_BASE_EVENT_MESSAGE), transform_input=False)
    assert EventPattern(None, {"k": [{"wildcard": "a/*/_READY"}]}).matches_event({"k": "a/b/_READY"})
    assert "input_paths_map" in inspect.signature(EventTemplateParser.parse).parameters

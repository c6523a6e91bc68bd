"""`stepml graph`: the workflow drawn from its ASL as valid SVG, PNG and HTML."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner
from PIL import Image

from statemachine import graph
from statemachine.workflow import definition_dict

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def definition() -> dict:
    return definition_dict()  # the SDK builds it in ~2 s: once per module


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def states_in(root: ET.Element) -> dict[str, ET.Element]:
    return {g.get("data-state"): g for g in root.iter(f"{SVG}g") if "state" in (g.get("class") or "").split()}


def test_pipeline_svg_shows_every_state_choice_branches_loops_and_catches(definition):
    root = parse(graph.to_svg(definition))
    assert set(states_in(root)) == set(definition["States"])
    paths = list(root.iter(f"{SVG}path"))
    catches = [p for p in paths if "edge-catch" in p.get("class", "")]
    expected_catches = sum(len(s.get("Catch", [])) for s in definition["States"].values())
    assert len(catches) == expected_catches > 10
    loops = {(p.get("data-source"), p.get("data-target")) for p in paths if "edge-loop" in p.get("class", "")}
    assert loops == {("IsTuningComplete", "WaitForTuning"), ("IsTrainingComplete", "WaitForTraining"),
                     ("IsEndpointInService", "WaitForEndpoint")}
    choices = [p for p in paths if p.get("data-source") == "ChooseTrainingBackend"]
    assert {p.get("data-target") for p in choices} == {"StartSageMakerTraining", "StartEC2Training",
                                                       "UnknownTrainingBackend"}
    labels = "".join(t.text or "" for t in root.iter(f"{SVG}text"))
    assert '$.training.backend == "ec2"' in labels


def test_states_are_coloured_by_status(definition):
    statuses = {"ValidateInput": "succeeded", "DeployEndpoint": "failed", "CheckTraining": "running",
                "CreateModel": "caught"}
    nodes = states_in(parse(graph.to_svg(definition, statuses)))
    for name, status in statuses.items():
        shape = next(child for child in nodes[name] if child.get("class") == "shape")
        assert (shape.get("fill"), shape.get("stroke")) == graph.STATUS_COLORS[status], name
        assert nodes[name].get("data-status") == status
    assert nodes["SmokeTest"].get("data-status") == "not_run"


def test_png_and_html_render(definition):
    image = Image.open(io.BytesIO(graph.to_png(definition, {"ValidateInput": "succeeded"})))
    image.verify()
    assert image.format == "PNG" and image.size[0] > 300 and image.size[1] > 1000
    page = graph.to_html(definition, title="pipeline", rows=[{"state": "ValidateInput", "status": "ok"}])
    assert page.startswith("<!doctype html>") and "<svg" in page and "<td>ValidateInput</td>" in page


def test_small_definitions_and_unusual_states_render():
    definition = {"StartAt": "P", "States": {
        "P": {"Type": "Parallel", "Branches": [], "Next": "M"},
        "M": {"Type": "Map", "Next": "C"},
        "C": {"Type": "Choice", "Choices": [{"And": [{"Variable": "$.a", "NumericGreaterThan": 1},
                                                     {"Not": {"Variable": "$.b", "IsNull": True}}],
                                             "Next": "P"}], "Default": "Ok"},
        "Ok": {"Type": "Succeed"}}}
    root = parse(graph.to_svg(definition))
    assert set(states_in(root)) == {"P", "M", "C", "Ok"}
    assert graph.condition_text(definition["States"]["C"]["Choices"][0]) == "$.a > 1 and not ($.b null)"


def test_cli_graph_writes_svg_png_html_offline(cli, tmp_path):
    runner = CliRunner()
    for suffix in ("svg", "png"):
        out = tmp_path / f"pipeline.{suffix}"
        result = runner.invoke(cli, ["graph", "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert out.stat().st_size > 1000
    parse((tmp_path / "pipeline.svg").read_text())
    Image.open(tmp_path / "pipeline.png").verify()
    bad = runner.invoke(cli, ["graph", "--out", str(tmp_path / "pipeline.jpg")])
    assert bad.exit_code == 2 and ".svg, .png or .html" in bad.output

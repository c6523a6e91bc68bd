"""Run-scoped names and the run tag live in handlers/naming.py only (issue 14's structure item):
handlers, policies and teardown must agree, so no other module spells them out."""

from __future__ import annotations

import re
from pathlib import Path

from handlers import naming

ROOT = Path(__file__).resolve().parents[2]
CODE_DIRS = ("handlers", "infra_scripts", "statemachine", "training", "inference")
# Literals that would be a second copy of naming.py's rules (docstrings and comments aside).
COPIES = (re.compile(r"""["']stepml:run-id["']"""), re.compile(r"""endpoint/\{[^}]*\}/variant"""),
          re.compile(r"""["']hpo-["']"""), re.compile(r"""run_id["']?\]?\[:63\]"""))


def test_run_id_is_stable_short_and_name_safe() -> None:
    name = "upload/datasets/dogs v2/._ready" * 3
    run = naming.run_id(name)
    assert run == naming.run_id(name)
    assert len(run) <= 49 and re.fullmatch(r"[a-zA-Z0-9-]+", run)
    assert naming.run_id("a") != naming.run_id("a-")  # the digest tells apart names cleaned alike


def test_names_fit_their_services_limits() -> None:
    run = naming.run_id("x" * 300)
    assert len(naming.resource_name(run)) <= naming.SAGEMAKER_NAME_LIMIT
    assert len(naming.tuning_job_name(run)) <= naming.TUNING_NAME_LIMIT
    assert naming.run_of(naming.run_tags(run)) == run
    assert naming.run_of([{"Key": "other", "Value": run}]) is None


def test_scaling_resource_ids_match_only_their_endpoint() -> None:
    resource_id = naming.scaling_resource_id("dogs", "AllTraffic")
    assert resource_id == "endpoint/dogs/variant/AllTraffic"
    assert naming.scales_endpoint(resource_id, "dogs")
    assert not naming.scales_endpoint(naming.scaling_resource_id("dogs-2", "AllTraffic"), "dogs")


def test_no_module_but_naming_spells_out_the_rules() -> None:
    copies = []
    for directory in CODE_DIRS:
        for path in sorted((ROOT / directory).rglob("*.py")):
            if path.name == "naming.py":
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if any(pattern.search(line) for pattern in COPIES):
                    copies.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert copies == []

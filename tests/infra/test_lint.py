"""The linters say nothing: cfn-lint on the templates, parliament and the project's own rules on
every policy; and the rules themselves have teeth."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from cfnlint.api import ManualArgs, lint_file

from infra_scripts import policies
from infra_scripts.cfn import policy_lint
from infra_scripts.cfn.template import build_template, template_body
from statemachine.config import PipelineConfig
from statemachine.workflow import TASK_HANDLERS

REGIONS = ["us-east-1", "eu-west-1"]


@pytest.mark.parametrize("bootstrap", [False, True], ids=["stack", "bootstrap"])
def test_cfn_lint_reports_nothing(tmp_path: Path, bootstrap: bool) -> None:
    path = tmp_path / "stack.json"
    path.write_text(template_body(PipelineConfig(), bootstrap))
    matches = lint_file(path, ManualArgs(regions=REGIONS))
    assert [str(m) for m in matches] == []


def test_template_fits_the_template_url_limit() -> None:
    assert len(template_body(PipelineConfig()).encode()) < 1_000_000  # TemplateURL: 1 MB
    assert len(template_body(PipelineConfig(), bootstrap=True).encode()) < 51_200  # inline


def test_policy_linters_report_nothing() -> None:
    assert [str(f) for f in policy_lint.lint()] == []


def test_every_waiver_is_still_needed() -> None:
    """A waiver that no longer matches a parliament finding is stale: remove it."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from parliament import analyze_policy_string

    documents = policies.concrete_policies(PipelineConfig(), policy_lint.LINT_ACCOUNT)
    used = set()
    for role, document in documents.items():
        for finding in analyze_policy_string(json.dumps(document),
                                             include_community_auditors=True).findings:
            waiver = policy_lint.waiver_for(role, finding)
            if waiver:
                used.add(waiver)
    assert used == set(policy_lint.WAIVERS)


def bad_copy(key: str, statement: dict) -> dict:
    document = copy.deepcopy(policies.concrete_policies(PipelineConfig())[key])
    document["Statement"].append(statement)
    return document


@pytest.mark.parametrize("statement, issue", [
    ({"Sid": "Greedy", "Effect": "Allow", "Action": "sagemaker:*",
      "Resource": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/x"}, "WILDCARD_ACTION"),
    ({"Sid": "Lazy", "Effect": "Allow", "Action": "ec2:DescribeInstances", "Resource": "*"},
     "STAR_RESOURCE_WITHOUT_REASON"),
    ({"Sid": "NoResourceLevelPermissionClaimed", "Effect": "Allow",
      "Action": "sagemaker:DeleteEndpoint", "Resource": "*"},
     "STAR_RESOURCE_BUT_RESOURCE_LEVEL_EXISTS"),
    ({"Sid": "PassAnything", "Effect": "Allow", "Action": "iam:PassRole",
      "Resource": "arn:aws:iam::123456789012:role/admin"}, "PASS_ROLE"),
])
def test_own_rules_catch_violations(statement: dict, issue: str) -> None:
    values = policies.placeholder_values(PipelineConfig())
    found = policy_lint.own_rule_findings("predict", bad_copy("predict", statement), values)
    assert issue in {f.issue for f in found}


def test_parliament_findings_that_are_not_waived_surface() -> None:
    document = bad_copy("predict", {"Sid": "Typo", "Effect": "Allow",
                                    "Action": "sagemaker:InvokeEndpoints",
                                    "Resource": "arn:aws:sagemaker:us-east-1:1:endpoint/x"})
    assert "UNKNOWN_ACTION" in {f.issue for f in policy_lint.parliament_findings("predict",
                                                                                 document)}


def test_no_wildcard_action_and_star_resources_only_where_aws_has_no_resource_level() -> None:
    for key, document in policies.concrete_policies(PipelineConfig()).items():
        for statement in document["Statement"]:
            actions, resources = statement["Action"], statement["Resource"]
            assert not any("*" in a for a in actions), (key, statement["Sid"])
            if "*" in (resources if isinstance(resources, list) else [resources]):
                assert statement["Sid"].startswith("NoResourceLevelPermission")
                assert not any(policy_lint.has_resource_level_permission(a) for a in actions)


def test_predict_may_invoke_exactly_one_endpoint() -> None:
    config = PipelineConfig(endpoint_name="shop-classifier")
    document = policies.concrete_policies(config, "111122223333")["predict"]
    [invoke] = [s for s in document["Statement"] if "sagemaker:InvokeEndpoint" in s["Action"]]
    assert invoke["Action"] == ["sagemaker:InvokeEndpoint"]
    assert invoke["Resource"] == "arn:aws:sagemaker:us-east-1:111122223333:endpoint/shop-classifier"
    services = {a.split(":")[0] for s in document["Statement"] for a in s["Action"]}
    assert services == {"sagemaker", "logs"}


def test_pass_role_only_for_the_training_roles_with_passed_to_service() -> None:
    passes = [(key, s) for key, d in policies.concrete_policies(PipelineConfig()).items()
              for s in d["Statement"] if "iam:PassRole" in s["Action"]]
    assert {key for key, _ in passes} == {"handlers-training", "handlers-hosting"}
    for _, statement in passes:
        role = statement["Resource"].rsplit("/", 1)[-1]
        service = statement["Condition"]["StringEquals"]["iam:PassedToService"]
        assert (role, service) in {("stepml-sagemaker", "sagemaker.amazonaws.com"),
                                   ("stepml-ec2-training", "ec2.amazonaws.com")}


def test_every_task_handler_has_exactly_one_group_role() -> None:
    grouped = [m for modules in policies.HANDLER_GROUPS.values() for m in modules]
    assert sorted(grouped) == sorted(TASK_HANDLERS.values())
    template = build_template(PipelineConfig())
    for module in [*TASK_HANDLERS.values(), policies.PREDICT_MODULE, policies.ON_UPLOAD_MODULE]:
        spec = policies.role_of_module(module)
        function = next(r for r in template["Resources"].values()
                        if r["Type"] == "AWS::Lambda::Function"
                        and r["Properties"]["Handler"] == f"handlers.{module}.handler")
        assert function["Properties"]["Role"] == {"Fn::GetAtt": [spec.logical_id, "Arn"]}


def test_template_parameters_carry_the_seed_defaults() -> None:
    parameters = build_template(PipelineConfig())["Parameters"]
    defaults = {key: parameters[key]["Default"] for key in (
        "ReservedConcurrency", "ProvisionedConcurrency", "AutoscalingMax", "AutoscalingTarget")}
    assert defaults == {"ReservedConcurrency": 100, "ProvisionedConcurrency": 80,
                        "AutoscalingMax": 2, "AutoscalingTarget": 50.0}
    assert parameters["Ec2AmiParameter"]["Default"].startswith("/aws/service/deeplearning/ami/")
    assert "Default" not in parameters["BucketName"]  # a name must be given


def test_state_machine_definition_references_the_stacks_functions() -> None:
    machine = build_template(PipelineConfig())["Resources"]["StateMachine"]["Properties"]
    definition = machine["DefinitionString"]["Fn::Sub"]
    assert "arn:aws" not in definition and "123456789012" not in definition
    assert "${ValidateInputFunction.Arn}" in definition
    assert json.loads(definition.replace("${", "{"))["StartAt"] == "ValidateInput"


def test_iam_section_matches_the_policies() -> None:
    from infra_scripts.cfn import iam_doc

    assert iam_doc.IAM_MD.read_text() == iam_doc.render(), \
        "regenerate with: python -m infra_scripts.cfn.iam_doc"
    readme = iam_doc.README.read_text(encoding="utf-8")
    assert iam_doc.readme_with_section(readme) == readme, \
        "the README's IAM section is stale; regenerate with: python -m infra_scripts.cfn.iam_doc"

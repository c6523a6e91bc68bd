"""The IAM identity-policy evaluator (infra_scripts/localcloud/iam/evaluation.py), table-driven
and checked against AWS's documented rules and examples. Pure unit tests: no server.

AWS IAM User Guide pages the cases follow (each case names its page):

* Policy evaluation logic:
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html
* Explicit and implicit denies:
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic_AccessPolicyLanguage_Interplay.html
* Condition operators (String, Numeric, Date, Bool, IP, ARN, ...IfExists, Null):
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html
* Multiple keys or values (AND / OR / NOR):
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_multi-value-conditions.html
* Single-valued vs multivalued context keys, ForAllValues / ForAnyValue:
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-single-vs-multi-valued-context-keys.html
* Multivalued context key examples (aws:TagKeys):
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition_examples-multi-valued-context-keys.html
* Policy variables: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_variables.html
* Action: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_action.html
* NotAction: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_notaction.html
* Resource: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_resource.html
* NotResource: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_notresource.html
* ForAnyValue with ...IfExists on a missing key is false in real AWS (re:Post answer):
  https://repost.aws/questions/QU9HFmDzP0QGuU-fd7rS6B7w/foranyvalue-stringequalsifexists-behaving-unexpectedly
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from infra_scripts.localcloud.iam.evaluation import (
    OPERATORS,
    AuthRequest,
    Decision,
    evaluate,
    statement_ids,
    statement_matches,
)

GUIDE = "https://docs.aws.amazon.com/IAM/latest/UserGuide/"
INTERPLAY = GUIDE + "reference_policies_evaluation-logic_AccessPolicyLanguage_Interplay.html"
OPERATORS_PAGE = GUIDE + "reference_policies_elements_condition_operators.html"
MULTI_CONDITIONS = GUIDE + "reference_policies_multi-value-conditions.html"
MULTI_KEYS = GUIDE + "reference_policies_condition-single-vs-multi-valued-context-keys.html"
MULTI_EXAMPLES = GUIDE + "reference_policies_condition_examples-multi-valued-context-keys.html"
VARIABLES = GUIDE + "reference_policies_variables.html"
ACTION = GUIDE + "reference_policies_elements_action.html"
NOT_ACTION = GUIDE + "reference_policies_elements_notaction.html"
RESOURCE = GUIDE + "reference_policies_elements_resource.html"
NOT_RESOURCE = GUIDE + "reference_policies_elements_notresource.html"
REPOST_IFEXISTS = ("https://repost.aws/questions/QU9HFmDzP0QGuU-fd7rS6B7w/"
                   "foranyvalue-stringequalsifexists-behaving-unexpectedly")
OWN = "evaluation.py module docstring"  # behaviour the docs leave open: our documented choice

ALLOW, DENY, IMPLICIT = "allow", "explicit-deny", "implicit-deny"


# -- builders -------------------------------------------------------------------------------------
def allow(**elements: Any) -> dict:
    return {"Effect": "Allow", **elements}


def deny(**elements: Any) -> dict:
    return {"Effect": "Deny", **elements}


def doc(*statements: dict, version: str | None = "2012-10-17") -> dict:
    document: dict = {"Statement": list(statements)}
    if version:
        document["Version"] = version
    return document


def req(action: str, resource: str = "*") -> AuthRequest:
    """A request with an empty context: every condition key absent."""
    return AuthRequest(action, resource)


def ctx(action: str, resource: str = "*", context: Mapping[str, Any] | None = None) -> AuthRequest:
    return AuthRequest(action, resource, dict(context or {}))


@dataclass(frozen=True)
class Case:
    policies: list[tuple[str, dict]]
    request: AuthRequest
    reason: str
    statements: tuple[str, ...] | None = None  # checked when given
    source: str = OWN


def case(id: str, policies: dict | str | list[tuple[str, dict]], request: AuthRequest, reason: str,
         statements: tuple[str, ...] | None = None, source: str = OWN) -> Any:
    named = policies if isinstance(policies, list) else [("policy", policies)]
    return pytest.param(Case(named, request, reason, statements, source), id=id)


def cond(id: str, condition: dict, context: Mapping[str, Any] | None, applies: bool,
         source: str = OWN) -> Any:
    """One Allow statement with only this Condition: allowed exactly when the condition holds."""
    policy = doc(allow(Sid="S", Action="svc:Act", Resource="*", Condition=condition))
    return case(id, policy, ctx("svc:Act", "*", context), ALLOW if applies else IMPLICIT,
                source=source)


# -- the documents from AWS's pages ---------------------------------------------------------------
# INTERPLAY: allowed, implicitly denied and explicitly denied actions in one policy
GET_LIST_NO_REPORTS = doc(
    allow(Sid="AllowGetList", Action=["iam:Get*", "iam:List*"], Resource="*"),
    deny(Sid="DenyReports", Action="iam:*Report", Resource="*"),
)
READ_AND_REPORTS = [("readonly", GET_LIST_NO_REPORTS), ("reports", doc(
    allow(Sid="Reports", Action="iam:GenerateCredentialReport", Resource="*")))]
# OPERATORS_PAGE (String): principal tagged with the iamuser-admin job category
ACCESS_KEYS_BY_TAG = doc(allow(
    Sid="Keys", Action="iam:*AccessKey*", Resource="arn:aws:iam::111122223333:user/*",
    Condition={"StringEquals": {"aws:PrincipalTag/job-category": "iamuser-admin"}}))
ALICE_USER = "arn:aws:iam::111122223333:user/alice"
ADMIN_TAG = {"aws:PrincipalTag/job-category": "iamuser-admin"}
# OPERATORS_PAGE (String): an S3 "home directory" with ${aws:username}
HOME = "arn:aws:s3:::BUCKET-NAME/home/${aws:username}"
HOME_DIRECTORY = doc(
    allow(Sid="ListAll", Action=["s3:ListAllMyBuckets", "s3:GetBucketLocation"], Resource="arn:aws:s3:::*"),
    allow(Sid="ListHome", Action="s3:ListBucket", Resource="arn:aws:s3:::BUCKET-NAME",
          Condition={"StringLike": {"s3:prefix": ["", "home/", "home/${aws:username}/"]}}),
    allow(Sid="OwnObjects", Action="s3:*", Resource=[HOME, HOME + "/*"]),
)
DAVID = {"aws:username": "David"}
# OPERATORS_PAGE (Bool): deny S3 without TLS, next to an Allow
EXAMPLE_BUCKET = ["arn:aws:s3:::DOC-EXAMPLE-BUCKET", "arn:aws:s3:::DOC-EXAMPLE-BUCKET/*"]
TLS_ONLY = [("s3", doc(allow(Sid="S3", Action="s3:*", Resource="*"))),
            ("tls", doc(deny(Sid="BooleanExample", Action="s3:*", Resource=EXAMPLE_BUCKET,
                             Condition={"Bool": {"aws:SecureTransport": "false"}})))]
# OPERATORS_PAGE (...IfExists): StringLike on ec2:InstanceType fails for the resources without it
INSTANCE_TYPES = ["t1.*", "t2.*", "m3.*"]
RUN_NOT_WORKING = doc(allow(Sid="THISPOLICYDOESNOTWORK", Action="ec2:RunInstances", Resource="*",
                            Condition={"StringLike": {"ec2:InstanceType": INSTANCE_TYPES}}))
RUN_IF_EXISTS = doc(allow(Sid="RunInstance", Action="ec2:RunInstances", Resource="*",
                          Condition={"StringLikeIfExists": {"ec2:InstanceType": INSTANCE_TYPES}}))
IMAGE = "arn:aws:ec2:us-east-1::image/ami-12345678"
INSTANCE = "arn:aws:ec2:us-east-1:111122223333:instance/*"
# OPERATORS_PAGE (Null): no temporary credentials for EC2
NO_TEMPORARY_CREDENTIALS = doc(allow(Sid="LongTerm", Action="ec2:*", Resource="*",
                                     Condition={"Null": {"aws:TokenIssueTime": "true"}}))
# MULTI_EXAMPLES: deny tagging unless every tag key starts with key1
EVERYONE = ("admin", doc(allow(Sid="Everything", Action="*", Resource="*")))
DENY_RESTRICTED_TAGS = [EVERYONE, ("tags", doc(deny(
    Sid="DenyRestrictedTags", Action=["iam:Tag*", "iam:UnTag*"], Resource=["*"],
    Condition={"ForAllValues:StringNotLike": {"aws:TagKeys": "key1*"}})))]
# MULTI_CONDITIONS: DynamoDB attributes, ForAllValues on GetItem and ForAnyValue on PutItem
THREAD = "arn:aws:dynamodb:us-east-2:111122223333:table/Thread"
ATTRIBUTES = "dynamodb:requestedAttributes"
READABLE = {"ForAllValues:StringLike": {ATTRIBUTES: ["PostDateTime", "Message", "Tags"]}}
FORBIDDEN = {"ForAnyValue:StringLike": {ATTRIBUTES: ["ID", "PostDateTime"]}}
THREAD_ATTRIBUTES = [
    ("read", doc(allow(Sid="ReadSome", Action="dynamodb:GetItem", Resource=THREAD, Condition=READABLE))),
    ("write", doc(allow(Sid="Write", Action="dynamodb:PutItem", Resource=THREAD),
                  deny(Sid="NoKeys", Action="dynamodb:PutItem", Resource=THREAD, Condition=FORBIDDEN))),
]
# NOT_ACTION: everything in S3 but DeleteBucket; everything but IAM; deny without MFA
S3_BUT_DELETE_BUCKET = doc(allow(Sid="S3", NotAction="s3:DeleteBucket", Resource="arn:aws:s3:::*"))
ALL_BUT_IAM = doc(allow(Sid="NotIam", NotAction="iam:*", Resource="*"))
MFA_OR_IAM_ONLY = [EVERYONE, ("mfa", doc(deny(
    Sid="DenyAllUsersNotUsingMFA", NotAction="iam:*", Resource="*",
    Condition={"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}})))]
# NOT_RESOURCE: HRPayroll may reach only the Payroll folder of HRBucket
PAYROLL_ONLY = [EVERYONE, ("payroll", doc(deny(
    Sid="OnlyPayroll", Action="s3:*",
    NotResource=["arn:aws:s3:::HRBucket/Payroll", "arn:aws:s3:::HRBucket/Payroll/*"])))]
# RESOURCE: one wildcard ARN and the objects it does and does not cover
DEMO_TEST_OBJECTS = doc(allow(Sid="T", Action="s3:*", Resource="arn:aws:s3:::amzn-s3-demo-bucket/*/test/*"))
DEMO_BUCKET = "arn:aws:s3:::amzn-s3-demo-bucket/"
# VARIABLES: a queue per user
OWN_QUEUES = doc(allow(Sid="ListForConsole", Action="sqs:ListQueues", Resource="*"),
                 allow(Sid="AllQueueActions", Action="sqs:*",
                       Resource="arn:aws:sqs:us-east-2:*:${aws:username}-queue"))
ALICE = {"aws:username": "alice"}
OLD_STATEMENT = allow(Sid="Old", Action="s3:*", Resource="arn:aws:s3:::b/${aws:username}")
OWN_PREFIX_ONLY = [EVERYONE, ("own", doc(
    deny(Sid="OnlyOwn", Action="s3:*", NotResource="arn:aws:s3:::b/${aws:username}/*")))]
# document shapes
TWO_DENIES = [("a", doc(deny(Sid="D1", Action="s3:*", Resource="*"),
                        allow(Sid="A", Action="*", Resource="*"))),
              ("b", doc(deny(Action="s3:Get*", Resource="*")))]
JSON_TEXT = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}'

EVALUATION_CASES = [
    # -- evaluation order (INTERPLAY) --
    case("interplay-get-list-allowed", GET_LIST_NO_REPORTS, req("iam:ListUsers"), ALLOW,
         ("policy/AllowGetList",), INTERPLAY),
    case("interplay-create-policy-implicitly-denied", GET_LIST_NO_REPORTS, req("iam:CreatePolicy"), IMPLICIT,
         (), INTERPLAY),
    case("interplay-report-explicitly-denied-over-allow", GET_LIST_NO_REPORTS,
         req("iam:GetOrganizationsAccessReport"), DENY, ("policy/DenyReports",), INTERPLAY),
    case("interplay-deny-wins-over-another-policy", READ_AND_REPORTS, req("iam:GenerateCredentialReport"),
         DENY, ("readonly/DenyReports",), INTERPLAY),
    case("no-policies-implicit-deny", [], req("s3:GetObject", "arn:aws:s3:::b/k"), IMPLICIT, ()),
    # -- Action (ACTION) --
    case("action-case-insensitive-wildcard-inside-name", ACCESS_KEYS_BY_TAG,
         ctx("IAM:createaccesskey", ALICE_USER, ADMIN_TAG), ALLOW, ("policy/Keys",), ACTION),
    case("action-question-mark-one-character", doc(allow(Sid="Q", Action="s3:?etObject", Resource="*")),
         req("s3:GetObject"), ALLOW, ("policy/Q",)),
    case("action-question-mark-not-two", doc(allow(Sid="Q", Action="s3:?etObject", Resource="*")),
         req("s3:XYetObject"), IMPLICIT),
    case("action-star-everything", doc(allow(Sid="All", Action="*", Resource="*")),
         req("sagemaker:InvokeEndpoint"), ALLOW),
    case("action-other-service-not-matched", doc(allow(Sid="S3", Action="s3:*", Resource="*")),
         req("sqs:SendMessage"), IMPLICIT),
    # -- String operators with a principal tag (OPERATORS_PAGE) --
    case("string-equals-principal-tag-missing", ACCESS_KEYS_BY_TAG,
         req("iam:CreateAccessKey", ALICE_USER), IMPLICIT, (), OPERATORS_PAGE),
    case("string-equals-principal-tag-other-value", ACCESS_KEYS_BY_TAG,
         ctx("iam:CreateAccessKey", ALICE_USER, {"aws:PrincipalTag/job-category": "dev"}), IMPLICIT, (),
         OPERATORS_PAGE),
    case("condition-key-names-case-insensitive", ACCESS_KEYS_BY_TAG,
         ctx("iam:ListAccessKeys", ALICE_USER, {"AWS:principaltag/JOB-CATEGORY": "iamuser-admin"}), ALLOW,
         ("policy/Keys",), VARIABLES),
    case("resource-other-account-not-matched", ACCESS_KEYS_BY_TAG,
         ctx("iam:CreateAccessKey", "arn:aws:iam::999999999999:user/alice", ADMIN_TAG), IMPLICIT, (),
         OPERATORS_PAGE),
    # -- StringLike with ${aws:username} (OPERATORS_PAGE, VARIABLES) --
    case("home-list-own-prefix", HOME_DIRECTORY,
         ctx("s3:ListBucket", "arn:aws:s3:::BUCKET-NAME", {**DAVID, "s3:prefix": "home/David/"}), ALLOW,
         ("policy/ListHome",), OPERATORS_PAGE),
    case("home-list-root-prefix", HOME_DIRECTORY,
         ctx("s3:ListBucket", "arn:aws:s3:::BUCKET-NAME", {**DAVID, "s3:prefix": ""}), ALLOW,
         ("policy/ListHome",), OPERATORS_PAGE),
    case("home-list-someone-elses-prefix", HOME_DIRECTORY,
         ctx("s3:ListBucket", "arn:aws:s3:::BUCKET-NAME", {**DAVID, "s3:prefix": "home/Adele/"}), IMPLICIT,
         (), OPERATORS_PAGE),
    case("home-own-object", HOME_DIRECTORY,
         ctx("s3:GetObject", "arn:aws:s3:::BUCKET-NAME/home/David/notes.txt", DAVID), ALLOW,
         ("policy/OwnObjects",), OPERATORS_PAGE),
    case("home-someone-elses-object", HOME_DIRECTORY,
         ctx("s3:GetObject", "arn:aws:s3:::BUCKET-NAME/home/Adele/notes.txt", DAVID), IMPLICIT, (),
         OPERATORS_PAGE),
    case("home-object-without-username-variable-unresolved", HOME_DIRECTORY,
         req("s3:GetObject", "arn:aws:s3:::BUCKET-NAME/home/David/notes.txt"), IMPLICIT, (), VARIABLES),
    # ListAllMyBuckets needs Resource "*": "arn:aws:s3:::*" does not cover it (NOT_ACTION page)
    case("arn-pattern-does-not-cover-star-resource", HOME_DIRECTORY, req("s3:ListAllMyBuckets", "*"),
         IMPLICIT, (), NOT_ACTION),
    case("every-matching-allow-listed", HOME_DIRECTORY,
         ctx("s3:GetBucketLocation", "arn:aws:s3:::BUCKET-NAME/home/David", DAVID), ALLOW,
         ("policy/ListAll", "policy/OwnObjects"), OPERATORS_PAGE),
    # -- Bool (OPERATORS_PAGE) --
    case("bool-deny-without-tls", TLS_ONLY,
         ctx("s3:GetObject", "arn:aws:s3:::DOC-EXAMPLE-BUCKET/a", {"aws:SecureTransport": False}), DENY,
         ("tls/BooleanExample",), OPERATORS_PAGE),
    case("bool-allow-with-tls", TLS_ONLY,
         ctx("s3:GetObject", "arn:aws:s3:::DOC-EXAMPLE-BUCKET/a", {"aws:SecureTransport": True}), ALLOW,
         ("s3/S3",), OPERATORS_PAGE),
    case("bool-deny-other-bucket-unaffected", TLS_ONLY,
         ctx("s3:GetObject", "arn:aws:s3:::other/a", {"aws:SecureTransport": "false"}), ALLOW, ("s3/S3",),
         OPERATORS_PAGE),
    # -- ...IfExists (OPERATORS_PAGE) --
    case("ifexists-doc-plain-stringlike-fails-on-image", RUN_NOT_WORKING, req("ec2:RunInstances", IMAGE),
         IMPLICIT, (), OPERATORS_PAGE),
    case("ifexists-doc-missing-key-true-on-image", RUN_IF_EXISTS, req("ec2:RunInstances", IMAGE), ALLOW,
         ("policy/RunInstance",), OPERATORS_PAGE),
    case("ifexists-doc-present-key-allowed-type", RUN_IF_EXISTS,
         ctx("ec2:RunInstances", INSTANCE, {"ec2:InstanceType": "t2.micro"}), ALLOW, ("policy/RunInstance",),
         OPERATORS_PAGE),
    case("ifexists-doc-present-key-other-type", RUN_IF_EXISTS,
         ctx("ec2:RunInstances", INSTANCE, {"ec2:InstanceType": "m5.large"}), IMPLICIT, (), OPERATORS_PAGE),
    # -- Null (OPERATORS_PAGE) --
    case("null-true-long-term-credentials", NO_TEMPORARY_CREDENTIALS, req("ec2:DescribeInstances"), ALLOW,
         ("policy/LongTerm",), OPERATORS_PAGE),
    case("null-true-temporary-credentials", NO_TEMPORARY_CREDENTIALS,
         ctx("ec2:DescribeInstances", "*", {"aws:TokenIssueTime": "2024-01-01T00:00:00Z"}), IMPLICIT, (),
         OPERATORS_PAGE),
    # -- ForAllValues with a Deny (MULTI_EXAMPLES: the page's four-row table) --
    case("tagkeys-deny-key1-legal", DENY_RESTRICTED_TAGS,
         ctx("iam:TagUser", "*", {"aws:TagKeys": ["key1:legal"]}), ALLOW, ("admin/Everything",),
         MULTI_EXAMPLES),
    case("tagkeys-deny-key1-hr-personnel", DENY_RESTRICTED_TAGS,
         ctx("iam:TagUser", "*", {"aws:TagKeys": ["key1:hr", "key1:personnel"]}), ALLOW, None,
         MULTI_EXAMPLES),
    case("tagkeys-deny-key2-audit", DENY_RESTRICTED_TAGS,
         ctx("iam:TagRole", "*", {"aws:TagKeys": ["key2:audit"]}), DENY, ("tags/DenyRestrictedTags",),
         MULTI_EXAMPLES),
    case("tagkeys-deny-no-tagkeys-matches", DENY_RESTRICTED_TAGS, req("iam:UntagRole"), DENY,
         ("tags/DenyRestrictedTags",), MULTI_EXAMPLES),
    # -- ForAllValues / ForAnyValue on DynamoDB attributes (MULTI_CONDITIONS) --
    case("forallvalues-attributes-all-listed", THREAD_ATTRIBUTES,
         ctx("dynamodb:GetItem", THREAD, {ATTRIBUTES: ["PostDateTime", "Message"]}), ALLOW,
         ("read/ReadSome",), MULTI_CONDITIONS),
    case("forallvalues-attributes-one-unlisted", THREAD_ATTRIBUTES,
         ctx("dynamodb:GetItem", THREAD, {ATTRIBUTES: ["PostDateTime", "UserName"]}), IMPLICIT, (),
         MULTI_CONDITIONS),
    case("foranyvalue-deny-one-forbidden-attribute", THREAD_ATTRIBUTES,
         ctx("dynamodb:PutItem", THREAD, {ATTRIBUTES: ["UserName", "Message", "PostDateTime"]}), DENY,
         ("write/NoKeys",), MULTI_CONDITIONS),
    case("foranyvalue-deny-no-forbidden-attribute", THREAD_ATTRIBUTES,
         ctx("dynamodb:PutItem", THREAD, {ATTRIBUTES: ["UserName"]}), ALLOW, ("write/Write",),
         MULTI_CONDITIONS),
    # -- NotAction (NOT_ACTION) --
    case("notaction-allow-s3-get-object", S3_BUT_DELETE_BUCKET, req("s3:GetObject", "arn:aws:s3:::b/k"),
         ALLOW, ("policy/S3",), NOT_ACTION),
    case("notaction-allow-excluded-action", S3_BUT_DELETE_BUCKET, req("s3:DeleteBucket", "arn:aws:s3:::b"),
         IMPLICIT, (), NOT_ACTION),
    case("notaction-allow-excluded-case-insensitive", S3_BUT_DELETE_BUCKET,
         req("S3:deletebucket", "arn:aws:s3:::b"), IMPLICIT, (), NOT_ACTION),
    case("notaction-allow-needs-star-resource", S3_BUT_DELETE_BUCKET, req("s3:ListAllMyBuckets", "*"),
         IMPLICIT, (), NOT_ACTION),
    case("notaction-all-but-iam-ec2", ALL_BUT_IAM, req("ec2:RunInstances"), ALLOW, ("policy/NotIam",),
         NOT_ACTION),
    case("notaction-all-but-iam-iam", ALL_BUT_IAM, req("iam:CreateUser"), IMPLICIT, (), NOT_ACTION),
    case("notaction-deny-no-mfa-key-missing", MFA_OR_IAM_ONLY, req("ec2:DescribeInstances"), DENY,
         ("mfa/DenyAllUsersNotUsingMFA",), NOT_ACTION),
    case("notaction-deny-mfa-false", MFA_OR_IAM_ONLY,
         ctx("ec2:DescribeInstances", "*", {"aws:MultiFactorAuthPresent": "false"}), DENY, None, NOT_ACTION),
    case("notaction-deny-mfa-true", MFA_OR_IAM_ONLY,
         ctx("ec2:DescribeInstances", "*", {"aws:MultiFactorAuthPresent": True}), ALLOW, None, NOT_ACTION),
    case("notaction-deny-iam-exempt", MFA_OR_IAM_ONLY, req("iam:ListUsers"), ALLOW, ("admin/Everything",),
         NOT_ACTION),
    # -- NotResource (NOT_RESOURCE) --
    case("notresource-payroll-folder", PAYROLL_ONLY,
         req("s3:GetObject", "arn:aws:s3:::HRBucket/Payroll/jan.csv"), ALLOW, ("admin/Everything",),
         NOT_RESOURCE),
    case("notresource-payroll-itself", PAYROLL_ONLY, req("s3:ListBucket", "arn:aws:s3:::HRBucket/Payroll"),
         ALLOW, None, NOT_RESOURCE),
    case("notresource-other-folder-denied", PAYROLL_ONLY,
         req("s3:GetObject", "arn:aws:s3:::HRBucket/Other/x"), DENY, ("payroll/OnlyPayroll",), NOT_RESOURCE),
    case("notresource-other-service-unaffected", PAYROLL_ONLY, req("ec2:DescribeInstances"), ALLOW, None,
         NOT_RESOURCE),
    # -- Resource wildcards (RESOURCE) --
    *[case(f"resource-star-spans-slashes-{n}", DEMO_TEST_OBJECTS, req("s3:GetObject", DEMO_BUCKET + key),
           ALLOW, ("policy/T",), RESOURCE)
      for n, key in enumerate(["1/test/object.jpg", "1/2/test/3/object.jpg", "1///test///object.jpg",
                               "/test/object.jpg", "1/test/"])],
    *[case(f"resource-star-no-match-{n}", DEMO_TEST_OBJECTS, req("s3:GetObject", DEMO_BUCKET + key),
           IMPLICIT, (), RESOURCE)
      for n, key in enumerate(["1-test/object.jpg", "test/object.jpg"])],
    case("resource-segment-final-star-crosses-colons",
         doc(allow(Sid="Logs", Action="logs:*", Resource="arn:aws:logs:us-east-1:111122223333:*")),
         req("logs:PutLogEvents", "arn:aws:logs:us-east-1:111122223333:log-group:app:log-stream:x"), ALLOW,
         ("policy/Logs",), RESOURCE),
    case("resource-mid-segment-star-stays-in-segment",
         doc(allow(Sid="Q", Action="sqs:*", Resource="arn:aws:sqs:us-*-1:111122223333:jobs")),
         req("sqs:SendMessage", "arn:aws:sqs:us-east:999:x-1:111122223333:jobs"), IMPLICIT, (), RESOURCE),
    case("resource-mid-segment-star-within-segment",
         doc(allow(Sid="Q", Action="sqs:*", Resource="arn:aws:sqs:us-*-1:111122223333:jobs")),
         req("sqs:SendMessage", "arn:aws:sqs:us-west-1:111122223333:jobs"), ALLOW, ("policy/Q",), RESOURCE),
    case("resource-case-sensitive",
         doc(allow(Sid="Bob", Action="iam:*", Resource="arn:aws:iam::111122223333:user/Bob")),
         req("iam:GetUser", "arn:aws:iam::111122223333:user/bob"), IMPLICIT, (), RESOURCE),
    case("resource-question-mark", doc(allow(Sid="T", Action="s3:*", Resource="arn:aws:s3:::logs-202?")),
         req("s3:ListBucket", "arn:aws:s3:::logs-2024"), ALLOW, ("policy/T",), RESOURCE),
    case("resource-star-matches-star-request", doc(allow(Sid="T", Action="*", Resource="*")),
         req("s3:ListAllMyBuckets", "*"), ALLOW, ("policy/T",), RESOURCE),
    # -- policy variables in Resource (VARIABLES) --
    case("variable-own-queue", OWN_QUEUES,
         ctx("sqs:SendMessage", "arn:aws:sqs:us-east-2:111122223333:alice-queue", ALICE), ALLOW,
         ("policy/AllQueueActions",), VARIABLES),
    case("variable-someone-elses-queue", OWN_QUEUES,
         ctx("sqs:SendMessage", "arn:aws:sqs:us-east-2:111122223333:bob-queue", ALICE), IMPLICIT, (),
         VARIABLES),
    case("variable-other-region-queue", OWN_QUEUES,
         ctx("sqs:SendMessage", "arn:aws:sqs:us-west-2:111122223333:alice-queue", ALICE), IMPLICIT, (),
         VARIABLES),
    case("variable-principal-tag",
         doc(allow(Sid="Dept", Action="s3:*", Resource="arn:aws:s3:::bucket/${aws:PrincipalTag/department}")),
         ctx("s3:ListBucket", "arn:aws:s3:::bucket/hr", {"aws:principaltag/Department": "hr"}), ALLOW,
         ("policy/Dept",), VARIABLES),
    case("variable-default-value",
         doc(allow(Sid="Anon", Action="s3:*", Resource="arn:aws:s3:::bucket/${aws:userid, 'anonymous'}")),
         req("s3:GetObject", "arn:aws:s3:::bucket/anonymous"), ALLOW, ("policy/Anon",), VARIABLES),
    case("variable-default-not-used-when-present",
         doc(allow(Sid="Anon", Action="s3:*", Resource="arn:aws:s3:::bucket/${aws:userid, 'anonymous'}")),
         ctx("s3:GetObject", "arn:aws:s3:::bucket/anonymous", {"aws:userid": "AIDAEXAMPLE"}), IMPLICIT, (),
         VARIABLES),
    case("variable-value-is-literal-not-wildcard",
         doc(allow(Sid="Own", Action="s3:*", Resource="arn:aws:s3:::b/${aws:username}")),
         ctx("s3:GetObject", "arn:aws:s3:::b/anything", {"aws:username": "*"}), IMPLICIT, (), VARIABLES),
    case("variable-escape-star-is-literal",
         doc(allow(Sid="Lit", Action="s3:*", Resource="arn:aws:s3:::b/${*}")),
         req("s3:GetObject", "arn:aws:s3:::b/*"), ALLOW, ("policy/Lit",), VARIABLES),
    case("variable-escape-star-not-wildcard",
         doc(allow(Sid="Lit", Action="s3:*", Resource="arn:aws:s3:::b/${*}")),
         req("s3:GetObject", "arn:aws:s3:::b/x"), IMPLICIT, (), VARIABLES),
    case("variable-multivalued-key-cannot-be-variable",
         doc(allow(Sid="T", Action="s3:*", Resource="arn:aws:s3:::b/${aws:TagKeys}")),
         ctx("s3:GetObject", "arn:aws:s3:::b/a", {"aws:TagKeys": ["a"]}), IMPLICIT, (), MULTI_KEYS),
    case("variable-literal-without-version", doc(OLD_STATEMENT, version=None),
         ctx("s3:GetObject", "arn:aws:s3:::b/${aws:username}", ALICE), ALLOW, ("policy/Old",), VARIABLES),
    case("variable-literal-without-version-no-substitution", doc(OLD_STATEMENT, version="2008-10-17"),
         ctx("s3:GetObject", "arn:aws:s3:::b/alice", ALICE), IMPLICIT, (), VARIABLES),
    case("variable-unresolved-in-notresource-does-not-apply", OWN_PREFIX_ONLY,
         req("s3:GetObject", "arn:aws:s3:::b/alice/x"), ALLOW, ("admin/Everything",)),
    case("variable-resolved-in-notresource-denies", OWN_PREFIX_ONLY,
         ctx("s3:GetObject", "arn:aws:s3:::b/bob/x", ALICE), DENY, ("own/OnlyOwn",), VARIABLES),
    # -- document shapes --
    case("statement-as-single-object",
         {"Version": "2012-10-17", "Statement": allow(Action="s3:GetObject", Resource="*")},
         req("s3:GetObject", "arn:aws:s3:::b/k"), ALLOW, ("policy/#0",)),
    case("policy-as-json-text", JSON_TEXT, req("s3:GetObject", "arn:aws:s3:::b/k"), ALLOW, ("policy/#0",)),
    case("statements-without-sid-numbered",
         doc(allow(Action="sqs:*", Resource="*"), allow(Action="*", Resource="*")), req("sqs:SendMessage"),
         ALLOW, ("policy/#0", "policy/#1")),
    case("every-deny-listed", TWO_DENIES, req("s3:GetObject", "arn:aws:s3:::b/k"), DENY, ("a/D1", "b/#0")),
    case("unknown-effect-ignored", doc({"Effect": "Maybe", "Action": "*", "Resource": "*"}),
         req("s3:GetObject"), IMPLICIT, ()),
    case("missing-action-never-applies", doc(allow(Resource="*")), req("s3:GetObject"), IMPLICIT, ()),
    case("missing-resource-never-applies", doc(allow(Action="*")), req("s3:GetObject"), IMPLICIT, ()),
    case("non-string-action-never-applies", doc(allow(NotAction=[5], Resource="*")), req("s3:GetObject"),
         IMPLICIT, ()),
    case("empty-action-list-never-applies", doc(allow(Action=[], Resource="*")), req("s3:GetObject"),
         IMPLICIT, ()),
]


@pytest.mark.parametrize("c", EVALUATION_CASES)
def test_evaluate(c: Case) -> None:
    decision = evaluate(c.policies, c.request)
    assert (decision.allowed, decision.reason) == (c.reason == ALLOW, c.reason), c.source
    if c.statements is not None:
        assert decision.statements == c.statements, c.source
    if c.reason == IMPLICIT:
        assert decision.statements == ()


# -- conditions, one Allow statement each ---------------------------------------------------------
# OPERATORS_PAGE (ARN): a value that StringLike matches and ArnLike does not
FINANCE_VALUE = "arn:aws:someservice:us-east-2:999999999999:store/abc:111122223333:finance/document.txt"
TAGS = "aws:TagKeys"
CONDITION_CASES = [
    # missing key: positive false, negated true (OPERATORS_PAGE "Important" note)
    cond("missing-key-positive-false", {"StringEquals": {"k": "v"}}, None, False, OPERATORS_PAGE),
    cond("missing-key-string-not-equals-true", {"StringNotEquals": {"k": "v"}}, None, True, OPERATORS_PAGE),
    cond("missing-key-string-not-like-true", {"StringNotLike": {"k": "v*"}}, None, True, OPERATORS_PAGE),
    cond("missing-key-arn-not-like-true", {"ArnNotLike": {"aws:SourceArn": "arn:aws:sns:*:*:t"}}, None, True,
         OPERATORS_PAGE),
    cond("missing-key-arn-not-equals-true", {"ArnNotEquals": {"aws:SourceArn": "arn:aws:sns:*:*:t"}}, None,
         True, OPERATORS_PAGE),
    cond("missing-key-numeric-not-equals-true", {"NumericNotEquals": {"n": "1"}}, None, True, OPERATORS_PAGE),
    cond("missing-key-not-ip-address-true", {"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, None, True,
         OPERATORS_PAGE),
    # String operators (OPERATORS_PAGE)
    cond("string-equals-case-sensitive", {"StringEquals": {"k": "Value"}}, {"k": "value"}, False,
         OPERATORS_PAGE),
    cond("string-equals-ignore-case", {"StringEqualsIgnoreCase": {"k": "Value"}}, {"k": "VALUE"}, True,
         OPERATORS_PAGE),
    cond("string-not-equals-ignore-case-same", {"StringNotEqualsIgnoreCase": {"k": "audit"}}, {"k": "AUDIT"},
         False, OPERATORS_PAGE),
    cond("string-not-equals-ignore-case-other", {"StringNotEqualsIgnoreCase": {"k": "audit"}}, {"k": "dev"},
         True, OPERATORS_PAGE),
    cond("string-equals-star-is-literal", {"StringEquals": {"k": "a*"}}, {"k": "abc"}, False, OPERATORS_PAGE),
    cond("string-like-star", {"StringLike": {"k": "a*"}}, {"k": "abc"}, True, OPERATORS_PAGE),
    cond("string-like-needs-wildcard-for-partial", {"StringLike": {"k": "ab"}}, {"k": "abc"}, False,
         OPERATORS_PAGE),
    cond("string-like-question-mark", {"StringLike": {"k": "a?c"}}, {"k": "abc"}, True, OPERATORS_PAGE),
    cond("string-like-case-sensitive", {"StringLike": {"k": "A*"}}, {"k": "abc"}, False, OPERATORS_PAGE),
    cond("string-not-like-match-false", {"StringNotLike": {"k": "a*"}}, {"k": "abc"}, False, OPERATORS_PAGE),
    # several values OR; negated NOR; keys and operators AND (MULTI_CONDITIONS)
    cond("values-or", {"StringEquals": {"aws:PrincipalTag/role": ["audit", "security"]}},
         {"aws:PrincipalTag/role": "security"}, True, MULTI_CONDITIONS),
    cond("negated-values-nor-one-matches",
         {"StringNotEquals": {"aws:PrincipalTag/role": ["audit", "security"]}},
         {"aws:PrincipalTag/role": "audit"}, False, MULTI_CONDITIONS),
    cond("negated-values-nor-none-matches",
         {"StringNotEquals": {"aws:PrincipalTag/role": ["audit", "security"]}},
         {"aws:PrincipalTag/role": "dev"}, True, MULTI_CONDITIONS),
    cond("keys-and-both", {"StringEquals": {"a": "1", "b": "2"}}, {"a": "1", "b": "2"}, True,
         MULTI_CONDITIONS),
    cond("keys-and-one-fails", {"StringEquals": {"a": "1", "b": "2"}}, {"a": "1", "b": "3"}, False,
         MULTI_CONDITIONS),
    cond("operators-and-one-fails", {"StringEquals": {"a": "1"}, "StringLike": {"b": "x*"}},
         {"a": "1", "b": "y"}, False, MULTI_CONDITIONS),
    cond("operators-and-both", {"StringEquals": {"a": "1"}, "StringLike": {"b": "x*"}}, {"a": "1", "b": "xy"},
         True, MULTI_CONDITIONS),
    cond("empty-condition-block", {}, None, True),
    # ARN operators (OPERATORS_PAGE): per-segment matching, the page's StringLike-vs-ArnLike example
    cond("arn-stringlike-spans-colons",
         {"StringLike": {"aws:SourceArn": "arn:aws:someservice:*:111122223333:finance/*"}},
         {"aws:SourceArn": FINANCE_VALUE}, True, OPERATORS_PAGE),
    cond("arn-like-per-segment",
         {"ArnLike": {"aws:SourceArn": "arn:aws:someservice:*:111122223333:finance/*"}},
         {"aws:SourceArn": FINANCE_VALUE}, False, OPERATORS_PAGE),
    cond("arn-equals-source-topic",
         {"ArnEquals": {"aws:SourceArn": "arn:aws:sns:us-east-2:123456789012:TOPIC-ID"}},
         {"aws:SourceArn": "arn:aws:sns:us-east-2:123456789012:TOPIC-ID"}, True, OPERATORS_PAGE),
    cond("arn-equals-other-topic",
         {"ArnEquals": {"aws:SourceArn": "arn:aws:sns:us-east-2:123456789012:TOPIC-ID"}},
         {"aws:SourceArn": "arn:aws:sns:us-east-2:123456789012:OTHER"}, False, OPERATORS_PAGE),
    cond("arn-equals-source-missing",
         {"ArnEquals": {"aws:SourceArn": "arn:aws:sns:us-east-2:123456789012:TOPIC-ID"}}, None, False,
         OPERATORS_PAGE),
    cond("arn-like-wildcard-segments", {"ArnLike": {"aws:SourceArn": "arn:aws:sns:*:123456789012:*"}},
         {"aws:SourceArn": "arn:aws:sns:eu-west-1:123456789012:builds"}, True, OPERATORS_PAGE),
    cond("arn-equals-wildcards-too", {"ArnEquals": {"aws:SourceArn": "arn:aws:sns:*:123456789012:*"}},
         {"aws:SourceArn": "arn:aws:sns:eu-west-1:123456789012:builds"}, True, OPERATORS_PAGE),
    cond("arn-like-last-segment-keeps-colons",
         {"ArnLike": {"aws:SourceArn": "arn:aws:logs:*:111122223333:log-group:*"}},
         {"aws:SourceArn": "arn:aws:logs:us-east-1:111122223333:log-group:app:log-stream:x"}, True,
         OPERATORS_PAGE),
    cond("arn-like-case-sensitive", {"ArnLike": {"aws:SourceArn": "arn:aws:sns:*:123456789012:Builds"}},
         {"aws:SourceArn": "arn:aws:sns:eu-west-1:123456789012:builds"}, False, OPERATORS_PAGE),
    cond("arn-like-non-arn-value", {"ArnLike": {"aws:SourceArn": "*"}}, {"aws:SourceArn": "not-an-arn"},
         False, OPERATORS_PAGE),
    cond("arn-not-like-other", {"ArnNotLike": {"aws:SourceArn": "arn:aws:sns:*:123456789012:*"}},
         {"aws:SourceArn": "arn:aws:sqs:eu-west-1:123456789012:q"}, True, OPERATORS_PAGE),
    cond("arn-like-with-variable", {"ArnLike": {"aws:SourceArn": "arn:aws:sns:*:*:${aws:username}-*"}},
         {"aws:SourceArn": "arn:aws:sns:eu-west-1:1:alice-builds", "aws:username": "alice"}, True, VARIABLES),
    # Bool: strings or JSON booleans (OPERATORS_PAGE)
    cond("bool-json-true", {"Bool": {"aws:SecureTransport": True}}, {"aws:SecureTransport": "true"}, True,
         OPERATORS_PAGE),
    cond("bool-string-true-vs-false", {"Bool": {"aws:SecureTransport": "true"}},
         {"aws:SecureTransport": False}, False, OPERATORS_PAGE),
    cond("bool-missing", {"Bool": {"aws:SecureTransport": "true"}}, None, False, OPERATORS_PAGE),
    cond("bool-if-exists-missing", {"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}}, None, True,
         OPERATORS_PAGE),
    # Numeric and Date (OPERATORS_PAGE)
    cond("numeric-less-than-equals-10", {"NumericLessThanEquals": {"s3:max-keys": "10"}},
         {"s3:max-keys": "10"}, True, OPERATORS_PAGE),
    cond("numeric-less-than-equals-11", {"NumericLessThanEquals": {"s3:max-keys": "10"}},
         {"s3:max-keys": "11"}, False, OPERATORS_PAGE),
    cond("numeric-json-number", {"NumericEquals": {"n": 2.5}}, {"n": "2.50"}, True, OPERATORS_PAGE),
    cond("numeric-greater-than", {"NumericGreaterThan": {"n": "3"}}, {"n": "4"}, True, OPERATORS_PAGE),
    cond("numeric-not-equals", {"NumericNotEquals": {"n": ["1", "2"]}}, {"n": "2"}, False, MULTI_CONDITIONS),
    cond("numeric-unparsable", {"NumericEquals": {"n": "ten"}}, {"n": "10"}, False),
    cond("date-token-issued-after", {"DateGreaterThan": {"aws:TokenIssueTime": "2020-01-01T00:00:01Z"}},
         {"aws:TokenIssueTime": "2020-06-01T12:00:00Z"}, True, OPERATORS_PAGE),
    cond("date-token-issued-before", {"DateGreaterThan": {"aws:TokenIssueTime": "2020-01-01T00:00:01Z"}},
         {"aws:TokenIssueTime": "2019-12-31T23:59:59Z"}, False, OPERATORS_PAGE),
    cond("date-no-token-long-term-keys", {"DateGreaterThan": {"aws:TokenIssueTime": "2020-01-01T00:00:01Z"}},
         None, False, OPERATORS_PAGE),
    cond("date-epoch-vs-iso", {"DateLessThan": {"aws:EpochTime": "2030-01-01T00:00:00Z"}},
         {"aws:EpochTime": "1700000000"}, True, OPERATORS_PAGE),
    cond("date-equals-offsets", {"DateEquals": {"aws:CurrentTime": "2024-05-01T12:00:00+02:00"}},
         {"aws:CurrentTime": "2024-05-01T10:00:00Z"}, True, OPERATORS_PAGE),
    # IP addresses (OPERATORS_PAGE)
    cond("ip-in-range", {"IpAddress": {"aws:SourceIp": "203.0.113.0/24"}}, {"aws:SourceIp": "203.0.113.7"},
         True, OPERATORS_PAGE),
    cond("ip-out-of-range", {"IpAddress": {"aws:SourceIp": "203.0.113.0/24"}},
         {"aws:SourceIp": "198.51.100.1"}, False, OPERATORS_PAGE),
    cond("ip-v6-in-list", {"IpAddress": {"aws:SourceIp": ["203.0.113.0/24", "2001:DB8:1234:5678::/64"]}},
         {"aws:SourceIp": "2001:db8:1234:5678::9"}, True, OPERATORS_PAGE),
    cond("ip-without-prefix-is-32", {"IpAddress": {"aws:SourceIp": "203.0.113.5"}},
         {"aws:SourceIp": "203.0.113.6"}, False, OPERATORS_PAGE),
    cond("not-ip-address", {"NotIpAddress": {"aws:SourceIp": "203.0.113.0/24"}},
         {"aws:SourceIp": "198.51.100.1"}, True, OPERATORS_PAGE),
    cond("binary-equals", {"BinaryEquals": {"k": "QmluYXJ5VmFsdWVJbkJhc2U2NA=="}},
         {"k": "QmluYXJ5VmFsdWVJbkJhc2U2NA=="}, True, OPERATORS_PAGE),
    # ...IfExists (OPERATORS_PAGE)
    cond("ifexists-missing-true", {"StringEqualsIfExists": {"k": "v"}}, None, True, OPERATORS_PAGE),
    cond("ifexists-present-checked", {"StringEqualsIfExists": {"k": "v"}}, {"k": "w"}, False, OPERATORS_PAGE),
    cond("ifexists-negated-missing-true", {"StringNotEqualsIfExists": {"k": "v"}}, None, True,
         OPERATORS_PAGE),
    # Null (OPERATORS_PAGE; MULTI_EXAMPLES for empty values)
    cond("null-false-request-tag-present", {"Null": {"aws:RequestTag/project": "false"}},
         {"aws:RequestTag/project": "alpha"}, True, OPERATORS_PAGE),
    cond("null-false-request-tag-missing", {"Null": {"aws:RequestTag/project": "false"}}, None, False,
         OPERATORS_PAGE),
    cond("null-true-json-boolean", {"Null": {"aws:RequestTag/project": True}}, None, True, OPERATORS_PAGE),
    cond("null-true-present", {"Null": {"aws:RequestTag/project": "true"}}, {"aws:RequestTag/project": ""},
         False, OPERATORS_PAGE),
    cond("null-empty-list-is-null", {"Null": {TAGS: "true"}}, {TAGS: []}, True, MULTI_EXAMPLES),
    # ForAllValues / ForAnyValue (MULTI_KEYS, MULTI_CONDITIONS)
    cond("forallvalues-subset", {"ForAllValues:StringEquals": {TAGS: ["a", "b"]}}, {TAGS: ["a"]}, True,
         MULTI_KEYS),
    cond("forallvalues-not-subset", {"ForAllValues:StringEquals": {TAGS: ["a", "b"]}}, {TAGS: ["a", "c"]},
         False, MULTI_KEYS),
    cond("forallvalues-pitfall-missing-key-true", {"ForAllValues:StringEquals": {TAGS: ["a", "b"]}}, None,
         True, MULTI_EXAMPLES),
    cond("forallvalues-pitfall-empty-set-true", {"ForAllValues:StringEquals": {TAGS: ["a", "b"]}}, {TAGS: []},
         True, MULTI_CONDITIONS),
    cond("forallvalues-guarded-by-null-missing",
         {"ForAllValues:StringEquals": {TAGS: ["a", "b"]}, "Null": {TAGS: "false"}}, None, False,
         MULTI_EXAMPLES),
    cond("forallvalues-guarded-by-null-empty",
         {"ForAllValues:StringEquals": {TAGS: ["a", "b"]}, "Null": {TAGS: "false"}}, {TAGS: []}, False,
         MULTI_EXAMPLES),
    cond("forallvalues-guarded-by-null-present",
         {"ForAllValues:StringEquals": {TAGS: ["a", "b"]}, "Null": {TAGS: "false"}}, {TAGS: ["b"]}, True,
         MULTI_EXAMPLES),
    cond("forallvalues-string-like", {"ForAllValues:StringLike": {TAGS: "Created*"}},
         {TAGS: ["CreatedBy", "CreatedAt"]}, True, MULTI_KEYS),
    cond("forallvalues-negated-none-listed", {"ForAllValues:StringNotEquals": {TAGS: ["a", "b"]}},
         {TAGS: ["c", "d"]}, True, MULTI_KEYS),
    cond("forallvalues-negated-one-listed", {"ForAllValues:StringNotEquals": {TAGS: ["a", "b"]}},
         {TAGS: ["c", "a"]}, False, MULTI_KEYS),
    cond("foranyvalue-one-matches", {"ForAnyValue:StringEquals": {TAGS: ["a", "b"]}}, {TAGS: ["c", "b"]},
         True, MULTI_KEYS),
    cond("foranyvalue-none-matches", {"ForAnyValue:StringEquals": {TAGS: ["a", "b"]}}, {TAGS: ["c"]}, False,
         MULTI_KEYS),
    cond("foranyvalue-missing-false", {"ForAnyValue:StringEquals": {TAGS: ["a"]}}, None, False,
         MULTI_CONDITIONS),
    cond("foranyvalue-empty-set-false", {"ForAnyValue:StringEquals": {TAGS: ["a"]}}, {TAGS: []}, False,
         MULTI_CONDITIONS),
    cond("foranyvalue-ifexists-missing-still-false", {"ForAnyValue:StringEqualsIfExists": {TAGS: ["team"]}},
         None, False, REPOST_IFEXISTS),
    cond("foranyvalue-negated", {"ForAnyValue:StringNotEquals": {TAGS: ["a"]}}, {TAGS: ["a", "b"]}, True,
         MULTI_KEYS),
    cond("foranyvalue-case-insensitive-qualifier", {"foranyvalue:stringequals": {TAGS: ["a"]}}, {TAGS: ["a"]},
         True),
    cond("set-operator-single-value-is-one-element-set", {"ForAnyValue:StringEquals": {"k": "v"}}, {"k": "v"},
         True, MULTI_KEYS),
    # a plain operator on a multivalued key: AWS requires a set operator, so it fails closed (MULTI_KEYS)
    cond("plain-operator-multivalued-false", {"StringEquals": {TAGS: "a"}}, {TAGS: ["a"]}, False, MULTI_KEYS),
    cond("plain-negated-operator-multivalued-false", {"StringNotEquals": {TAGS: "z"}}, {TAGS: ["a"]}, False,
         MULTI_KEYS),
    # policy variables in condition values (VARIABLES)
    cond("variable-in-string-equals", {"StringEquals": {"aws:ResourceTag/owner": "${aws:username}"}},
         {"aws:ResourceTag/owner": "alice", "aws:username": "alice"}, True, VARIABLES),
    cond("variable-in-string-equals-other", {"StringEquals": {"aws:ResourceTag/owner": "${aws:username}"}},
         {"aws:ResourceTag/owner": "bob", "aws:username": "alice"}, False, VARIABLES),
    cond("variable-like-endpoint", {"StringLike": {"sns:endpoint": "https://example.com/${aws:username}/"}},
         {"sns:endpoint": "https://example.com/alice/", "aws:username": "alice"}, True, VARIABLES),
    cond("variable-value-not-wildcard-in-like", {"StringLike": {"k": "${aws:username}"}},
         {"k": "anything", "aws:username": "*"}, False, VARIABLES),
    cond("variable-escape-question-mark", {"StringLike": {"k": "why${?}"}}, {"k": "why?"}, True, VARIABLES),
    cond("variable-escape-question-mark-literal", {"StringLike": {"k": "why${?}"}}, {"k": "whyX"}, False,
         VARIABLES),
    cond("variable-escape-dollar", {"StringEquals": {"k": "${$}5"}}, {"k": "$5"}, True, VARIABLES),
    cond("variable-escape-star-in-like", {"StringLike": {"k": "a${*}"}}, {"k": "a*"}, True, VARIABLES),
    cond("variable-unresolved-value-no-match", {"StringEquals": {"k": ["${aws:username}", "x"]}}, {"k": "x"},
         True, VARIABLES),
    cond("variable-unresolved-only-value", {"StringEquals": {"k": "${aws:username}"}}, {"k": ""}, False,
         VARIABLES),
    cond("variable-unresolved-negated-false", {"StringNotEquals": {"k": "${aws:PrincipalTag/team}"}},
         {"k": "x"}, False),
    cond("variable-default-in-condition", {"StringEquals": {"k": "${aws:PrincipalTag/team, 'none'}"}},
         {"k": "none"}, True, VARIABLES),
    cond("variable-not-in-numeric", {"NumericEquals": {"n": "${n}"}}, {"n": "1"}, False, OPERATORS_PAGE),
    # fail closed: unknown operators, qualifiers and malformed blocks never raise and never hold
    cond("unknown-operator", {"StringEqualz": {"k": "v"}}, {"k": "v"}, False),
    cond("unknown-qualifier", {"ForSomeValues:StringEquals": {"k": "v"}}, {"k": "v"}, False),
    cond("null-if-exists-is-not-an-operator", {"NullIfExists": {"k": "true"}}, None, False, OPERATORS_PAGE),
    cond("unknown-operator-next-to-good-one", {"StringEquals": {"k": "v"}, "Bogus": {"k": "v"}}, {"k": "v"},
         False),
    cond("malformed-keys-not-a-mapping", {"StringEquals": ["k", "v"]}, {"k": "v"}, False),
    cond("malformed-value-nested", {"StringEquals": {"k": {"v": 1}}}, {"k": "v"}, False),
    cond("malformed-value-null", {"StringEquals": {"k": None}}, {"k": "v"}, False),
    cond("malformed-empty-values", {"StringNotEquals": {"k": []}}, {"k": "v"}, False),
]


@pytest.mark.parametrize("c", CONDITION_CASES)
def test_condition(c: Case) -> None:
    decision = evaluate(c.policies, c.request)
    assert decision.reason == c.reason, c.source
    assert decision.statements == (("policy/S",) if c.reason == ALLOW else ())


def test_malformed_condition_block_never_applies() -> None:
    for block in (["StringEquals"], "StringEquals", 5):
        statement = allow(Action="*", Resource="*", Condition=block)
        assert not statement_matches(statement, req("s3:GetObject"))


def test_unknown_operator_deny_statement_never_applies() -> None:
    """Fail closed means the statement does not apply, whatever its effect: a Deny with an
    unknown operator does not deny (AWS refuses such a document when it is put)."""
    odd = {"StringEqualsMaybe": {"k": "v"}}
    policies = [EVERYONE, ("odd", doc(deny(Sid="Odd", Action="*", Resource="*", Condition=odd)))]
    decision = evaluate(policies, ctx("s3:GetObject", "*", {"k": "v"}))
    assert decision == Decision(True, ALLOW, ("admin/Everything",))


def test_ifexists_negated_deny_still_denies_without_the_key() -> None:
    """OPERATORS_PAGE (...IfExists): a Deny with StringNotEqualsIfExists denies a request that
    lacks the key."""
    needs_team = {"StringNotEqualsIfExists": {"aws:RequestTag/team": "ml"}}
    policies = [EVERYONE, ("tag", doc(deny(Sid="NeedsTeam", Action="*", Resource="*", Condition=needs_team)))]
    def reason(context: dict) -> str:
        return evaluate(policies, ctx("sagemaker:CreateModel", "*", context)).reason

    assert reason({}) == DENY
    assert reason({"aws:RequestTag/team": "ml"}) == ALLOW
    assert reason({"aws:RequestTag/team": "web"}) == DENY


def test_statement_ids_in_order() -> None:
    policies = [("Reader", GET_LIST_NO_REPORTS),
                ("Inline", {"Statement": allow(Action="*", Resource="*")}),
                ("Mixed", doc(allow(Action="s3:*", Resource="*"),
                              deny(Sid="NoIam", Action="iam:*", Resource="*"))),
                ("Empty", doc()),
                ("Text", '{"Statement": [{"Sid": "T", "Effect": "Allow", "Action": "*", "Resource": "*"}]}')]
    assert statement_ids(policies) == [  # type: ignore[arg-type]
        "Reader/AllowGetList", "Reader/DenyReports", "Inline/#0", "Mixed/#0", "Mixed/NoIam", "Text/T"]


def test_decision_lists_every_matching_allow_so_single_grants_show() -> None:
    policies = [("broad", doc(allow(Sid="AllS3", Action="s3:*", Resource="*"))),
                ("narrow", doc(allow(Sid="GetOnly", Action="s3:GetObject", Resource="arn:aws:s3:::data/*"),
                               allow(Sid="Other", Action="sqs:*", Resource="*")))]
    both = evaluate(policies, req("s3:GetObject", "arn:aws:s3:::data/x"))
    only_one = evaluate(policies, req("s3:PutObject", "arn:aws:s3:::data/x"))
    assert both == Decision(True, ALLOW, ("broad/AllS3", "narrow/GetOnly"))
    assert only_one == Decision(True, ALLOW, ("broad/AllS3",))


def test_statement_matches_checks_action_resource_and_condition() -> None:
    statement = allow(Action="s3:Get*", Resource="arn:aws:s3:::data/*",
                      Condition={"StringEquals": {"s3:ExistingObjectTag/stage": "prod"}})
    tagged = {"s3:ExistingObjectTag/stage": "prod"}
    assert statement_matches(statement, ctx("s3:GetObject", "arn:aws:s3:::data/x", tagged))
    assert not statement_matches(statement, ctx("s3:PutObject", "arn:aws:s3:::data/x", tagged))
    assert not statement_matches(statement, ctx("s3:GetObject", "arn:aws:s3:::other/x", tagged))
    assert not statement_matches(statement, req("s3:GetObject", "arn:aws:s3:::data/x"))
    assert statement_matches(deny(Action="s3:*", Resource="*"), req("s3:GetObject"))  # Effect not looked at
    assert not statement_matches("not a statement", req("s3:GetObject"))  # type: ignore[arg-type]


def test_statement_matches_variables_switch() -> None:
    statement = allow(Action="s3:*", Resource="arn:aws:s3:::b/${aws:username}")
    request = ctx("s3:GetObject", "arn:aws:s3:::b/alice", ALICE)
    assert statement_matches(statement, request)
    assert not statement_matches(statement, request, variables=False)


def test_request_without_context_attribute() -> None:
    """Callers may pass any object with .action and .resource (no context: every key absent)."""
    @dataclass(frozen=True)
    class Call:
        action: str
        resource: str

    policies = [("p", doc(allow(Sid="A", Action="s3:*", Resource="*",
                                Condition={"StringNotEquals": {"aws:PrincipalTag/x": "y"}})))]
    decision = evaluate(policies, Call("s3:GetObject", "arn:aws:s3:::b/k"))  # type: ignore[arg-type]
    assert decision == Decision(True, ALLOW, ("p/A",))


def test_operator_table_has_the_documented_operators() -> None:
    required = {"StringEquals", "StringNotEquals", "StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase",
                "StringLike", "StringNotLike", "ArnEquals", "ArnLike", "ArnNotEquals", "ArnNotLike", "Bool",
                "NumericEquals", "NumericNotEquals", "NumericLessThan", "NumericLessThanEquals",
                "NumericGreaterThan", "NumericGreaterThanEquals", "DateEquals", "DateNotEquals",
                "DateLessThan", "DateLessThanEquals", "DateGreaterThan", "DateGreaterThanEquals",
                "IpAddress", "NotIpAddress", "BinaryEquals"}
    assert required <= set(OPERATORS)
    negated = {name for name, operator in OPERATORS.items() if operator.negated}
    assert negated == {n for n in required if "Not" in n}

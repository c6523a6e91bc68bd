"""The stack's CloudFormation template, generated from Python: the one source ``stepml deploy``
uses, on AWS and on the local cloud.

Names, region-specific values and the seed's defaults are parameters; the state machine's
definition is the ASL the Data Science SDK exports, its function ARNs swapped for ``Fn::Sub``
references to the stack's functions; IAM comes from ``infra_scripts.policies``.

Code lives in the stack's own bucket, so a stack is created in two steps: the *bootstrap*
template (the bucket alone) first, then, once the code bundles are uploaded, the full template.
The full template exceeds CloudFormation's 51,200-byte inline limit, so deploy uploads it to the
bucket and passes its URL.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from infra_scripts import packaging, policies
from infra_scripts.cfn import posture
from infra_scripts.policies import ON_UPLOAD_MODULE, PREDICT_MODULE, ROLES, RoleSpec
from statemachine.config import PipelineConfig
from statemachine.workflow import TASK_HANDLERS, definition_json

STACK_TAG = "stepml:stack"
CODE_KEYS = ("HandlersCodeKey", "HandlerDependenciesKey", "TrainingCodeKey", "InferenceCodeKey",
             "TrainingRequestKey")
BOOTSTRAP_PARAMETERS = ("Prefix", "BucketName")
RUNTIME = "python3.11"
ARCHITECTURE = "x86_64"  # the platform the dependencies layer is built for (packaging.py)
DEPENDENCIES_LAYER = "HandlerDependenciesLayer"
DEPENDENCIES_LAYER_SUFFIX = "handler-dependencies"  # the layer is "<prefix>-handler-dependencies"
PREDICT_TIMEOUT_S = 30
PREDICT_MEMORY_MB = 512  # also what the cost preview prices provisioned concurrency at
ON_UPLOAD_TIMEOUT_S = 30
DEAD_LETTER_QUEUE = "OnUploadDeadLetterQueue"
DEAD_LETTER_RETENTION_S = 14 * 24 * 3600  # SQS's longest: two weeks to notice and re-send an event
UPLOAD_MARKERS = ("_READY", "manifest.json")  # the dataset-completion objects issue 6 defines
# Numbers in EXECUTION_DEFAULTS come from these parameters (unquoted in the JSON).
NUMBER_DEFAULTS = {
    ("autoscaling", "min"): "AutoscalingMin", ("autoscaling", "max"): "AutoscalingMax",
    ("autoscaling", "target"): "AutoscalingTarget",
    ("predict", "reserved_concurrency"): "ReservedConcurrency",
    ("predict", "provisioned_concurrency"): "ProvisionedConcurrency",
}
RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827,
                  2192, 2557, 2922, 3288, 3653]


def stack_name(config: PipelineConfig) -> str:
    return config.prefix


# -- helpers ----------------------------------------------------------------------------------------
def sub(value: Any) -> Any:
    """Wrap every string holding a ``${…}`` placeholder in ``Fn::Sub`` (recursively)."""
    if isinstance(value, str):
        return {"Fn::Sub": value} if "${" in value else value
    if isinstance(value, list):
        return [sub(item) for item in value]
    if isinstance(value, dict):
        return {key: sub(item) for key, item in value.items()}
    return value


def ref(name: str) -> dict:
    return {"Ref": name}


def arn_of(logical_id: str) -> dict:
    return {"Fn::GetAtt": [logical_id, "Arn"]}


def tags() -> list[dict]:
    return [{"Key": STACK_TAG, "Value": ref("Prefix")}]


def function_id(module: str) -> str:
    return "".join(part.capitalize() for part in module.split("_")) + "Function"


def log_group_id(module: str) -> str:
    return function_id(module).removesuffix("Function") + "LogGroup"


# -- parameters -------------------------------------------------------------------------------------
def _string(description: str, default: str | None = None, **extra: Any) -> dict:
    spec = {"Type": "String", "Description": description, **extra}
    if default is not None:
        spec["Default"] = default
    return spec


def _number(description: str, default: float, minimum: float) -> dict:
    return {"Type": "Number", "Description": description, "Default": default, "MinValue": minimum}


def parameters(config: PipelineConfig) -> dict[str, dict]:
    code = {key: _string(f"S3 key of a deploy-time bundle in the bucket ({key})",
                         AllowedPattern=r"^[A-Za-z0-9/._-]+$") for key in CODE_KEYS}
    return {
        "Prefix": _string("Name prefix of every resource (functions, roles, state machine)",
                          AllowedPattern=r"^[a-z][a-z0-9-]{0,29}$"),
        "BucketName": _string("Bucket for datasets, models and code", MinLength=3, MaxLength=63,
                              AllowedPattern=r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$"),
        "EndpointName": _string("The one SageMaker endpoint the predict function may invoke",
                                AllowedPattern=r"^[a-z0-9](-*[a-z0-9]){0,62}$"),
        "DatasetPrefix": _string("Key prefix of datasets", config.dataset_prefix,
                                 AllowedPattern=r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*/$"),
        "ModelPrefix": _string("Key prefix of model artifacts", config.model_prefix,
                               AllowedPattern=r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*/$"),
        "Ec2AmiParameter": _string("Region-specific AMI: SSM public parameter the EC2 path "
                                   "resolves", config.ec2_ami_parameter,
                                   AllowedPattern=r"^/[A-Za-z0-9/._-]+$"),
        "Ec2AmiId": _string("AMI to pin instead of the SSM parameter (empty: resolve it)",
                            config.ec2_ami_id, AllowedPattern=r"^(ami-[0-9a-f]{8,17})?$"),
        "InferenceImageUri": _string("Region-specific PyTorch inference image"),
        **code,
        "ReservedConcurrency": _number("Reserved concurrency of the predict function",
                                       config.reserved_concurrency, 0),
        "ProvisionedConcurrency": _number("Provisioned concurrency on the live alias",
                                          config.provisioned_concurrency, 0),
        "AutoscalingMin": _number("Minimum endpoint instances", config.autoscaling_min, 1),
        "AutoscalingMax": _number("Maximum endpoint instances", config.autoscaling_max, 1),
        "AutoscalingTarget": _number("Target invocations per instance per minute",
                                     config.autoscaling_target, 1),
        "LogRetentionDays": {"Type": "Number", "Description": "Retention of the stack's logs",
                             "Default": 30, "AllowedValues": RETENTION_DAYS},
        "TriggerExecutionInput": _string("JSON merged into each upload-started execution", "{}"),
        "UploadTriggerState": _string("Whether a dataset marker upload starts the pipeline",
                                      "ENABLED", AllowedValues=["ENABLED", "DISABLED"]),
        "GitCommit": _string("git commit of the deployed code, recorded in each model package's "
                             "lineage (empty: unknown)", "", AllowedPattern=r"^([0-9a-f]{7,40})?$"),
    }


# -- resources --------------------------------------------------------------------------------------
def bucket() -> dict:
    return posture.waived({
        "Type": "AWS::S3::Bucket",
        # Datasets and models outlive the stack; `stepml destroy --delete-data` empties it.
        "DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain",
        "Properties": {
            "BucketName": ref("BucketName"),
            "BucketEncryption": {"ServerSideEncryptionConfiguration": [
                {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]},
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True},
            "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
            "VersioningConfiguration": {"Status": "Enabled"},
            "LifecycleConfiguration": {"Rules": [{
                "Id": "expire-old-versions", "Status": "Enabled",
                "NoncurrentVersionExpiration": {"NoncurrentDays": 30},
                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}}]},
            "NotificationConfiguration": {"EventBridgeConfiguration": {"EventBridgeEnabled": True}},
            "Tags": tags(),
        },
    }, posture.BUCKET)


def role(spec: RoleSpec) -> dict[str, dict]:
    policy_id = f"{spec.logical_id}Policy"
    return {
        spec.logical_id: {"Type": "AWS::IAM::Role", "Properties": {
            "RoleName": sub(f"${{Prefix}}-{spec.key}"), "Description": spec.summary,
            "AssumeRolePolicyDocument": sub(spec.trust()), "Tags": tags()}},
        # A separate policy resource: updates to it apply (moto ignores a role's own Policies).
        policy_id: {"Type": "AWS::IAM::Policy", "Properties": {
            "PolicyName": sub(f"${{Prefix}}-{spec.key}"), "Roles": [ref(spec.logical_id)],
            "PolicyDocument": sub(spec.policy())}},
    }


def instance_profile() -> dict:
    return {"Type": "AWS::IAM::InstanceProfile", "Properties": {
        "InstanceProfileName": sub("${Prefix}-ec2-training"), "Roles": [ref("Ec2TrainingRole")]}}


def log_group(name: str) -> dict:
    return posture.waived({"Type": "AWS::Logs::LogGroup", "DeletionPolicy": "Delete",
                           "UpdateReplacePolicy": "Delete", "Properties": {
                               "LogGroupName": sub(name), "RetentionInDays": ref("LogRetentionDays"),
                               "Tags": tags()}}, posture.LOG_GROUPS)


def dead_letter_queue() -> dict:
    """The upload function's on-failure destination. EventBridge invokes it asynchronously, so an
    event whose invocation still fails after Lambda's two retries (S3 or Step Functions
    unavailable, throttled, denied) would otherwise be dropped, and that dataset would never start
    the pipeline; here it waits, the whole EventBridge event, to be looked at and sent again."""
    return posture.waived({"Type": "AWS::SQS::Queue", "Properties": {
        "QueueName": sub(policies.ON_UPLOAD_DLQ), "MessageRetentionPeriod": DEAD_LETTER_RETENTION_S,
        "SqsManagedSseEnabled": True, "Tags": tags()}}, posture.DEAD_LETTER_QUEUE)


def execution_defaults(config: PipelineConfig) -> str:
    """EXECUTION_DEFAULTS for the handlers: the config's, with the stack's parameters in it."""
    defaults = config.execution_defaults()
    defaults["bucket"], defaults["model_prefix"] = "${BucketName}", "${ModelPrefix}"
    defaults["endpoint"]["name"] = "${EndpointName}"
    for (section, key), parameter in NUMBER_DEFAULTS.items():
        defaults[section][key] = f"${{{parameter}}}"
    text = json.dumps(defaults, sort_keys=True, separators=(",", ":"))
    for parameter in NUMBER_DEFAULTS.values():
        text = text.replace(f'"${{{parameter}}}"', f"${{{parameter}}}")
    return text


def handler_environment(config: PipelineConfig) -> dict[str, Any]:
    def s3(key: str) -> dict:
        return sub(f"s3://${{BucketName}}/${{{key}}}")

    return {
        "EXECUTION_DEFAULTS": sub(execution_defaults(config)),
        "DATASET_PREFIX": ref("DatasetPrefix"),  # the only prefix the roles may read data from
        "SAGEMAKER_ROLE_ARN": arn_of("SageMakerExecutionRole"),
        "INFERENCE_IMAGE_URI": ref("InferenceImageUri"),
        "INFERENCE_PROGRAM": packaging.INFERENCE_ENTRY,
        "EC2_INSTANCE_PROFILE": ref("Ec2TrainingInstanceProfile"),
        "EC2_AMI_PARAMETER": ref("Ec2AmiParameter"),
        "EC2_AMI_ID": ref("Ec2AmiId"),
        "EC2_ROOT_VOLUME_GB": str(config.ec2_root_volume_gb),
        "PREDICT_FUNCTION_NAME": sub(f"${{Prefix}}-{policies.function_suffix(PREDICT_MODULE)}"),
        "POWERTOOLS_SERVICE_NAME": ref("Prefix"),
        "TRAINING_REQUEST_URI": s3("TrainingRequestKey"),
        "EC2_CODE_URI": s3("TrainingCodeKey"),
        "INFERENCE_SOURCE_URI": s3("InferenceCodeKey"),
        "MODEL_PACKAGE_GROUP": sub(MODEL_PACKAGE_GROUP_NAME),
        "GIT_COMMIT": ref("GitCommit"),
    }


def dependencies_layer() -> dict:
    """What the handlers import beyond the runtime (Powertools), built by packaging.py. Each new
    zip is a new layer version; CloudFormation replaces the resource and deletes the old one."""
    return {"Type": "AWS::Lambda::LayerVersion", "Properties": {
        "LayerName": sub(f"${{Prefix}}-{DEPENDENCIES_LAYER_SUFFIX}"),
        "Description": "handlers/requirements.txt for python3.11 on x86_64",
        "Content": {"S3Bucket": ref("ArtifactsBucket"), "S3Key": ref("HandlerDependenciesKey")},
        "CompatibleRuntimes": [RUNTIME], "CompatibleArchitectures": [ARCHITECTURE]}}


def function(module: str, environment: dict[str, Any], timeout: int, memory: int,
             scope: str) -> dict:
    """One handler function; ``scope`` names its checkov waivers beyond every function's."""
    spec = policies.role_of_module(module)
    return posture.waived({
        "Type": "AWS::Lambda::Function",
        "DependsOn": [log_group_id(module), f"{spec.logical_id}Policy"],
        "Properties": {
            "FunctionName": sub(f"${{Prefix}}-{policies.function_suffix(module)}"),
            "Handler": f"handlers.{module}.handler", "Runtime": RUNTIME,
            "Architectures": [ARCHITECTURE],
            "Role": arn_of(spec.logical_id), "Timeout": timeout, "MemorySize": memory,
            "Code": {"S3Bucket": ref("ArtifactsBucket"), "S3Key": ref("HandlersCodeKey")},
            "Layers": [ref(DEPENDENCIES_LAYER)],
            "Environment": {"Variables": environment}, "Tags": tags(),
        },
    }, posture.FUNCTIONS, scope)


def functions(config: PipelineConfig) -> dict[str, dict]:
    environment = handler_environment(config)
    resources = {function_id(module): function(module, environment,
                                               config.handler_timeout_seconds, 512,
                                               posture.TASK_FUNCTIONS)
                 for module in TASK_HANDLERS.values()}
    resources[function_id(PREDICT_MODULE)] = function(PREDICT_MODULE, {
        "ENDPOINT_NAME": ref("EndpointName"),
        "POWERTOOLS_SERVICE_NAME": sub("${Prefix}-predict")}, PREDICT_TIMEOUT_S, PREDICT_MEMORY_MB,
        posture.PREDICT)
    on_upload = function(ON_UPLOAD_MODULE, {
        "STATE_MACHINE_ARN": ref("StateMachine"), "DATASET_PREFIX": ref("DatasetPrefix"),
        "EXECUTION_INPUT": ref("TriggerExecutionInput"),
        "POWERTOOLS_SERVICE_NAME": sub("${Prefix}-trigger")}, ON_UPLOAD_TIMEOUT_S, 256,
        posture.ON_UPLOAD)
    # The only asynchronously invoked function (by EventBridge): failed events go to the queue.
    on_upload["Properties"]["DeadLetterConfig"] = {"TargetArn": arn_of(DEAD_LETTER_QUEUE)}
    resources[function_id(ON_UPLOAD_MODULE)] = on_upload
    return resources


def definition_string(config: PipelineConfig) -> str:
    """The exported ASL with each task's function ARN as a reference to the stack's function."""
    return _definition_string(json.dumps(config.to_dict(), sort_keys=True))


@functools.lru_cache(maxsize=8)
def _definition_string(config_json: str) -> str:
    # Cached per config: the Data Science SDK takes seconds to build the workflow.
    config = PipelineConfig(**json.loads(config_json))
    text = definition_json(config)
    for module in TASK_HANDLERS.values():
        text = text.replace(json.dumps(config.function_arn(module)),
                            json.dumps(f"${{{function_id(module)}.Arn}}"))
    # Service-integration ARNs ("arn:aws:states:::lambda:invoke") follow the stack's partition.
    text = text.replace('"arn:aws:states:::', '"arn:${AWS::Partition}:states:::')
    allowed = {f"{function_id(m)}.Arn" for m in TASK_HANDLERS.values()} | {"AWS::Partition"}
    if "arn:aws" in text or not set(re.findall(r"\$\{([^}]*)\}", text)) <= allowed:
        raise ValueError("the exported definition holds ARNs the template cannot parameterise")
    return text


def state_machine(config: PipelineConfig) -> dict:
    return {"Type": "AWS::StepFunctions::StateMachine",
            "DependsOn": ["StateMachineRolePolicy"],
            "Properties": {
                "StateMachineName": sub("${Prefix}-pipeline"), "RoleArn": arn_of("StateMachineRole"),
                "DefinitionString": sub(definition_string(config)),
                "Tags": [{"Key": STACK_TAG, "Value": ref("Prefix")}]}}


def upload_rule() -> dict[str, dict]:
    keys = [{"wildcard": f"${{DatasetPrefix}}*/{marker}"} for marker in UPLOAD_MARKERS]
    target = function_id(ON_UPLOAD_MODULE)
    return {
        "UploadRule": {"Type": "AWS::Events::Rule", "Properties": {
            "Name": sub("${Prefix}-dataset-ready"), "State": ref("UploadTriggerState"),
            "Description": "a dataset's completion marker starts the pipeline",
            "EventPattern": sub({"source": ["aws.s3"], "detail-type": ["Object Created"],
                                 "detail": {"bucket": {"name": ["${BucketName}"]},
                                            "object": {"key": keys}}}),
            "Targets": [{"Id": "on-upload", "Arn": arn_of(target), "RetryPolicy": {
                "MaximumRetryAttempts": 4, "MaximumEventAgeInSeconds": 3600}}]}},
        "UploadRulePermission": {"Type": "AWS::Lambda::Permission", "Properties": {
                                     "Action": "lambda:InvokeFunction", "FunctionName": ref(target),
                                     "Principal": "events.amazonaws.com",
                                     "SourceAccount": ref("AWS::AccountId"),
                                     "SourceArn": arn_of("UploadRule")}},
    }


MODEL_PACKAGE_GROUP_NAME = "${Prefix}-models"  # PipelineConfig.model_package_group


def model_package_group() -> dict:
    """The stack's one registry: every run registers a versioned package in it."""
    # Kept on stack deletion like the bucket: the registry is the models' history (and AWS will
    # not delete a group that still has versions). `stepml destroy --delete-data` removes it.
    return {"Type": "AWS::SageMaker::ModelPackageGroup", "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain", "Properties": {
        "ModelPackageGroupName": sub(MODEL_PACKAGE_GROUP_NAME),
        "ModelPackageGroupDescription": "stepml: one package per pipeline run, approved or "
                                        "rejected by the evaluation gate", "Tags": tags()}}


def resources(config: PipelineConfig) -> dict[str, dict]:
    found: dict[str, dict] = {"ArtifactsBucket": bucket(),
                              "Ec2TrainingInstanceProfile": instance_profile()}
    for spec in ROLES:
        found.update(role(spec))
    modules = [*TASK_HANDLERS.values(), PREDICT_MODULE, ON_UPLOAD_MODULE]
    for module in modules:
        found[log_group_id(module)] = log_group(policies.function_log_group(module))
    found["EndpointLogGroup"] = log_group(policies.ENDPOINT_LOG_GROUP)
    found[DEPENDENCIES_LAYER] = dependencies_layer()
    found[DEAD_LETTER_QUEUE] = dead_letter_queue()
    found["ModelPackageGroup"] = model_package_group()
    found.update(functions(config))
    found["StateMachine"] = state_machine(config)
    found.update(upload_rule())
    return found


def outputs() -> dict[str, dict]:
    def out(value: Any, description: str) -> dict:
        return {"Description": description, "Value": value}

    return {
        "BucketName": out(ref("ArtifactsBucket"), "datasets, models and code"),
        "EndpointName": out(ref("EndpointName"), "the endpoint the predict function invokes"),
        "SageMakerRoleArn": out(arn_of("SageMakerExecutionRole"), "training jobs and endpoints"),
        "Ec2InstanceProfileName": out(ref("Ec2TrainingInstanceProfile"), "EC2 training"),
        "StateMachineArn": out(ref("StateMachine"), "the pipeline"),
        "PredictFunctionName": out(ref(function_id(PREDICT_MODULE)), "the predict function"),
        "PredictFunctionArn": out(arn_of(function_id(PREDICT_MODULE)), "the predict function"),
    }


def build_template(config: PipelineConfig, bootstrap: bool = False) -> dict[str, Any]:
    """The full stack, or with ``bootstrap`` only its bucket (where the code goes first)."""
    every = parameters(config)
    if bootstrap:
        return {"AWSTemplateFormatVersion": "2010-09-09",
                "Description": "stepml bootstrap: the bucket the stack's code is staged in",
                "Parameters": {key: every[key] for key in BOOTSTRAP_PARAMETERS},
                "Resources": {"ArtifactsBucket": bucket()},
                "Outputs": {"BucketName": outputs()["BucketName"]}}
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "stepml: Step Functions image-classification pipeline (generated by "
                       "infra_scripts/cfn/template.py)",
        "Parameters": every, "Resources": resources(config), "Outputs": outputs(),
    }


def template_json(template: dict[str, Any]) -> str:
    """Compact, deterministic JSON: the same template gives the same bytes."""
    return json.dumps(template, sort_keys=True, separators=(",", ":")) + "\n"


def template_body(config: PipelineConfig, bootstrap: bool = False) -> str:
    return template_json(build_template(config, bootstrap))

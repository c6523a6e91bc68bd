"""IAM of the stack, least privilege, written as the documents themselves.

This module is the one source of the stack's permissions. Every ARN is written with
CloudFormation placeholders (``${AWS::Region}``, ``${Prefix}``, ``${EndpointName}``, …): the
template wraps each such string in ``Fn::Sub``; ``render`` substitutes concrete values for the
policy linter, the README section and the local-cloud enforcement tests.

Rules the tests hold every document to: no wildcard in an action; a ``*`` resource only where
the API has no resource-level permission, in a statement whose Sid starts with
``NoResourceLevelPermission``; ``iam:PassRole`` only for the SageMaker and EC2 training roles,
each with ``iam:PassedToService``.

SageMaker models, endpoint configs and training jobs are named after the run (the execution
name), not the stack, so those are scoped by type and by the ``stepml:run-id`` tag the handlers
put on everything they create; the endpoint is the stack's one ``EndpointName``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from handlers.naming import RUN_TAG, VARIANT_DIMENSION
from statemachine.config import PipelineConfig
from statemachine.workflow import TASK_HANDLERS

Policy = dict[str, Any]
Statement = dict[str, Any]

# -- placeholders (CloudFormation parameters and pseudo parameters) ------------------------------
PARTITION, REGION, ACCOUNT = "${AWS::Partition}", "${AWS::Region}", "${AWS::AccountId}"
PREFIX, BUCKET, ENDPOINT = "${Prefix}", "${BucketName}", "${EndpointName}"
DATASETS, MODELS = "${DatasetPrefix}", "${ModelPrefix}"
AMI_PARAMETER = "${Ec2AmiParameter}"
CODE = f"{PREFIX}/code/"  # deploy-time bundles: handler zip, training/inference sources, request

PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9:.]+)\}")

# Task handlers grouped by the AWS concerns they touch; each group gets one role.
HANDLER_GROUPS: dict[str, tuple[str, ...]] = {
    "training": ("validate_input", "tune", "check_tuning", "start_sagemaker_training",
                 "start_ec2_training", "check_training"),
    "hosting": ("create_model", "create_endpoint_config", "deploy_endpoint", "check_endpoint",
                "register_autoscaling"),
    "registry": ("register_model", "evaluation_gate"),
    "predict-config": ("configure_predict_function", "smoke_test"),
    "cleanup": ("cleanup",),
}
PREDICT_MODULE = "predict"
ON_UPLOAD_MODULE = "on_upload"


# -- ARNs -----------------------------------------------------------------------------------------
def function_suffix(module: str) -> str:
    return module.replace("_", "-")


def function_arn(module: str) -> str:
    return f"arn:{PARTITION}:lambda:{REGION}:{ACCOUNT}:function:{PREFIX}-{function_suffix(module)}"


def function_log_group(module: str) -> str:
    return f"/aws/lambda/{PREFIX}-{function_suffix(module)}"


def log_streams(group: str) -> str:
    return f"arn:{PARTITION}:logs:{REGION}:{ACCOUNT}:log-group:{group}:log-stream:*"


def sagemaker_arn(kind: str, name: str) -> str:
    return f"arn:{PARTITION}:sagemaker:{REGION}:{ACCOUNT}:{kind}/{name}"


def role_arn(key: str) -> str:
    return f"arn:{PARTITION}:iam::{ACCOUNT}:role/{PREFIX}-{key}"


def bucket_arn(key: str | None = None) -> str:
    return f"arn:{PARTITION}:s3:::{BUCKET}" + ("" if key is None else f"/{key}")


STATE_MACHINE_ARN = f"arn:{PARTITION}:states:{REGION}:{ACCOUNT}:stateMachine:{PREFIX}-pipeline"
INSTANCE_PROFILE_ARN = f"arn:{PARTITION}:iam::{ACCOUNT}:instance-profile/{PREFIX}-ec2-training"
ENDPOINT_LOG_GROUP = f"/aws/sagemaker/Endpoints/{ENDPOINT}"


# -- statements -----------------------------------------------------------------------------------
def _doc(*statements: Statement) -> Policy:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def _allow(sid: str, actions: list[str], resources: list[str] | str,
           condition: dict | None = None) -> Statement:
    statement: Statement = {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources}
    if condition:
        statement["Condition"] = condition
    return statement


def _own_logs(modules: tuple[str, ...]) -> Statement:
    # Log groups are stack resources with retention, so no logs:CreateLogGroup here.
    return _allow("WriteOwnLogs", ["logs:CreateLogStream", "logs:PutLogEvents"],
                  [log_streams(function_log_group(m)) for m in modules])


def _pass_role(sid: str, key: str, service: str) -> Statement:
    return _allow(sid, ["iam:PassRole"], role_arn(key),
                  {"StringEquals": {"iam:PassedToService": service}})


def _list_bucket(sid: str, prefixes: list[str]) -> Statement:
    return _allow(sid, ["s3:ListBucket"], bucket_arn(),
                  {"StringLike": {"s3:prefix": [f"{p}*" for p in prefixes]}})


def _tagged_on_create() -> dict:
    # Create* must carry the run tag: cleanup and destroy find resources by it.
    return {"Null": {f"aws:RequestTag/{RUN_TAG}": "false"}}


def _tagged() -> dict:
    return {"Null": {f"aws:ResourceTag/{RUN_TAG}": "false"}}


def _describe_instances() -> Statement:
    # ec2:DescribeInstances has no resource-level permission: "*" is the only valid resource.
    return _allow("NoResourceLevelPermissionEc2DescribeInstances", ["ec2:DescribeInstances"], "*")


def _describe_images() -> Statement:
    # ec2:DescribeImages has no resource-level permission either: StartEC2Training reads the AMI's
    # root device name and snapshot size to size the root volume.
    return _allow("NoResourceLevelPermissionEc2DescribeImages", ["ec2:DescribeImages"], "*")


# -- one document per role ------------------------------------------------------------------------
def state_machine_policy() -> Policy:
    functions = [function_arn(m) for m in TASK_HANDLERS.values()]
    return _doc(
        # Only invoking: a redrive is the user's call (states:RedriveExecution on the caller),
        # after which Step Functions invokes the Tasks with this role again.
        _allow("InvokeOwnTaskFunctions", ["lambda:InvokeFunction"],
               functions + [f"{arn}:*" for arn in functions]),
    )


def training_handlers_policy() -> Policy:
    instance = f"arn:{PARTITION}:ec2:{REGION}:{ACCOUNT}:instance/*"
    jobs = [sagemaker_arn("training-job", "*"), sagemaker_arn("hyper-parameter-tuning-job", "*")]
    return _doc(
        _list_bucket("ListDatasets", [DATASETS]),
        _allow("ReadTrainingRequestAndRunStatus", ["s3:GetObject"],
               [bucket_arn(f"{CODE}*"), bucket_arn(f"{MODELS}*")]),
        _allow("StartTaggedTrainingAndTuningJobs", [
            "sagemaker:CreateTrainingJob", "sagemaker:CreateHyperParameterTuningJob",
            "sagemaker:AddTags"], jobs, _tagged_on_create()),
        # ListTags: a job found by name is reused only if its stepml:run-id tag is this run's.
        _allow("DescribeTrainingAndTuningJobs", [
            "sagemaker:DescribeTrainingJob", "sagemaker:DescribeHyperParameterTuningJob",
            "sagemaker:ListTags"], jobs),
        _pass_role("PassSageMakerRoleToSageMaker", "sagemaker", "sagemaker.amazonaws.com"),
        _pass_role("PassEc2RoleToEc2", "ec2-training", "ec2.amazonaws.com"),
        _allow("LaunchTaggedInstancesWithTheTrainingProfile", ["ec2:RunInstances"], instance, {
            **_tagged_on_create(), "ArnEquals": {"ec2:InstanceProfile": INSTANCE_PROFILE_ARN}}),
        _allow("RunInstancesNetworkImageAndVolume", ["ec2:RunInstances"], [
            f"arn:{PARTITION}:ec2:{REGION}::image/*",
            *(f"arn:{PARTITION}:ec2:{REGION}:{ACCOUNT}:{kind}/*"
              for kind in ("subnet", "network-interface", "security-group", "volume"))]),
        _allow("TagInstancesOnlyAtLaunch", ["ec2:CreateTags"], instance,
               {"StringEquals": {"ec2:CreateAction": "RunInstances"}}),
        _describe_instances(),
        _describe_images(),
        # Public parameters' ARNs have an empty account field; "*" there matches it.
        _allow("ResolveTheAmiParameter", ["ssm:GetParameter"],
               f"arn:{PARTITION}:ssm:{REGION}:*:parameter{AMI_PARAMETER}"),
        # The live model (the endpoint's current config → model → data) is the gate's baseline.
        _allow("FindTheLiveModel", ["sagemaker:DescribeEndpoint"], sagemaker_arn("endpoint", ENDPOINT)),
        _allow("ReadTheLiveModelsConfig", ["sagemaker:DescribeEndpointConfig", "sagemaker:DescribeModel"],
               [sagemaker_arn("endpoint-config", "*"), sagemaker_arn("model", "*")]),
        _own_logs(HANDLER_GROUPS["training"]),
    )


def hosting_handlers_policy() -> Policy:
    endpoint = sagemaker_arn("endpoint", ENDPOINT)
    configs = sagemaker_arn("endpoint-config", "*")
    alarms = (f"arn:{PARTITION}:cloudwatch:{REGION}:{ACCOUNT}:alarm:"
              f"TargetTracking-endpoint/{ENDPOINT}/*")
    linked_role = (f"arn:{PARTITION}:iam::{ACCOUNT}:role/aws-service-role/sagemaker."
                   "application-autoscaling.amazonaws.com/"
                   "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint")
    return _doc(
        _allow("CreateTaggedModelsAndEndpointConfigs", [
            "sagemaker:CreateModel", "sagemaker:CreateEndpointConfig", "sagemaker:AddTags"],
            [sagemaker_arn("model", "*"), configs], _tagged_on_create()),
        _allow("DescribeModelsAndEndpointConfigs", [
            "sagemaker:DescribeModel", "sagemaker:DescribeEndpointConfig", "sagemaker:ListTags"],
            [sagemaker_arn("model", "*"), configs]),
        # Both resources are checked: the one endpoint, with whichever config this run made.
        _allow("DeployTheOneEndpoint", ["sagemaker:CreateEndpoint", "sagemaker:UpdateEndpoint"],
               [endpoint, configs]),
        _allow("TagTheOneEndpoint", ["sagemaker:AddTags"], endpoint),
        _allow("ReadTheOneEndpoint", [
            "sagemaker:DescribeEndpoint", "sagemaker:ListTags"], endpoint),
        _pass_role("PassSageMakerRoleToModels", "sagemaker", "sagemaker.amazonaws.com"),
        # Scalable-target ARNs end in a random id, so they cannot be named ahead of time; the
        # namespace and dimension conditions keep these to SageMaker variant capacity.
        _allow("ScaleSageMakerVariants", [
            "application-autoscaling:RegisterScalableTarget",
            "application-autoscaling:PutScalingPolicy",
            "application-autoscaling:DeregisterScalableTarget"],
            f"arn:{PARTITION}:application-autoscaling:{REGION}:{ACCOUNT}:scalable-target/*",
            {"StringEquals": {
                "application-autoscaling:service-namespace": "sagemaker",
                "application-autoscaling:scalable-dimension": VARIANT_DIMENSION}}),
        _allow("TargetTrackingAlarmsOfTheOneEndpoint", [
            "cloudwatch:PutMetricAlarm", "cloudwatch:DescribeAlarms", "cloudwatch:DeleteAlarms"],
            alarms),
        # The guarded update's auto-rollback alarms watch the new fleet; SageMaker reads them with
        # the caller's permission (cloudwatch:DescribeAlarms) when UpdateEndpoint names them.
        _allow("RollbackAlarmsOfTheOneEndpoint", [
            "cloudwatch:PutMetricAlarm", "cloudwatch:SetAlarmState", "cloudwatch:DescribeAlarms"],
               f"arn:{PARTITION}:cloudwatch:{REGION}:{ACCOUNT}:alarm:{ENDPOINT}-rollout-*"),
        # CheckEndpoint marks the package Live / Superseded / RolledBack as the endpoint goes.
        _allow("TrackRolloutsInTheRegistry", [
            "sagemaker:ListModelPackages", "sagemaker:DescribeModelPackage",
            "sagemaker:UpdateModelPackage"], model_package_arn()),
        _allow("CreateTheAutoscalingServiceLinkedRole", ["iam:CreateServiceLinkedRole"],
               linked_role, {"StringEquals": {
                   "iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"}}),
        _own_logs(HANDLER_GROUPS["hosting"]),
    )


def model_package_arn(version: str = "*") -> str:
    return sagemaker_arn("model-package", f"{PREFIX}-models/{version}")


def registry_handlers_policy() -> Policy:
    return _doc(
        _list_bucket("ListDatasetsForTheManifest", [DATASETS]),
        _allow("ReadModelArtifacts", ["s3:GetObject"], bucket_arn(f"{MODELS}*")),
        _allow("WriteEvaluationReports", ["s3:PutObject"], bucket_arn(f"{MODELS}*")),
        _allow("RegisterTaggedPackagesInTheStacksGroup", [
            "sagemaker:CreateModelPackage", "sagemaker:AddTags"], model_package_arn(), _tagged_on_create()),
        _allow("ReadAndApprovePackagesOfTheStacksGroup", [
            "sagemaker:ListModelPackages", "sagemaker:DescribeModelPackage",
            "sagemaker:UpdateModelPackage"], model_package_arn()),
        _own_logs(HANDLER_GROUPS["registry"]),
    )


def predict_config_handlers_policy() -> Policy:
    predict = function_arn(PREDICT_MODULE)
    return _doc(
        _allow("ConfigureThePredictFunction", [
            "lambda:GetFunctionConfiguration", "lambda:UpdateFunctionConfiguration",
            "lambda:ListVersionsByFunction", "lambda:PublishVersion", "lambda:CreateAlias",
            "lambda:UpdateAlias",
            "lambda:PutFunctionConcurrency", "lambda:DeleteFunctionConcurrency",
            "lambda:PutProvisionedConcurrencyConfig"],
            [predict, f"{predict}:*"]),
        _allow("InvokeThePredictAlias", ["lambda:InvokeFunction"], f"{predict}:live"),
        _list_bucket("ListTestImages", [DATASETS]),
        _allow("ReadTestImages", ["s3:GetObject"], bucket_arn(f"{DATASETS}*")),
        _own_logs(HANDLER_GROUPS["predict-config"]),
    )


def cleanup_handler_policy() -> Policy:
    jobs = [sagemaker_arn("training-job", "*"), sagemaker_arn("hyper-parameter-tuning-job", "*")]
    return _doc(
        _allow("DescribeTrainingJobs", ["sagemaker:DescribeTrainingJob"],
               sagemaker_arn("training-job", "*")),
        _allow("StopTaggedTrainingAndTuningJobs", [
            "sagemaker:StopTrainingJob", "sagemaker:StopHyperParameterTuningJob"], jobs, _tagged()),
        _allow("DeleteTaggedModelsAndEndpointConfigs", [
            "sagemaker:DeleteModel", "sagemaker:DeleteEndpointConfig"],
            [sagemaker_arn("model", "*"), sagemaker_arn("endpoint-config", "*")], _tagged()),
        _allow("DeleteTheOneEndpoint", ["sagemaker:DeleteEndpoint"],
               sagemaker_arn("endpoint", ENDPOINT)),
        _describe_instances(),
        _allow("TerminateOnlyTrainingProfileInstances", ["ec2:TerminateInstances"],
               f"arn:{PARTITION}:ec2:{REGION}:{ACCOUNT}:instance/*",
               {"ArnEquals": {"ec2:InstanceProfile": INSTANCE_PROFILE_ARN}}),
        _own_logs(HANDLER_GROUPS["cleanup"]),
    )


def predict_policy() -> Policy:
    return _doc(
        _allow("InvokeTheOneEndpoint", ["sagemaker:InvokeEndpoint"],
               sagemaker_arn("endpoint", ENDPOINT)),
        _own_logs((PREDICT_MODULE,)),
    )


# The upload function's dead-letter queue (a stack resource): Lambda sends it each event whose
# asynchronous invocation still failed after Lambda's retries, as the function's own role.
ON_UPLOAD_DLQ = f"{PREFIX}-on-upload-dlq"
ON_UPLOAD_DLQ_ARN = f"arn:{PARTITION}:sqs:{REGION}:{ACCOUNT}:{ON_UPLOAD_DLQ}"


def on_upload_policy() -> Policy:
    return _doc(
        _allow("StartOwnStateMachine", ["states:StartExecution"], STATE_MACHINE_ARN),
        _list_bucket("ListDatasets", [DATASETS]),
        _allow("ReadDatasetMarkersAndManifests", ["s3:GetObject"], bucket_arn(f"{DATASETS}*")),
        _allow("SendFailedEventsToOwnDeadLetterQueue", ["sqs:SendMessage"], ON_UPLOAD_DLQ_ARN),
        _own_logs((ON_UPLOAD_MODULE,)),
    )


def sagemaker_execution_policy() -> Policy:
    """Training jobs and endpoints: read datasets and code, write and read models."""
    logs = f"arn:{PARTITION}:logs:{REGION}:{ACCOUNT}:log-group:/aws/sagemaker/TrainingJobs"
    return _doc(
        _list_bucket("ListDatasetsCodeAndModels", [DATASETS, CODE, MODELS]),
        _allow("ReadDatasetsAndCode", ["s3:GetObject"],
               [bucket_arn(f"{DATASETS}*"), bucket_arn(f"{CODE}*")]),
        _allow("WriteAndReadModels", ["s3:PutObject", "s3:GetObject"], bucket_arn(f"{MODELS}*")),
        _allow("CreateTrainingLogGroup", ["logs:CreateLogGroup"], logs),
        _allow("WriteTrainingAndEndpointLogs", [
            "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            [f"{logs}:log-stream:*", log_streams(ENDPOINT_LOG_GROUP)]),
        # cloudwatch:PutMetricData has no resource-level permission; the namespace condition
        # keeps it to SageMaker's own metric namespaces.
        _allow("NoResourceLevelPermissionCloudWatchPutMetricData", ["cloudwatch:PutMetricData"],
               "*", {"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}}),
    )


def ec2_training_policy() -> Policy:
    """The training instance: read the dataset and code, write the model and status object."""
    return _doc(
        _list_bucket("ListDatasetsCodeAndModels", [DATASETS, CODE, MODELS]),
        _allow("ReadDatasetsAndCode", ["s3:GetObject"],
               [bucket_arn(f"{DATASETS}*"), bucket_arn(f"{CODE}*")]),
        _allow("WriteAndReadModels", ["s3:PutObject", "s3:GetObject"], bucket_arn(f"{MODELS}*")),
    )


def trust(service: str, condition: dict | None = None) -> Policy:
    statement: Statement = {"Effect": "Allow", "Principal": {"Service": service},
                            "Action": "sts:AssumeRole"}
    if condition:
        statement["Condition"] = condition
    return {"Version": "2012-10-17", "Statement": [statement]}


@dataclass(frozen=True)
class RoleSpec:
    key: str  # the role is named <Prefix>-<key>
    logical_id: str  # CloudFormation logical id of the role
    service: str  # the service principal that assumes it
    policy: Callable[[], Policy]
    modules: tuple[str, ...] = ()  # Lambda handler modules that run with it
    summary: str = ""

    def trust(self) -> Policy:
        if self.service == "states.amazonaws.com":  # confused-deputy guard: our state machine only
            return trust(self.service, {"StringEquals": {"aws:SourceAccount": ACCOUNT},
                                        "ArnLike": {"aws:SourceArn": STATE_MACHINE_ARN}})
        return trust(self.service)


ROLES: tuple[RoleSpec, ...] = (
    RoleSpec("state-machine", "StateMachineRole", "states.amazonaws.com", state_machine_policy,
             summary="invoke the stack's task functions (also after a redrive)"),
    RoleSpec("handlers-training", "TrainingHandlersRole", "lambda.amazonaws.com",
             training_handlers_policy, HANDLER_GROUPS["training"],
             "validate input, start/poll training and tuning on SageMaker or EC2"),
    RoleSpec("handlers-hosting", "HostingHandlersRole", "lambda.amazonaws.com",
             hosting_handlers_policy, HANDLER_GROUPS["hosting"],
             "model, endpoint config, the one endpoint, its autoscaling"),
    RoleSpec("handlers-registry", "RegistryHandlersRole", "lambda.amazonaws.com",
             registry_handlers_policy, HANDLER_GROUPS["registry"],
             "register this run's model package, approve or reject it (the gate)"),
    RoleSpec("handlers-predict-config", "PredictConfigHandlersRole", "lambda.amazonaws.com",
             predict_config_handlers_policy, HANDLER_GROUPS["predict-config"],
             "configure, version and smoke-test the predict function"),
    RoleSpec("handlers-cleanup", "CleanupHandlerRole", "lambda.amazonaws.com",
             cleanup_handler_policy, HANDLER_GROUPS["cleanup"],
             "stop this run's training, remove its unserved hosting resources"),
    RoleSpec("predict", "PredictFunctionRole", "lambda.amazonaws.com", predict_policy,
             (PREDICT_MODULE,), "invoke exactly the stack's endpoint"),
    RoleSpec("on-upload", "OnUploadFunctionRole", "lambda.amazonaws.com", on_upload_policy,
             (ON_UPLOAD_MODULE,), "start the stack's state machine for a dataset marker"),
    RoleSpec("sagemaker", "SageMakerExecutionRole", "sagemaker.amazonaws.com",
             sagemaker_execution_policy, summary="training jobs and endpoints"),
    RoleSpec("ec2-training", "Ec2TrainingRole", "ec2.amazonaws.com", ec2_training_policy,
             summary="the EC2 training instance (via its instance profile)"),
)


def role(key: str) -> RoleSpec:
    return next(spec for spec in ROLES if spec.key == key)


def role_of_module(module: str) -> RoleSpec:
    return next(spec for spec in ROLES if module in spec.modules)


# -- rendering ------------------------------------------------------------------------------------
def placeholder_values(config: PipelineConfig, account_id: str | None = None,
                       partition: str = "aws") -> dict[str, str]:
    """Concrete values for every placeholder the policies and the template use."""
    return {
        "AWS::Partition": partition, "AWS::Region": config.region,
        "AWS::AccountId": account_id or config.account_id, "Prefix": config.prefix,
        "BucketName": config.bucket, "EndpointName": config.endpoint_name,
        "DatasetPrefix": config.dataset_prefix, "ModelPrefix": config.model_prefix,
        "Ec2AmiParameter": config.ec2_ami_parameter,
    }


def render(value: Any, values: dict[str, str]) -> Any:
    """``value`` with every ``${Name}`` replaced; an unknown name is an error, not a gap."""
    if isinstance(value, str):
        return PLACEHOLDER.sub(lambda match: values[match.group(1)], value)
    if isinstance(value, list):
        return [render(item, values) for item in value]
    if isinstance(value, dict):
        return {key: render(item, values) for key, item in value.items()}
    return value


def concrete_policies(config: PipelineConfig, account_id: str | None = None) -> dict[str, Policy]:
    """Every role's permission policy with real names and ARNs, keyed by role key."""
    values = placeholder_values(config, account_id)
    return {spec.key: render(spec.policy(), values) for spec in ROLES}

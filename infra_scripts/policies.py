"""IAM policies of the stack, least privilege, written as the documents themselves.

A ``*`` resource appears only where the API has no resource-level permission; each such
statement says so in its Sid.
"""

from __future__ import annotations

from typing import Any

from statemachine.config import PipelineConfig
from statemachine.workflow import TASK_HANDLERS

Policy = dict[str, Any]


def trust(service: str) -> Policy:
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]}


def _doc(*statements: dict) -> Policy:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def _arns(config: PipelineConfig) -> dict[str, str]:
    region, account, prefix = config.region, config.account_id, config.prefix
    return {
        "functions": f"arn:aws:lambda:{region}:{account}:function:{prefix}-*",
        "predict": config.function_arn("predict"),
        "sagemaker": f"arn:aws:sagemaker:{region}:{account}",
        "logs": f"arn:aws:logs:{region}:{account}:log-group:/aws/lambda/{prefix}-*",
        "bucket": f"arn:aws:s3:::{config.bucket}",
        "executions": f"arn:aws:states:{region}:{account}:execution:{config.state_machine_name}:*",
    }


def state_machine_policy(config: PipelineConfig) -> Policy:
    arns = _arns(config)
    functions = [config.function_arn(module) for module in TASK_HANDLERS.values()]
    return _doc(
        {"Sid": "InvokeOwnHandlers", "Effect": "Allow", "Action": "lambda:InvokeFunction",
         "Resource": functions + [f"{arn}:*" for arn in functions]},
        {"Sid": "RedriveOwnExecutions", "Effect": "Allow", "Action": "states:RedriveExecution",
         "Resource": arns["executions"]},
    )


def predict_policy(config: PipelineConfig, endpoint_name: str | None = None) -> Policy:
    arns = _arns(config)
    endpoint = endpoint_name or config.endpoint_name
    return _doc(
        {"Sid": "InvokeTheOneEndpoint", "Effect": "Allow", "Action": "sagemaker:InvokeEndpoint",
         "Resource": f"{arns['sagemaker']}:endpoint/{endpoint.lower()}"},
        {"Sid": "OwnLogs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": f"arn:aws:logs:{config.region}:{config.account_id}:log-group:"
                     f"/aws/lambda/{config.function_name('predict')}:*"},
    )


def handler_policy(config: PipelineConfig) -> Policy:
    arns, sm = _arns(config), _arns(config)["sagemaker"]
    return _doc(
        {"Sid": "TrainingAndHosting", "Effect": "Allow", "Action": [
            "sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob",
            "sagemaker:CreateHyperParameterTuningJob", "sagemaker:DescribeHyperParameterTuningJob",
            "sagemaker:StopHyperParameterTuningJob", "sagemaker:CreateModel", "sagemaker:DescribeModel",
            "sagemaker:DeleteModel", "sagemaker:CreateEndpointConfig", "sagemaker:DescribeEndpointConfig",
            "sagemaker:DeleteEndpointConfig", "sagemaker:CreateEndpoint", "sagemaker:UpdateEndpoint",
            "sagemaker:DescribeEndpoint", "sagemaker:DeleteEndpoint", "sagemaker:AddTags"],
         "Resource": [f"{sm}:training-job/*", f"{sm}:hyper-parameter-tuning-job/*", f"{sm}:model/*",
                      f"{sm}:endpoint-config/*", f"{sm}:endpoint/*"]},
        {"Sid": "PassOnlyTheTrainingRoles", "Effect": "Allow", "Action": "iam:PassRole",
         "Resource": [config.role_arn("sagemaker"), config.role_arn("ec2-training")],
         "Condition": {"StringEquals": {"iam:PassedToService": ["sagemaker.amazonaws.com",
                                                                "ec2.amazonaws.com"]}}},
        {"Sid": "Ec2DescribeHasNoResourceLevelPermissions", "Effect": "Allow",
         "Action": ["ec2:DescribeInstances"], "Resource": "*"},
        {"Sid": "LaunchAndStopTaggedTrainingInstances", "Effect": "Allow",
         "Action": ["ec2:RunInstances", "ec2:TerminateInstances", "ec2:CreateTags"],
         "Resource": [f"arn:aws:ec2:{config.region}:{config.account_id}:instance/*",
                      f"arn:aws:ec2:{config.region}:{config.account_id}:volume/*",
                      f"arn:aws:ec2:{config.region}:{config.account_id}:network-interface/*",
                      f"arn:aws:ec2:{config.region}:{config.account_id}:security-group/*",
                      f"arn:aws:ec2:{config.region}:{config.account_id}:subnet/*",
                      f"arn:aws:ec2:{config.region}::image/*"]},
        {"Sid": "ResolveTheAmiParameter", "Effect": "Allow", "Action": "ssm:GetParameter",
         "Resource": f"arn:aws:ssm:{config.region}::parameter{config.ec2_ami_parameter}"},
        {"Sid": "AutoscalingHasNoResourceLevelPermissions", "Effect": "Allow", "Action": [
            "application-autoscaling:RegisterScalableTarget", "application-autoscaling:PutScalingPolicy",
            "application-autoscaling:DeregisterScalableTarget"], "Resource": "*"},
        {"Sid": "ConfigureThePredictFunction", "Effect": "Allow", "Action": [
            "lambda:GetFunctionConfiguration", "lambda:UpdateFunctionConfiguration",
            "lambda:PublishVersion", "lambda:CreateAlias", "lambda:UpdateAlias",
            "lambda:PutFunctionConcurrency", "lambda:PutProvisionedConcurrencyConfig",
            "lambda:InvokeFunction"], "Resource": [arns["predict"], f"{arns['predict']}:*"]},
        {"Sid": "ReadDatasetsAndConfigWriteModels", "Effect": "Allow",
         "Action": ["s3:GetObject", "s3:ListBucket"],
         "Resource": [arns["bucket"], f"{arns['bucket']}/*"]},
        {"Sid": "OwnLogs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": f"{arns['logs']}:*"},
    )


def training_data_policy(config: PipelineConfig) -> Policy:
    """SageMaker and EC2 training roles: read datasets and code, write models."""
    bucket = _arns(config)["bucket"]
    return _doc(
        {"Sid": "ListTheBucket", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket},
        {"Sid": "ReadDatasetsAndCode", "Effect": "Allow", "Action": "s3:GetObject",
         "Resource": [f"{bucket}/{config.dataset_prefix}*", f"{bucket}/{config.prefix}/code/*"]},
        {"Sid": "WriteModels", "Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject"],
         "Resource": f"{bucket}/{config.model_prefix}*"},
    )


ROLES: dict[str, tuple[str, Any]] = {
    # role suffix: (trusted service, policy builder)
    "state-machine": ("states.amazonaws.com", state_machine_policy),
    "handlers": ("lambda.amazonaws.com", handler_policy),
    "predict": ("lambda.amazonaws.com", predict_policy),
    "sagemaker": ("sagemaker.amazonaws.com", training_data_policy),
    "ec2-training": ("ec2.amazonaws.com", training_data_policy),
}

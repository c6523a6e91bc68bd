"""The stack as code: a CloudFormation template generated from Python (``template.py``), its
IAM from ``infra_scripts/policies.py``, deployed by change set (``changeset.py``), torn down by
``teardown.py``.

Local cloud (moto 5.2.5; read from ``moto/cloudformation/parsing.py`` and each service's
``models.py``), resource type by resource type:

* Through CloudFormation, as on AWS: AWS::IAM::Role, AWS::IAM::Policy (create, update,
  delete), AWS::IAM::InstanceProfile, AWS::Lambda::Function (code from S3; updates apply code
  and configuration), AWS::Lambda::Permission, AWS::Events::Rule (with its target),
  AWS::Logs::LogGroup, AWS::S3::Bucket.
* Through the Step Functions API instead: AWS::StepFunctions::StateMachine. moto's model writes
  it to the plain Step Functions backend, but with execution switched on the local cloud serves
  state machines from moto's interpreter backend, where a stack-made one would not exist.
* Through the Lambda API instead: AWS::Lambda::LayerVersion. moto's model has no physical id (a
  ``Ref`` to it is not its ARN), no update and no delete, and its functions ignore ``Layers`` on
  create; the layer is published (once per content), referenced by ARN and set on the functions.
* Completed with boto3 after each deploy (moto accepts these properties and ignores them): the
  bucket's public access block, versioning, ownership controls, lifecycle rules and EventBridge
  notifications; log-group retention on update; the functions' tags; the stack's outputs (moto
  does not refresh them when it executes a change set).

moto's change sets do not roll back a failed execution, so a deploy that created the stack and
then fails deletes it (bucket included) itself; AWS's rollback leaves ROLLBACK_COMPLETE, which
the next deploy removes before starting again. See ``local_gaps.py``.
"""

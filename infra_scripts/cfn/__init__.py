"""The stack as code: a CloudFormation template generated from Python, deployed by change set.

What goes through CloudFormation on the local cloud (moto 5.2.5's CloudFormation models these
types; read from ``moto/cloudformation/parsing.py`` and each service's ``models.py``):

| resource type | local cloud | why |
|---|---|---|
| AWS::IAM::Role, AWS::IAM::Policy, AWS::IAM::InstanceProfile | CloudFormation | modelled (create, policy update, delete) |
| AWS::Lambda::Function (code from S3), AWS::Lambda::Permission | CloudFormation | modelled, updates apply code and configuration |
| AWS::StepFunctions::StateMachine (DefinitionString + Fn::Sub) | CloudFormation | modelled; DefinitionSubstitutions is not, so the template uses Fn::Sub |
| AWS::Events::Rule | CloudFormation | modelled, with targets |
| AWS::Logs::LogGroup | CloudFormation | modelled; RetentionInDays on update: also boto3 (below) |
| AWS::S3::Bucket | CloudFormation, then boto3 | moto creates it with its name, encryption and tags only |

Through boto3 after each stack operation (``infra_scripts/cfn/local_gaps.py``), because moto
accepts these properties but does not apply them: the bucket's public access block, versioning,
ownership controls, lifecycle rules and EventBridge notifications; log-group retention after an
update (moto has no log-group update); the functions' tags. moto's change sets do not roll back a
failed execution either, so ``stepml deploy`` deletes a stack whose creation it started and that
failed (AWS leaves ROLLBACK_COMPLETE; deploy removes that too, so a retry can start afresh).
"""

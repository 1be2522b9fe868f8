"""The log groups AWS services would create on their own, created first and encrypted.

Lambda functions and RDS log exports write to log groups the service creates when it first
logs: without a customer key and kept forever. Every such group of a stack is created here
instead, with the deployment's logs key and retention:

- a Lambda function of the stack (CDK's own handlers among them) logs to a group of its own,
  named in its ``LoggingConfig``;
- a secret-rotation function (a Serverless Application Repository application, whose
  function cannot be configured) has ``/aws/lambda/<its function name>`` created before it;
- an RDS instance has ``/aws/rds/instance/<identifier>/<log>`` created before it, for every
  log it exports (so its identifier must be fixed).
"""

from __future__ import annotations

from aws_cdk import CfnResource, Names, RemovalPolicy, Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import aws_sam as sam


def create_service_log_groups(
    stack: Stack, *, key: kms.IKey, retention: logs.RetentionDays
) -> list[logs.LogGroup]:
    """Create, in ``stack``, the log group of every Lambda function and RDS log export."""
    created: list[logs.LogGroup] = []

    def group(construct_id: str, name: str | None) -> logs.LogGroup:
        log_group = logs.LogGroup(
            stack,
            construct_id,
            log_group_name=name,
            encryption_key=key,
            retention=retention,
            removal_policy=RemovalPolicy.RETAIN,
        )
        created.append(log_group)
        return log_group

    for construct in list(stack.node.find_all()):
        if isinstance(construct, CfnResource) and construct.cfn_resource_type == (
            "AWS::Lambda::Function"
        ):
            # The group's name comes from CloudFormation; the function refers to it, so it
            # exists before the function first runs.
            log_group = group(f"{Names.unique_id(construct)}Logs", None)
            construct.add_property_override("LoggingConfig.LogGroup", log_group.log_group_name)
        elif isinstance(construct, sam.CfnApplication):
            parameters = construct.parameters
            function_name = parameters.get("functionName") if isinstance(parameters, dict) else None
            if not isinstance(function_name, str):
                raise ValueError(f"{construct.node.path}: no literal functionName parameter")
            log_group = group(f"{Names.unique_id(construct)}Logs", f"/aws/lambda/{function_name}")
            construct.node.add_dependency(log_group)
        elif isinstance(construct, rds.CfnDBInstance):
            exports = construct.enable_cloudwatch_logs_exports or []
            identifier = construct.db_instance_identifier
            if exports and not isinstance(identifier, str):
                raise ValueError(f"{construct.node.path}: exports logs without a fixed identifier")
            for export in exports:
                log_group = group(
                    f"{Names.unique_id(construct)}{export.title()}Logs",
                    f"/aws/rds/instance/{identifier}/{export}",
                )
                construct.node.add_dependency(log_group)
    return created

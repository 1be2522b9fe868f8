"""VPC without NAT: isolated subnets, VPC endpoints for every AWS API the tasks call, and
one security group per workload with only the rules that workload uses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import Aws, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from cardstream_infra.service_ports import API_LISTENER_PORT, DASHBOARD_LISTENER_PORT

APP_SUBNETS = "app"
DATA_SUBNETS = "data"

# Interface endpoints the tasks need with no route to the internet: image pulls (ECR api +
# dkr; layers come from S3 through the gateway endpoint), logs, secrets, the stream, the
# queue, and CloudWatch metrics (the dashboard reads the stream's iterator age). Cognito is
# not here: a user pool with a domain (needed for the client-credentials token endpoint)
# cannot be reached through PrivateLink (Cognito developer guide, "Access Amazon Cognito
# using an interface endpoint"), so the services read a JWKS copy from S3 instead.
# Each with the IAM service prefix its endpoint policy allows.
INTERFACE_ENDPOINTS: dict[str, tuple[ec2.InterfaceVpcEndpointAwsService, str]] = {
    "EcrApi": (ec2.InterfaceVpcEndpointAwsService.ECR, "ecr"),
    "EcrDocker": (ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER, "ecr"),
    "Logs": (ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS, "logs"),
    "SecretsManager": (ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER, "secretsmanager"),
    "Kinesis": (ec2.InterfaceVpcEndpointAwsService.KINESIS_STREAMS, "kinesis"),
    "Sqs": (ec2.InterfaceVpcEndpointAwsService.SQS, "sqs"),
    "Monitoring": (ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_MONITORING, "cloudwatch"),
    # The ingest-api reads the merchant registry from Parameter Store.
    "Ssm": (ec2.InterfaceVpcEndpointAwsService.SSM, "ssm"),
}


@dataclass(frozen=True, kw_only=True)
class NetworkProps:
    """Props of :class:`Network`.

    Attributes:
        cidr: IPv4 range of the VPC.
        max_azs: availability zones to spread subnets over (two for RDS Multi-AZ).
        api_port: port the ingest-api container listens on.
        dashboard_port: port the dashboard container listens on.
        operator_cidrs: networks operators reach the dashboard listener from.
        account: the deployment's account (endpoint policies admit only it).
        region: its region.
        jwks_object: ``<bucket>/<key>`` of the JWKS copy the services read unsigned.
        database_port: PostgreSQL port.
        log_key: KMS key that encrypts the flow-log group.
        log_retention: retention of the flow-log group.
    """

    cidr: str = "10.40.0.0/16"
    max_azs: int = 2
    api_port: int
    dashboard_port: int
    operator_cidrs: Sequence[str]
    account: str
    region: str
    jwks_object: str
    database_port: int = 5432
    log_key: kms.IKey
    log_retention: logs.RetentionDays


class Network(Construct):
    """The VPC, its endpoints and the security groups of every workload."""

    def __init__(self, scope: Construct, construct_id: str, *, props: NetworkProps) -> None:
        super().__init__(scope, construct_id)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(props.cidr),
            max_azs=props.max_azs,
            # No NAT and no internet gateway: every AWS call goes through an endpoint.
            nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name=APP_SUBNETS, subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=22
                ),
                ec2.SubnetConfiguration(
                    name=DATA_SUBNETS, subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24
                ),
            ],
            restrict_default_security_group=True,
        )
        flow_log_group = logs.LogGroup(
            self,
            "FlowLogs",
            encryption_key=props.log_key,
            retention=props.log_retention,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_log_group),
            traffic_type=ec2.FlowLogTrafficType.ALL,
        )
        self.app_subnets = ec2.SubnetSelection(subnet_group_name=APP_SUBNETS)
        self.data_subnets = ec2.SubnetSelection(subnet_group_name=DATA_SUBNETS)

        self.endpoint_sg = self._group("Endpoints", "VPC interface endpoints")
        self.endpoint_sg.add_ingress_rule(
            ec2.Peer.ipv4(props.cidr), ec2.Port.tcp(443), "HTTPS from the VPC"
        )
        # Endpoint policies: a data perimeter. Only this account's principals call AWS through
        # the endpoints, and S3 and DynamoDB only reach this account's buckets and tables, so
        # credentials of another account (or a task's own, towards a foreign bucket) cannot
        # carry data out of the VPC.
        own_principals = {"StringEquals": {"aws:PrincipalAccount": props.account}}
        for name, (service, prefix) in INTERFACE_ENDPOINTS.items():
            endpoint = self.vpc.add_interface_endpoint(
                name,
                service=service,
                subnets=self.app_subnets,
                security_groups=[self.endpoint_sg],
                private_dns_enabled=True,
                # The group already admits HTTPS from the VPC range, as a literal CIDR.
                open=False,
            )
            endpoint.add_to_policy(
                iam.PolicyStatement(
                    sid="ThisAccountOnly",
                    principals=[iam.AnyPrincipal()],
                    actions=[f"{prefix}:*"],
                    resources=["*"],
                    conditions=own_principals,
                )
            )
        # The private API that relays the dashboard's sign-in to Cognito (token_relay) is
        # called unsigned: this endpoint reaches this account's APIs only.
        self.execute_api_endpoint = self.vpc.add_interface_endpoint(
            "ExecuteApi",
            service=ec2.InterfaceVpcEndpointAwsService.APIGATEWAY,
            subnets=self.app_subnets,
            security_groups=[self.endpoint_sg],
            private_dns_enabled=True,
            open=False,
        )
        self.execute_api_endpoint.add_to_policy(
            iam.PolicyStatement(
                sid="ThisAccountsApisOnly",
                principals=[iam.AnyPrincipal()],
                actions=["execute-api:Invoke"],
                resources=[f"arn:{Aws.PARTITION}:execute-api:{props.region}:{props.account}:*"],
            )
        )
        own_resources = {
            "StringEquals": {
                "aws:PrincipalAccount": props.account,
                "aws:ResourceAccount": props.account,
            }
        }
        self.s3_endpoint = self.vpc.add_gateway_endpoint(
            "S3", service=ec2.GatewayVpcEndpointAwsService.S3, subnets=[self.app_subnets]
        )
        self.s3_endpoint.add_to_policy(
            iam.PolicyStatement(
                sid="ThisAccountsBuckets",
                principals=[iam.AnyPrincipal()],
                actions=["s3:*"],
                resources=["*"],
                conditions=own_resources,
            )
        )
        self.s3_endpoint.add_to_policy(
            iam.PolicyStatement(
                sid="ImageLayers",
                # ECR keeps image layers in an AWS-owned bucket per region (ECR user guide,
                # "Amazon ECR interface VPC endpoints", minimum S3 bucket permissions).
                principals=[iam.AnyPrincipal()],
                actions=["s3:GetObject"],
                resources=[f"arn:{Aws.PARTITION}:s3:::prod-{props.region}-starport-layer-bucket/*"],
                conditions=own_principals,
            )
        )
        self.s3_endpoint.add_to_policy(
            iam.PolicyStatement(
                sid="UnsignedJwksRead",
                # The services fetch the user pool's public keys with a plain HTTPS GET.
                principals=[iam.AnyPrincipal()],
                actions=["s3:GetObject"],
                resources=[f"arn:{Aws.PARTITION}:s3:::{props.jwks_object}"],
            )
        )
        dynamodb = self.vpc.add_gateway_endpoint(
            "DynamoDb",
            service=ec2.GatewayVpcEndpointAwsService.DYNAMODB,
            subnets=[self.app_subnets],
        )
        dynamodb.add_to_policy(
            iam.PolicyStatement(
                sid="ThisAccountsTables",
                principals=[iam.AnyPrincipal()],
                actions=["dynamodb:*"],
                resources=["*"],
                conditions=own_resources,
            )
        )

        self.vpc_link_sg = self._group("VpcLink", "API Gateway VPC link to the internal ALB")
        self.alb_sg = self._group("Alb", "internal ALB behind the API Gateway VPC link")
        self.ingest_sg = self._group("IngestApi", "ingest-api tasks")
        self.dashboard_sg = self._group("Dashboard", "dashboard tasks")
        self.writer_sg = self._group("StreamWriter", "stream-writer tasks")
        self.loader_sg = self._group("DbLoader", "db-loader tasks")
        self.migrate_sg = self._group("Migrate", "one-off database migration task")
        self.rotation_sg = self._group("SecretRotation", "Secrets Manager rotation functions")
        self.database_sg = self._group("Database", "RDS PostgreSQL")

        api_listener = ec2.Port.tcp(API_LISTENER_PORT)
        self.vpc_link_sg.add_egress_rule(self.alb_sg, api_listener, "to the API listener")
        self.alb_sg.add_ingress_rule(self.vpc_link_sg, api_listener, "API from the VPC link")
        for cidr in props.operator_cidrs:
            self.alb_sg.add_ingress_rule(
                ec2.Peer.ipv4(cidr),
                ec2.Port.tcp(DASHBOARD_LISTENER_PORT),
                "dashboard from the operators' network",
            )
        self.alb_sg.add_egress_rule(
            self.ingest_sg, ec2.Port.tcp(props.api_port), "to ingest-api tasks"
        )
        self.alb_sg.add_egress_rule(
            self.dashboard_sg, ec2.Port.tcp(props.dashboard_port), "to dashboard tasks"
        )
        self.ingest_sg.add_ingress_rule(self.alb_sg, ec2.Port.tcp(props.api_port), "from the ALB")
        self.dashboard_sg.add_ingress_rule(
            self.alb_sg, ec2.Port.tcp(props.dashboard_port), "from the ALB"
        )
        db_port = ec2.Port.tcp(props.database_port)
        for name, group in (
            ("ingest-api", self.ingest_sg),
            ("dashboard", self.dashboard_sg),
            ("db-loader", self.loader_sg),
            ("migration", self.migrate_sg),
        ):
            group.add_egress_rule(self.database_sg, db_port, "to PostgreSQL")
            self.database_sg.add_ingress_rule(group, db_port, f"from {name}")
        for group in (
            self.ingest_sg,
            self.dashboard_sg,
            self.writer_sg,
            self.loader_sg,
            self.migrate_sg,
            self.rotation_sg,
        ):
            # HTTPS can only reach the VPC endpoints: the VPC has no internet gateway or NAT,
            # and the gateway endpoints' prefix lists are region-specific lookups.
            group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "AWS APIs via endpoints")

    def _group(self, construct_id: str, description: str) -> ec2.SecurityGroup:
        return ec2.SecurityGroup(
            self, construct_id, vpc=self.vpc, description=description, allow_all_outbound=False
        )


class LogEncryptionKey(Construct):
    """The KMS key that encrypts every CloudWatch log group of the deployment."""

    def __init__(self, scope: Construct, construct_id: str, *, region: str, account: str) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "Key",
            description="cardstream CloudWatch Logs encryption",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        # CloudWatch Logs encrypts with the key itself, so its service principal must be
        # allowed in the key policy (it cannot use an IAM policy); only for log groups of
        # this account and region, which CloudWatch Logs names in the encryption context.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                actions=[
                    "kms:Encrypt",
                    "kms:Decrypt",
                    "kms:ReEncryptFrom",
                    "kms:ReEncryptTo",
                    "kms:GenerateDataKey",
                    "kms:GenerateDataKeyWithoutPlaintext",
                    "kms:DescribeKey",
                ],
                principals=[iam.ServicePrincipal(f"logs.{region}.amazonaws.com")],
                resources=["*"],
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": (
                            f"arn:{Aws.PARTITION}:logs:{region}:{account}:log-group:*"
                        )
                    }
                },
            )
        )

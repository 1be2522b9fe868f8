"""Logging of an API Gateway REST API stage: JSON access logs (who, what, outcome; never
headers or bodies) and execution logs of errors only (never request or response data),
both in log groups of ours with the deployment's key and retention."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct


class RestApiLogs(Construct):
    """The access log group; ``stage_options`` and ``add_execution_logs`` wire a stage."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        key: kms.IKey,
        retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        self._key = key
        self._retention = retention
        self.access_logs = self._group("AccessLogs", None)

    def _group(self, construct_id: str, name: str | None) -> logs.LogGroup:
        return logs.LogGroup(
            self,
            construct_id,
            log_group_name=name,
            encryption_key=self._key,
            retention=self._retention,
            removal_policy=RemovalPolicy.RETAIN,
        )

    def stage_options(
        self, *, stage_name: str, rate_limit: int, burst_limit: int
    ) -> apigw.StageOptions:
        """A throttled, traced stage that logs access and errors."""
        return apigw.StageOptions(
            stage_name=stage_name,
            throttling_rate_limit=rate_limit,
            throttling_burst_limit=burst_limit,
            metrics_enabled=True,
            tracing_enabled=True,
            # Errors only, and never request or response data (card numbers, tokens).
            logging_level=apigw.MethodLoggingLevel.ERROR,
            data_trace_enabled=False,
            access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
            # Caller identity and outcome for the audit trail; never headers or bodies.
            access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                caller=True,
                http_method=True,
                ip=True,
                protocol=True,
                request_time=True,
                resource_path=True,
                response_length=True,
                status=True,
                user=True,
            ),
        )

    def add_execution_logs(self, api: apigw.RestApi, stage_name: str) -> logs.LogGroup:
        """API Gateway would create the execution log group itself, unencrypted and kept
        forever; created here under the name it writes to."""
        return self._group(
            "ExecutionLogs", f"API-Gateway-Execution-Logs_{api.rest_api_id}/{stage_name}"
        )

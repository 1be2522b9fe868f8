"""CloudWatch alarms of the original design (RDS CPU, storage, connections) and of the
pipeline (iterator age, dead letters, API 5xx rate, loader errors), all to one SNS topic."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

CPU_PERCENT = 80
CONNECTIONS_FRACTION = 0.8
FREE_STORAGE_FRACTION = 0.1
ITERATOR_AGE_MS = 5 * 60 * 1000
API_5XX_PERCENT = 1
LOADER_ERRORS_METRIC_NAMESPACE = "cardstream"
LOADER_ERRORS_METRIC = "LoaderErrors"


@dataclass(frozen=True, kw_only=True)
class PipelineAlarmsProps:
    """Props of :class:`PipelineAlarms`.

    Attributes:
        database: the RDS instance.
        allocated_storage_gib: its allocated storage (free-storage threshold is 10 %).
        max_connections: its ``max_connections`` (connection threshold is 80 %).
        stream: the Kinesis stream.
        dead_letter_queue: the loader's DLQ.
        api_name: name of the REST API.
        api_stage: its stage name.
        loader_log_group: db-loader log group (JSON lines with a ``level`` field).
        topic_key: KMS key of the alarm topic.
        alarm_email: optional subscriber.
    """

    database: rds.IDatabaseInstance
    allocated_storage_gib: int
    max_connections: int
    stream: kinesis.IStream
    dead_letter_queue: sqs.IQueue
    api_name: str
    api_stage: str
    loader_log_group: logs.ILogGroup
    topic_key: kms.IKey
    alarm_email: str | None = None


class PipelineAlarms(Construct):
    """Alarms with explicit thresholds; every one notifies ``topic``."""

    def __init__(self, scope: Construct, construct_id: str, *, props: PipelineAlarmsProps) -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(
            self,
            "Topic",
            display_name="cardstream alarms",
            master_key=props.topic_key,
            enforce_ssl=True,
        )
        if props.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(props.alarm_email))
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        five_minutes = Duration.minutes(5)
        db = props.database
        self._add(
            "DatabaseCpu",
            db.metric_cpu_utilization(period=five_minutes),
            threshold=CPU_PERCENT,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            description="RDS CPU at or above 80 %",
        )
        self._add(
            "DatabaseFreeStorage",
            db.metric_free_storage_space(period=five_minutes),
            threshold=props.allocated_storage_gib * 1024**3 * FREE_STORAGE_FRACTION,
            comparison=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
            description="RDS free storage below 10 % of the allocation",
        )
        self._add(
            "DatabaseConnections",
            db.metric_database_connections(period=five_minutes),
            threshold=props.max_connections * CONNECTIONS_FRACTION,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            description="RDS connections at or above 80 % of max_connections",
        )
        self._add(
            "IteratorAge",
            props.stream.metric_get_records_iterator_age_milliseconds(
                period=Duration.minutes(1), statistic="Maximum"
            ),
            threshold=ITERATOR_AGE_MS,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            description="stream-writer is five minutes or more behind the stream",
            evaluation_periods=5,
        )
        self._add(
            "DeadLetters",
            props.dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(1), statistic="Maximum"
            ),
            threshold=1,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            description="a landed object failed to load five times and is in the DLQ",
            evaluation_periods=1,
        )
        dimensions = {"ApiName": props.api_name, "Stage": props.api_stage}
        api_5xx = cloudwatch.MathExpression(
            expression="IF(requests > 0, 100 * errors / requests, 0)",
            using_metrics={
                "errors": cloudwatch.Metric(
                    namespace="AWS/ApiGateway",
                    metric_name="5XXError",
                    dimensions_map=dimensions,
                    statistic="Sum",
                    period=five_minutes,
                ),
                "requests": cloudwatch.Metric(
                    namespace="AWS/ApiGateway",
                    metric_name="Count",
                    dimensions_map=dimensions,
                    statistic="Sum",
                    period=five_minutes,
                ),
            },
            label="API 5xx rate (%)",
            period=five_minutes,
        )
        self._add(
            "Api5xxRate",
            api_5xx,
            threshold=API_5XX_PERCENT,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            description="more than 1 % of API requests answered 5xx",
        )
        # The loader logs JSON lines (cardstream_shared.json_logging) with a lowercase level.
        loader_errors = logs.MetricFilter(
            self,
            "LoaderErrorFilter",
            log_group=props.loader_log_group,
            filter_pattern=logs.FilterPattern.any(
                logs.FilterPattern.string_value("$.level", "=", "error"),
                logs.FilterPattern.string_value("$.level", "=", "critical"),
            ),
            metric_namespace=LOADER_ERRORS_METRIC_NAMESPACE,
            metric_name=LOADER_ERRORS_METRIC,
            metric_value="1",
            default_value=0,
        )
        self._add(
            "LoaderErrors",
            loader_errors.metric(statistic="Sum", period=five_minutes),
            threshold=1,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            description="the db-loader logged errors",
        )

    def _add(
        self,
        name: str,
        metric: cloudwatch.IMetric,
        *,
        threshold: float,
        comparison: cloudwatch.ComparisonOperator,
        description: str,
        evaluation_periods: int = 3,
    ) -> None:
        alarm = cloudwatch.Alarm(
            self,
            name,
            metric=metric,
            threshold=threshold,
            comparison_operator=comparison,
            evaluation_periods=evaluation_periods,
            alarm_description=description,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(actions.SnsAction(self.topic))
        alarm.add_ok_action(actions.SnsAction(self.topic))
        self.alarms[name] = alarm

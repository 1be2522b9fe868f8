"""An alarm for every way the pipeline can stop, all to one encrypted SNS topic, and one
CloudWatch dashboard of the whole pipeline.

A stage that stops often stops *reporting* too (a dead stream-writer makes no GetRecords
calls, so the stream publishes no iterator age; a service with no tasks publishes no task
metrics): those alarms treat missing data as breaching. Alarms on rates (5xx, failed
calls) treat a quiet period as fine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
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
ALB_5XX_PERCENT = 1
# The Average of Kinesis' *.Success metrics is the share of calls that succeeded.
CALL_SUCCESS_RATIO = 0.99
# A landed object is normally loaded within seconds; twice the visibility timeout means it
# failed at least once and is still waiting.
OLDEST_LANDED_OBJECT_S = 600
LOADER_ERRORS_METRIC_NAMESPACE = "cardstream"
LOADER_ERRORS_METRIC = "LoaderErrors"

_MINUTE = Duration.minutes(1)
_FIVE_MINUTES = Duration.minutes(5)


@dataclass(frozen=True, kw_only=True)
class PipelineAlarmsProps:
    """Props of :class:`PipelineAlarms`.

    Attributes:
        name: dashboard name (carries the environment).
        database: the RDS instance.
        allocated_storage_gib: its allocated storage (free-storage threshold is 10 %).
        max_connections: its ``max_connections`` (connection threshold is 80 %).
        stream: the Kinesis stream.
        queue: the loader's queue of landed objects.
        dead_letter_queue: its DLQ.
        api_name: name of the REST API.
        api_stage: its stage name.
        load_balancer: the internal ALB.
        target_groups: the ALB's target group of each web service, by service name.
        cluster_name: the ECS cluster.
        services: every ECS service, by service name.
        loader_log_group: db-loader log group (JSON lines with a ``level`` field).
        web_acl_names: the web ACLs (their blocked requests are on the dashboard).
        topic_key: KMS key of the alarm topic.
        alarm_email: optional subscriber.
    """

    name: str
    database: rds.IDatabaseInstance
    allocated_storage_gib: int
    max_connections: int
    stream: kinesis.IStream
    queue: sqs.IQueue
    dead_letter_queue: sqs.IQueue
    api_name: str
    api_stage: str
    load_balancer: elbv2.IApplicationLoadBalancer
    target_groups: Mapping[str, elbv2.IApplicationTargetGroup]
    cluster_name: str
    services: Mapping[str, ecs.IBaseService]
    loader_log_group: logs.ILogGroup
    web_acl_names: Mapping[str, str]
    topic_key: kms.IKey
    alarm_email: str | None = None


def _service_metric(cluster: str, service: str, name: str) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace="ECS/ContainerInsights",
        metric_name=name,
        dimensions_map={"ClusterName": cluster, "ServiceName": service},
        statistic="Average",
        period=_MINUTE,
    )


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
        # The topic's policy (TLS only) replaces SNS's default one, which is what let
        # CloudWatch publish: alarms of this account and region may, nothing else.
        stack = Stack.of(self)
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AlarmsOfThisAccount",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": stack.account},
                    "ArnLike": {
                        "aws:SourceArn": f"arn:{stack.partition}:cloudwatch:{stack.region}:"
                        f"{stack.account}:alarm:*"
                    },
                },
            )
        )
        if props.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(props.alarm_email))
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        self._database(props)
        self._stream(props)
        self._queues(props)
        self._services(props)
        self._edge(props)
        self._loader_errors(props)
        self.dashboard = self._dashboard(props)

    def _database(self, props: PipelineAlarmsProps) -> None:
        db = props.database
        self._add(
            "DatabaseCpu",
            db.metric_cpu_utilization(period=_FIVE_MINUTES),
            threshold=CPU_PERCENT,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            description="RDS CPU at or above 80 %",
        )
        self._add(
            "DatabaseFreeStorage",
            db.metric_free_storage_space(period=_FIVE_MINUTES),
            threshold=props.allocated_storage_gib * 1024**3 * FREE_STORAGE_FRACTION,
            comparison=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
            description="RDS free storage below 10 % of the allocation",
        )
        self._add(
            "DatabaseConnections",
            db.metric_database_connections(period=_FIVE_MINUTES),
            threshold=props.max_connections * CONNECTIONS_FRACTION,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            description="RDS connections at or above 80 % of max_connections",
        )

    def _stream(self, props: PipelineAlarmsProps) -> None:
        stream = props.stream
        self._add(
            "IteratorAge",
            stream.metric_get_records_iterator_age_milliseconds(
                period=_MINUTE, statistic="Maximum"
            ),
            threshold=ITERATOR_AGE_MS,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            description="stream-writer is five minutes or more behind the stream, or reads "
            "nothing at all (no GetRecords calls: no writer)",
            evaluation_periods=5,
            missing=cloudwatch.TreatMissingData.BREACHING,
        )
        for name, metric, what in (
            (
                "WriteThroughputExceeded",
                stream.metric_write_provisioned_throughput_exceeded(
                    period=_MINUTE, statistic="Sum"
                ),
                "records refused for write throughput (the ingest-api retries them)",
            ),
            (
                "ReadThroughputExceeded",
                stream.metric_read_provisioned_throughput_exceeded(period=_MINUTE, statistic="Sum"),
                "GetRecords calls refused for read throughput",
            ),
        ):
            self._add(
                name,
                metric,
                threshold=1,
                comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                description=f"Kinesis: {what}, five minutes in a row",
                evaluation_periods=5,
            )
        for name, metric, what in (
            (
                "PutRecordsSuccess",
                stream.metric_put_records_success(period=_FIVE_MINUTES, statistic="Average"),
                "PutRecords",
            ),
            (
                "GetRecordsSuccess",
                stream.metric_get_records_success(period=_FIVE_MINUTES, statistic="Average"),
                "GetRecords",
            ),
        ):
            self._add(
                name,
                metric,
                threshold=CALL_SUCCESS_RATIO,
                comparison=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
                description=f"more than 1 % of Kinesis {what} calls failed",
            )

    def _queues(self, props: PipelineAlarmsProps) -> None:
        self._add(
            "DeadLetters",
            props.dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=_MINUTE, statistic="Maximum"
            ),
            threshold=1,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            description="a landed object failed to load five times and is in the DLQ",
            evaluation_periods=1,
        )
        self._add(
            "OldestLandedObject",
            props.queue.metric_approximate_age_of_oldest_message(
                period=_MINUTE, statistic="Maximum"
            ),
            threshold=OLDEST_LANDED_OBJECT_S,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            description="a landed object has waited ten minutes or more to be loaded",
            evaluation_periods=3,
        )

    def _services(self, props: PipelineAlarmsProps) -> None:
        for service_name, service in props.services.items():
            cluster = props.cluster_name
            missing = cloudwatch.MathExpression(
                expression="desired - FILL(running, 0)",
                using_metrics={
                    "desired": _service_metric(cluster, service.service_name, "DesiredTaskCount"),
                    "running": _service_metric(cluster, service.service_name, "RunningTaskCount"),
                },
                label=f"{service_name} tasks missing",
                period=_MINUTE,
            )
            self._add(
                f"TasksBelowDesired{_title(service_name)}",
                missing,
                threshold=1,
                comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                description=f"{service_name}: fewer tasks running than desired for ten "
                "minutes (or no task metrics at all)",
                evaluation_periods=10,
                missing=cloudwatch.TreatMissingData.BREACHING,
            )

    def _edge(self, props: PipelineAlarmsProps) -> None:
        for service_name, group in props.target_groups.items():
            self._add(
                f"UnhealthyTargets{_title(service_name)}",
                group.metrics.unhealthy_host_count(period=_MINUTE, statistic="Maximum"),
                threshold=1,
                comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                description=f"{service_name}: a target failed the load balancer's health "
                "check for three minutes",
            )
            self._add(
                f"NoHealthyTarget{_title(service_name)}",
                group.metrics.healthy_host_count(period=_MINUTE, statistic="Minimum"),
                threshold=1,
                comparison=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
                description=f"{service_name}: no healthy target behind the load balancer",
                missing=cloudwatch.TreatMissingData.BREACHING,
            )
        metrics = props.load_balancer.metrics
        alb_5xx = cloudwatch.MathExpression(
            expression="IF(requests > 0, 100 * (FILL(elb, 0) + FILL(target, 0)) / requests, 0)",
            using_metrics={
                "elb": metrics.http_code_elb(
                    elbv2.HttpCodeElb.ELB_5XX_COUNT, period=_FIVE_MINUTES, statistic="Sum"
                ),
                "target": metrics.http_code_target(
                    elbv2.HttpCodeTarget.TARGET_5XX_COUNT, period=_FIVE_MINUTES, statistic="Sum"
                ),
                "requests": metrics.request_count(period=_FIVE_MINUTES, statistic="Sum"),
            },
            label="ALB 5xx rate (%)",
            period=_FIVE_MINUTES,
        )
        self._add(
            "Alb5xxRate",
            alb_5xx,
            threshold=ALB_5XX_PERCENT,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            description="more than 1 % of requests through the load balancer answered 5xx",
        )
        api_5xx = cloudwatch.MathExpression(
            expression="IF(requests > 0, 100 * errors / requests, 0)",
            using_metrics={
                "errors": self._api_metric(props, "5XXError"),
                "requests": self._api_metric(props, "Count"),
            },
            label="API 5xx rate (%)",
            period=_FIVE_MINUTES,
        )
        self._add(
            "Api5xxRate",
            api_5xx,
            threshold=API_5XX_PERCENT,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            description="more than 1 % of API requests answered 5xx",
        )

    def _loader_errors(self, props: PipelineAlarmsProps) -> None:
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
            loader_errors.metric(statistic="Sum", period=_FIVE_MINUTES),
            threshold=1,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            description="the db-loader logged errors",
        )

    @staticmethod
    def _api_metric(props: PipelineAlarmsProps, name: str) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace="AWS/ApiGateway",
            metric_name=name,
            dimensions_map={"ApiName": props.api_name, "Stage": props.api_stage},
            statistic="Sum",
            period=_FIVE_MINUTES,
        )

    def _dashboard(self, props: PipelineAlarmsProps) -> cloudwatch.Dashboard:
        """One page, in the order a record travels: API, stream, writer, queue, loader,
        database; then the edge (firewalls, load balancer) and every alarm's state."""
        stream = props.stream
        queue = props.queue
        region = Stack.of(self).region
        dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=props.name,
            default_interval=Duration.hours(3),
        )

        def graph(title: str, *metrics: cloudwatch.IMetric) -> cloudwatch.GraphWidget:
            return cloudwatch.GraphWidget(title=title, left=list(metrics), width=8, height=6)

        def tasks(service: str) -> list[cloudwatch.IMetric]:
            name = props.services[service].service_name
            return [
                _service_metric(props.cluster_name, name, "RunningTaskCount"),
                _service_metric(props.cluster_name, name, "DesiredTaskCount"),
            ]

        dashboard.add_widgets(
            graph(
                "API requests and errors",
                self._api_metric(props, "Count"),
                self._api_metric(props, "4XXError"),
                self._api_metric(props, "5XXError"),
            ),
            graph(
                "Stream: records in, throttled",
                stream.metric_incoming_records(period=_MINUTE, statistic="Sum"),
                stream.metric_put_records_throttled_records(period=_MINUTE, statistic="Sum"),
            ),
            graph(
                "Stream-writer lag (iterator age, ms)",
                stream.metric_get_records_iterator_age_milliseconds(
                    period=_MINUTE, statistic="Maximum"
                ),
            ),
        )
        dashboard.add_widgets(
            graph("ingest-api tasks", *tasks("ingest-api")),
            graph("stream-writer tasks", *tasks("stream-writer")),
            graph("db-loader tasks", *tasks("db-loader")),
        )
        dashboard.add_widgets(
            graph(
                "Landed objects waiting (queue, DLQ)",
                queue.metric_approximate_number_of_messages_visible(period=_MINUTE),
                props.dead_letter_queue.metric_approximate_number_of_messages_visible(
                    period=_MINUTE
                ),
            ),
            graph(
                "Oldest landed object (s)",
                queue.metric_approximate_age_of_oldest_message(period=_MINUTE),
            ),
            graph(
                "Database CPU and connections",
                props.database.metric_cpu_utilization(period=_MINUTE),
                props.database.metric_database_connections(period=_MINUTE),
            ),
        )
        dashboard.add_widgets(
            graph(
                "Requests blocked by the firewalls",
                *[
                    cloudwatch.Metric(
                        namespace="AWS/WAFV2",
                        metric_name="BlockedRequests",
                        dimensions_map={"WebACL": acl, "Rule": "ALL", "Region": region},
                        statistic="Sum",
                        period=_FIVE_MINUTES,
                        label=label,
                    )
                    for label, acl in props.web_acl_names.items()
                ],
            ),
            graph(
                "Load balancer: unhealthy targets",
                *[
                    group.metrics.unhealthy_host_count(period=_MINUTE, statistic="Maximum")
                    for group in props.target_groups.values()
                ],
            ),
            cloudwatch.AlarmStatusWidget(
                title="Alarms", alarms=list(self.alarms.values()), width=8, height=6
            ),
        )
        return dashboard

    def _add(
        self,
        name: str,
        metric: cloudwatch.IMetric,
        *,
        threshold: float,
        comparison: cloudwatch.ComparisonOperator,
        description: str,
        evaluation_periods: int = 3,
        missing: cloudwatch.TreatMissingData = cloudwatch.TreatMissingData.NOT_BREACHING,
    ) -> None:
        alarm = cloudwatch.Alarm(
            self,
            name,
            metric=metric,
            threshold=threshold,
            comparison_operator=comparison,
            evaluation_periods=evaluation_periods,
            alarm_description=description,
            treat_missing_data=missing,
        )
        alarm.add_alarm_action(actions.SnsAction(self.topic))
        alarm.add_ok_action(actions.SnsAction(self.topic))
        self.alarms[name] = alarm


def _title(service_name: str) -> str:
    return service_name.title().replace("-", "")

"""Builds the cardstream stacks into a CDK app, tags them and runs cdk-nag."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import App, Environment, IPolicyValidationPlugin, Tags, Validations
from cdk_nag import AwsSolutionsChecks, NIST80053R5Checks, PCIDSS321Checks

from cardstream_infra.components.service_log_groups import create_service_log_groups
from cardstream_infra.config import DeploymentConfig
from cardstream_infra.nag_suppressions import acknowledge_findings
from cardstream_infra.stacks.api_stack import ApiStack
from cardstream_infra.stacks.ci_access_stack import CiAccessStack
from cardstream_infra.stacks.data_stack import DataStack
from cardstream_infra.stacks.monitoring_stack import MonitoringStack
from cardstream_infra.stacks.network_stack import NetworkStack
from cardstream_infra.stacks.services_stack import ServicesStack


@dataclass(frozen=True)
class CardstreamStacks:
    """The stacks the deploy workflow deploys, in deployment order, and the CI access stack
    an administrator deploys once, with the roles the workflow deploys them with."""

    network: NetworkStack
    data: DataStack
    services: ServicesStack
    api: ApiStack
    monitoring: MonitoringStack
    ci_access: CiAccessStack

    def in_order(
        self,
    ) -> list[NetworkStack | DataStack | ServicesStack | ApiStack | MonitoringStack]:
        """Stacks in the order ``cdk deploy`` must deploy them."""
        return [self.network, self.data, self.services, self.api, self.monitoring]

    def every(
        self,
    ) -> list[
        NetworkStack | DataStack | ServicesStack | ApiStack | MonitoringStack | CiAccessStack
    ]:
        """Every stack of the environment, the CI access stack last."""
        return [*self.in_order(), self.ci_access]


def compliance_packs(app: App) -> list[IPolicyValidationPlugin]:
    """The cdk-nag packs every synthesis runs: AWS Solutions, PCI DSS 3.2.1 (retired, but
    its rules still apply; docs/deploy.md maps what 4.0.1 adds) and NIST 800-53 rev 5."""
    return [AwsSolutionsChecks(app), PCIDSS321Checks(app), NIST80053R5Checks(app)]


def build(app: App, config: DeploymentConfig, *, nag: bool = True) -> CardstreamStacks:
    """Add every stack of ``config``'s environment to ``app``."""
    config.require_deployment_settings()
    env = Environment(account=config.account, region=config.region)
    prefix = config.prefix
    network = NetworkStack(app, f"{prefix}-network", config=config, env=env)
    data = DataStack(
        app,
        f"{prefix}-data",
        config=config,
        network=network.network,
        log_key=network.log_key,
        log_retention=network.log_retention,
        env=env,
    )
    services = ServicesStack(
        app, f"{prefix}-services", config=config, network_stack=network, data=data, env=env
    )
    api = ApiStack(
        app,
        f"{prefix}-api",
        config=config,
        network_stack=network,
        data=data,
        services=services,
        env=env,
    )
    monitoring = MonitoringStack(
        app,
        f"{prefix}-monitoring",
        config=config,
        data=data,
        services=services,
        api=api,
        env=env,
    )
    ci_access = CiAccessStack(app, f"{prefix}-ci-access", config=config, env=env)
    stacks = CardstreamStacks(network, data, services, api, monitoring, ci_access)
    for stack in stacks.every():
        create_service_log_groups(stack, key=network.log_key, retention=network.log_retention)
        Tags.of(stack).add("owner", config.owner)
        Tags.of(stack).add("environment", config.environment)
        Tags.of(stack).add("cost-center", config.cost_center)
        stack.termination_protection = config.environment == "prod"
    if nag:
        acknowledge_findings(stacks, config)
        Validations.of(app).add_plugins(*compliance_packs(app))
    return stacks

"""CDK entry point (``cdk synth`` / ``cdk deploy`` run ``python app.py``, see cdk.json)."""

from aws_cdk import App

from cardstream_infra.config import DeploymentConfig
from cardstream_infra.deployment import build

app = App()
build(app, DeploymentConfig.from_node(app.node))
app.synth()

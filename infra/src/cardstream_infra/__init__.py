"""AWS CDK (Python) app that deploys cardstream."""

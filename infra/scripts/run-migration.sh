#!/usr/bin/env bash
# Run the database migration task (data stack) on the cluster (network stack) and wait for
# it: creates the roles the services log in as and applies every Alembic migration.
# Usage: PREFIX=cardstream-dev infra/scripts/run-migration.sh   (AWS credentials in the env)
set -euo pipefail
: "${PREFIX:?set PREFIX, e.g. cardstream-dev}"

output() {
  aws cloudformation describe-stacks --stack-name "$1" \
    --query "Stacks[0].Outputs[?OutputKey=='$2'].OutputValue" --output text
}

cluster="$(output "${PREFIX}-network" ClusterName)"
subnets="$(output "${PREFIX}-network" AppSubnetIds)"
group="$(output "${PREFIX}-network" MigrationSecurityGroupId)"
task_definition="$(output "${PREFIX}-data" MigrationTaskDefinition)"

task="$(aws ecs run-task --cluster "$cluster" --launch-type FARGATE \
  --task-definition "$task_definition" \
  --network-configuration "awsvpcConfiguration={subnets=[${subnets}],securityGroups=[${group}],assignPublicIp=DISABLED}" \
  --query 'tasks[0].taskArn' --output text)"
echo "migration task ${task}" >&2
aws ecs wait tasks-stopped --cluster "$cluster" --tasks "$task"
status="$(aws ecs describe-tasks --cluster "$cluster" --tasks "$task" \
  --query 'tasks[0].containers[0].exitCode' --output text)"
if [ "$status" != "0" ]; then
  echo "migration failed with exit code ${status}; see its log group (data stack)" >&2
  exit 1
fi
echo "migration done" >&2

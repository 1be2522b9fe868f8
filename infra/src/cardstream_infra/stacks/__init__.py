"""Stacks that deploy separately, in this order: network, data, services, api, monitoring;
and ci-access, deployed once by an administrator, with the roles CI deploys the others with."""

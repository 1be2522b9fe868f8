"""Stacks that deploy separately, in this order: network, data, services, api, monitoring."""

"""Ports in AWS: the containers' (the defaults of their settings where they have one) and the
internal load balancer's listeners; the security groups are derived from these."""

from __future__ import annotations

from typing import Final

API_PORT: Final = 8000
WRITER_HEALTH_PORT: Final = 8082
LOADER_HEALTH_PORT: Final = 8082
DASHBOARD_PORT: Final = 8050

# The merchant API's listener (reached through the API Gateway VPC link) and the dashboard's
# (reached from the operators' network): apart, so each security group rule admits one.
API_LISTENER_PORT: Final = 443
DASHBOARD_LISTENER_PORT: Final = 8443

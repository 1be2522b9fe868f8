"""Container ports of the services in AWS (the defaults of their settings where they have
one; the ALB and the security groups are derived from these)."""

from __future__ import annotations

from typing import Final

API_PORT: Final = 8000
WRITER_HEALTH_PORT: Final = 8082
LOADER_HEALTH_PORT: Final = 8082
DASHBOARD_PORT: Final = 8050

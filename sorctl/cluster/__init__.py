"""Pure planning, no Docker: a cluster's plan on one engine (plan) and across hosts (hostplan,
with the kept host list), `--host` endpoints (hosts), readiness from the scheduler's table
(readiness), packet filter scripts (firewall), the host's secret material (material) and what
this machine offers sorctl (machine: ports, config directory, disk). sorctl.engine walks these
plans and reads clusters back."""

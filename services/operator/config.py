"""Operator configuration, read from the operator's own environment (set by the Helm chart).

PERPEX_OPERATOR_IMAGE              image for the keeper/funding Deployments it creates
PERPEX_OPERATOR_IMAGE_PULL_POLICY  IfNotPresent (default), Always or Never
PERPEX_OPERATOR_IMAGE_PULL_SECRETS comma-separated Secret names for pulling that image
PERPEX_OPERATOR_WORKLOAD_CLUSTER_ROLE
                                   ClusterRole bound (per market, by a RoleBinding in the
                                   market's namespace) to the market's ServiceAccount; the
                                   chart's grants the funding updater its coordination Leases.
                                   Empty: no RoleBinding is made.
PERPEX_OPERATOR_DB_SECRET_NAME / _KEY
                                   Secret (in each market's namespace) holding DB_URI
PERPEX_OPERATOR_STATUS_INTERVAL    seconds between status refreshes (timer), default 30
PERPEX_WORKLOAD_ENV_<NAME>=value   non-secret env copied into every market's ConfigMap as
                                   <NAME> (e.g. KAFKA_BOOTSTRAP_SERVERS, KAFKA_TOPIC, LOG_LEVEL,
                                   OTEL_EXPORTER_OTLP_ENDPOINT). Names that look like secrets
                                   are refused: the operator never carries key material.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from services.operator.spec import KeyRef
from shared.config import ConfigError

WORKLOAD_ENV_PREFIX = "PERPEX_WORKLOAD_ENV_"
SECRET_LIKE_ENV = re.compile(r"(?i)(PRIVATE_KEY|PASSWORD|SECRET|TOKEN|DB_URI|MNEMONIC)")
ENV_NAME_RE = re.compile(r"^[A-Z_][A-Z0-9_]*$")
PULL_POLICIES = ("IfNotPresent", "Always", "Never")


class OperatorConfigError(ConfigError, ValueError):
    """Invalid operator configuration: every problem by variable (exit 2, as every service)."""

    def __init__(self, problems: dict[str, str]):
        super().__init__(problems, "operator")


@dataclass(frozen=True)
class OperatorConfig:
    image: str = "perpex:latest"
    image_pull_policy: str = "IfNotPresent"
    image_pull_secrets: tuple[str, ...] = ()
    workload_cluster_role: str = ""
    db_secret: KeyRef | None = None
    status_interval: float = 30.0
    workload_env: Mapping[str, str] = field(default_factory=dict)
    health_port: int = 8080

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OperatorConfig:
        env = os.environ if environ is None else environ
        problems: dict[str, str] = {}
        policy = env.get("PERPEX_OPERATOR_IMAGE_PULL_POLICY", "IfNotPresent")
        if policy not in PULL_POLICIES:
            problems["PERPEX_OPERATOR_IMAGE_PULL_POLICY"] = f"must be one of {PULL_POLICIES}"
        try:
            interval = float(env.get("PERPEX_OPERATOR_STATUS_INTERVAL", "30"))
            if not 0.1 <= interval <= 3600:
                raise ValueError
        except ValueError:
            problems["PERPEX_OPERATOR_STATUS_INTERVAL"] = "must be seconds in [0.1, 3600]"
            interval = 30.0
        try:
            health_port = int(env.get("HEALTH_PORT", "8080"))
            if not 0 <= health_port <= 65535:
                raise ValueError
        except ValueError:
            problems["HEALTH_PORT"] = "must be a port number (0 turns the probes off)"
            health_port = 8080
        workload_env: dict[str, str] = {}
        for key, value in sorted(env.items()):
            if not key.startswith(WORKLOAD_ENV_PREFIX):
                continue
            name = key.removeprefix(WORKLOAD_ENV_PREFIX)
            if not ENV_NAME_RE.match(name):
                problems[key] = f"{name!r} is not a valid variable name"
            elif SECRET_LIKE_ENV.search(name):
                problems[key] = "secrets may not be passed as plain workload env"
            elif value != "":
                workload_env[name] = value
        db_name = env.get("PERPEX_OPERATOR_DB_SECRET_NAME", "")
        db_secret = (
            KeyRef(name=db_name, key=env.get("PERPEX_OPERATOR_DB_SECRET_KEY", "dsn"))
            if db_name
            else None
        )
        if problems:
            raise OperatorConfigError(problems)
        pull_secrets = tuple(
            s.strip()
            for s in env.get("PERPEX_OPERATOR_IMAGE_PULL_SECRETS", "").split(",")
            if s.strip()
        )
        return cls(
            image=env.get("PERPEX_OPERATOR_IMAGE", "perpex:latest"),
            image_pull_policy=policy,
            image_pull_secrets=pull_secrets,
            workload_cluster_role=env.get("PERPEX_OPERATOR_WORKLOAD_CLUSTER_ROLE", ""),
            db_secret=db_secret,
            status_interval=interval,
            workload_env=workload_env,
            health_port=health_port,
        )

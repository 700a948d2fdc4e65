"""`perpex dashboard` (serve) and its subcommands."""

from __future__ import annotations

from perpex_cli.subcommands import with_subcommands
from services.dashboard.cli import dashboard as serve

dashboard = with_subcommands(
    serve, {"graphql-schema": "services.dashboard.graphql.cli:graphql_schema"}
)

"""`perpex indexer` (run the service) and its subcommands."""

from __future__ import annotations

from perpex_cli.subcommands import with_subcommands
from services.indexer.cli import indexer as run

indexer = with_subcommands(run, {"status": "services.indexer.status:status"})

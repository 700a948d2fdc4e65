"""`perpex` entry point: every service and tool is a subcommand."""

from __future__ import annotations

import click

from perpex_cli.lazy import LazyGroup

BENCH_COMMANDS = {
    "gas": "perpex_dev.bench.gas:gas",
    "graphql": "perpex_dev.bench.graphql:bench",
    "indexer": "perpex_dev.bench.indexer:bench",
    "keeper": "perpex_dev.bench.keeper:bench",
}


@click.group(cls=LazyGroup, lazy_subcommands=BENCH_COMMANDS)
def bench() -> None:
    """Benchmarks; each prints one JSON object on its last line."""


COMMANDS = {
    "dev": "perpex_dev.devstack.cli:dev",
    "config": "shared.config_cli:config",
    "deploy": "shared.chain.deploy_cli:deploy",
    "indexer": "services.indexer.commands:indexer",
    "keeper": "services.keeper.cli:keeper",
    "funding": "services.funding.cli:funding",
    "operator": "services.operator.cli:operator",
    "dashboard": "services.dashboard.commands:dashboard",
    "relayer": "services.relayer.cli:relayer",
    "demo": "perpex_dev.demo:demo",
    "gov": "perpex_cli.gov:gov",
    "trade": "perpex_cli.trade.cli:trade",
}


@click.group(cls=LazyGroup, lazy_subcommands=COMMANDS)
@click.version_option(package_name="perpex")
def cli() -> None:
    """Perp-EX: vAMM perpetual futures, keeper, indexer and funding updater."""


cli.add_command(bench)

if __name__ == "__main__":
    cli()

"""`perpex dashboard graphql-schema`: print, write or check the GraphQL schema (SDL)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from services.dashboard.graphql.schema import REGENERATE, SCHEMA_FILE, schema_sdl


@click.command("graphql-schema")
@click.option("--write", is_flag=True, help=f"write it to {SCHEMA_FILE.name} in docs/")
@click.option("--check", is_flag=True, help="exit 1 when docs/graphql.graphql differs from it")
@click.option(
    "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="the file for --write/--check (default docs/graphql.graphql)",
)  # fmt: skip
def graphql_schema(write: bool, check: bool, output: Path | None) -> None:
    """The GraphQL schema served at /graphql, in SDL (stdout unless --write/--check)."""
    if write and check:
        raise click.UsageError("--write and --check exclude each other")
    path = output or SCHEMA_FILE
    sdl = schema_sdl()
    if check:
        current = path.read_text() if path.is_file() else None
        if current != sdl:
            click.echo(f"{path} is not the schema the code serves; run `{REGENERATE}`", err=True)
            sys.exit(1)
        click.echo(f"{path} is up to date")
    elif write:
        path.write_text(sdl)
        click.echo(f"wrote {path}")
    else:
        click.echo(sdl, nl=False)

"""A service command that also has subcommands: `perpex indexer` still runs the indexer (with
all its options) while `perpex indexer status` is another command, loaded only when named."""

from __future__ import annotations

from typing import Any

import click

from perpex_cli.lazy import LazyGroup


def with_subcommands(run: click.Command, subcommands: dict[str, str]) -> click.Group:
    """A group named like `run`, taking `run`'s options, that invokes `run` when no subcommand
    is given. `subcommands`: name -> "package.module:attribute"."""

    @click.pass_context
    def callback(ctx: click.Context, **kwargs: Any) -> None:
        if ctx.invoked_subcommand is None:
            ctx.invoke(run, **kwargs)

    return LazyGroup(
        name=run.name,
        help=run.help,
        params=list(run.params),
        callback=callback,
        invoke_without_command=True,
        lazy_subcommands=subcommands,
    )

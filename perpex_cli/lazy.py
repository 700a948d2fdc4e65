"""A click group whose subcommands are imported only when invoked.

Keeps `perpex --help` fast and lets each service own its command in its own package.
"""

from __future__ import annotations

import importlib
from typing import Any

import click


class LazyGroup(click.Group):
    def __init__(self, *args: Any, lazy_subcommands: dict[str, str] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # name -> "package.module:attribute"
        self.lazy_subcommands = lazy_subcommands or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy_subcommands])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_subcommands:
            return self._load(cmd_name)
        return super().get_command(ctx, cmd_name)

    def _load(self, cmd_name: str) -> click.Command:
        target = self.lazy_subcommands[cmd_name]
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            message = f"'{cmd_name}' is not available: module {module_name} is missing ({exc})"

            @click.command(name=cmd_name, help=f"(unavailable: {exc})")
            def unavailable() -> None:
                raise click.ClickException(message)

            return unavailable
        cmd = getattr(module, attr)
        if not isinstance(cmd, click.Command):
            raise click.ClickException(f"{target} is not a click command")
        return cmd

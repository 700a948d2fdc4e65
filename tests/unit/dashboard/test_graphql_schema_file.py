"""docs/graphql.graphql is the schema the code serves."""

from __future__ import annotations

import difflib

from click.testing import CliRunner

from services.dashboard.graphql.cli import graphql_schema
from services.dashboard.graphql.schema import REGENERATE, SCHEMA_FILE, schema_sdl


def test_checked_in_schema_matches_the_code() -> None:
    printed = schema_sdl()
    checked_in = SCHEMA_FILE.read_text() if SCHEMA_FILE.is_file() else ""
    if printed != checked_in:
        diff = "".join(
            difflib.unified_diff(
                checked_in.splitlines(keepends=True),
                printed.splitlines(keepends=True),
                "docs/graphql.graphql",
                "schema from code",
                n=1,
            )
        )
        raise AssertionError(
            f"docs/graphql.graphql differs from the schema the code serves; regenerate it with "
            f"`{REGENERATE}` (and review the change):\n{diff[:4000]}"
        )


def test_the_command_checks_and_writes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "schema.graphql"
    runner = CliRunner()
    stale = runner.invoke(graphql_schema, ["--check", "--output", str(target)])
    assert stale.exit_code == 1 and REGENERATE in stale.output
    wrote = runner.invoke(graphql_schema, ["--write", "--output", str(target)])
    assert wrote.exit_code == 0 and target.read_text() == schema_sdl()
    fresh = runner.invoke(graphql_schema, ["--check", "--output", str(target)])
    assert fresh.exit_code == 0, fresh.output
    printed = runner.invoke(graphql_schema, [])
    assert printed.output == schema_sdl() and "type Query" in printed.output
    both = runner.invoke(graphql_schema, ["--write", "--check"])
    assert both.exit_code == 2

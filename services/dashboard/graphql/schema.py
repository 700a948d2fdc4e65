"""The schema: Query + Subscription, the custom scalars, and the limits as extensions.

`docs/graphql.graphql` is `schema_sdl()`; tests/unit/dashboard/test_graphql_schema_file.py fails
when they differ (regenerate with `perpex dashboard graphql-schema --write`).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig

from services.dashboard.graphql.context import OperationScope
from services.dashboard.graphql.fastpath import fast_executor
from services.dashboard.graphql.limits import Limits
from services.dashboard.graphql.queries import Query
from services.dashboard.graphql.scalars import SCALARS
from services.dashboard.graphql.subscription import Subscription
from services.dashboard.graphql.types import default_resolver

log = logging.getLogger("perpex.dashboard.graphql")

SCHEMA_FILE = Path(__file__).resolve().parents[3] / "docs" / "graphql.graphql"
REGENERATE = "perpex dashboard graphql-schema --write"
# errors the client caused, or a dependency being down: answered, not logged with a traceback
QUIET_CODES = frozenset(
    {
        "BAD_USER_INPUT",
        "COST_LIMIT",
        "TOO_MANY_SUBSCRIBERS",
        "SCHEMA_MISSING",
        "TIMEOUT",
        "READ_ONLY_ROLE",
        "DATABASE_UNAVAILABLE",
    }
)


class PerpexSchema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        for error in errors:
            code = (error.extensions or {}).get("code")
            if code in QUIET_CODES or error.original_error is None:
                # validation errors (depth, aliases, unknown fields) have no original error
                log.debug("GraphQL error: %s", error.message)
            else:
                log.error(
                    "GraphQL resolver failed: %s", error.message, exc_info=error.original_error
                )


def build_schema(limits: Limits | None = None) -> PerpexSchema:
    limits = limits or Limits()
    # The limiters' rule classes are made once: each QueryDepthLimiter/MaxAliasesLimiter makes
    # new ones, and ValidationCache keys on the rule classes, so fresh limiters per operation
    # would make every validation a cache miss.
    rules = [
        *QueryDepthLimiter(max_depth=limits.max_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=limits.max_aliases).validation_rules,
    ]
    extensions: list[Any] = [
        functools.partial(MaxTokensLimiter, max_token_count=limits.max_tokens),
        functools.partial(ParserCache, maxsize=256),
        functools.partial(AddValidationRules, rules),
        functools.partial(ValidationCache, maxsize=256),
        functools.partial(OperationScope, max_cost=limits.max_cost),
    ]
    return PerpexSchema(
        query=Query,
        subscription=Subscription,
        extensions=extensions,
        config=StrawberryConfig(scalar_map=SCALARS, default_resolver=default_resolver),
        execution_context_class=fast_executor(default_resolver),
    )


@functools.cache
def schema_sdl() -> str:
    """The schema in GraphQL SDL, as checked into docs/graphql.graphql."""
    return build_schema().as_str().rstrip("\n") + "\n"

"""Limits of the GraphQL API (pure): the operation cost estimate and the page-size check.

Depth, aliases and document size are checked by Strawberry's own QueryDepthLimiter,
MaxAliasesLimiter and MaxTokensLimiter (services.dashboard.graphql.schema). The cost is an
upper bound of the objects an operation can return, computed from the document and its
variables before anything is read:

* a row (an item of a list) costs 1, and so does each top-level field; leaves and nested
  objects (`wad`, an edge's `node`) are part of their row;
* a connection (`positions`, `liquidations`, `fundingUpdates`) multiplies what its `edges` and
  `nodes` ask for by `first` (or its default; at most its page-size limit, beyond which the
  field refuses itself); `totalCount` costs COUNT_COST (a count query);
* the other lists multiply what each item costs (1 + its objects) by a fixed bound: `markets`
  20, `Position.events` 20, `contracts` 4.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
)

# connection field -> (default page size, largest page size)
CONNECTIONS: dict[str, tuple[int, int]] = {
    "positions": (50, 500),
    "liquidations": (50, 500),
    "fundingUpdates": (500, 5000),
}
LIST_BOUNDS = {"markets": 20, "events": 20, "contracts": 4}
COUNT_COST = 10
PAGED_CHILDREN = frozenset({"edges", "nodes"})


@dataclass(frozen=True)
class Limits:
    max_depth: int = 10
    max_cost: int = 10_000
    max_aliases: int = 20
    max_tokens: int = 2000


def page_size_error(field: str, first: int) -> str | None:
    """Why `first` is refused for `field`, or None when it is within the page-size limit."""
    _, largest = CONNECTIONS[field]
    if not 1 <= first <= largest:
        return f"must be between 1 and {largest} (the page-size limit of {field}), got {first}"
    return None


def _first(node: FieldNode, variables: Mapping[str, Any], default: int) -> int:
    for arg in node.arguments or ():
        if arg.name.value != "first":
            continue
        value = arg.value
        if isinstance(value, IntValueNode):
            return int(value.value)
        if isinstance(value, VariableNode):
            given = variables.get(value.name.value)
            return given if isinstance(given, int) and not isinstance(given, bool) else default
    return default


class _Cost:
    def __init__(self, fragments: Mapping[str, FragmentDefinitionNode], variables: Mapping):
        self.fragments = fragments
        self.variables = variables

    def selection(
        self, selection_set: SelectionSetNode | None, seen: frozenset[str], root: bool = False
    ) -> int:
        if selection_set is None:
            return 0
        return sum(self.field(f, seen, root) for f in self.fields(selection_set, seen))

    def fields(self, selection_set: SelectionSetNode, seen: frozenset[str]) -> list[FieldNode]:
        """The fields of a selection set, fragments expanded."""
        out: list[FieldNode] = []
        for sel in selection_set.selections:
            if isinstance(sel, FieldNode):
                out.append(sel)
            elif isinstance(sel, InlineFragmentNode):
                out += self.fields(sel.selection_set, seen)
            elif isinstance(sel, FragmentSpreadNode):
                name = sel.name.value
                fragment = self.fragments.get(name)
                if fragment is not None and name not in seen:
                    out += self.fields(fragment.selection_set, seen | {name})
        return out

    def field(self, node: FieldNode, seen: frozenset[str], root: bool = False) -> int:
        name = node.name.value
        if name.startswith("__"):  # introspection
            return 0
        if name == "totalCount":
            return COUNT_COST
        if node.selection_set is None:
            return 0
        if name in CONNECTIONS:
            default, largest = CONNECTIONS[name]
            # beyond the page-size limit the field refuses itself, naming that limit
            first = min(largest, max(0, _first(node, self.variables, default)))
            total = 1
            # through fragments too: a spread must not hide `nodes` from the multiplier
            for child in self.fields(node.selection_set, seen):
                if child.name.value in PAGED_CHILDREN:
                    total += first * (1 + self.selection(child.selection_set, seen))
                else:
                    total += self.field(child, seen)
            return total
        inner = self.selection(node.selection_set, seen)
        if name in LIST_BOUNDS:
            return LIST_BOUNDS[name] * (1 + inner)
        return inner + (1 if root else 0)  # a nested object is part of its row


def _fragments(document: DocumentNode) -> dict[str, FragmentDefinitionNode]:
    return {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}


def _operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name is not None:
        operations = [o for o in operations if o.name and o.name.value == name]
    return operations[0] if operations else None


def operation_cost(
    document: DocumentNode, operation_name: str | None, variables: Mapping[str, Any]
) -> int:
    """The cost of the operation that would run (the named one, or the only one)."""
    operation = _operation(document, operation_name)
    if operation is None:
        return 0
    cost = _Cost(_fragments(document), variables)
    return cost.selection(operation.selection_set, frozenset(), root=True)


def root_fields(document: DocumentNode, operation_name: str | None) -> set[str]:
    """Names of the operation's top-level fields (through fragments)."""
    operation = _operation(document, operation_name)
    if operation is None:
        return set()
    fragments = _fragments(document)
    names: set[str] = set()
    pending = [operation.selection_set]
    seen: set[str] = set()
    while pending:
        for sel in pending.pop().selections:
            if isinstance(sel, FieldNode):
                names.add(sel.name.value)
            elif isinstance(sel, InlineFragmentNode):
                pending.append(sel.selection_set)
            elif isinstance(sel, FragmentSpreadNode) and sel.name.value not in seen:
                seen.add(sel.name.value)
                fragment = fragments.get(sel.name.value)
                if fragment is not None:
                    pending.append(fragment.selection_set)
    return names

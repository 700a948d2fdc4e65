"""The dashboard's GraphQL API (docs/graphql.md): a Strawberry schema over the indexer's tables,
read through a SELECT-only role, one snapshot per operation, with live events from the hub."""

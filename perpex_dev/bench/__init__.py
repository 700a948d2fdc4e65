"""`perpex bench gas|indexer|keeper|graphql`: each prints one JSON object on its last line."""

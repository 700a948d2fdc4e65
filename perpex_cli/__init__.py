"""The `perpex` command line."""

"""Perp-EX's development tooling: the embedded local stack (`perpex dev`, `perpex demo`), the
benchmarks (`perpex bench`), the trading load generator, the fault-injecting RPC proxy and the
throwaway anvil the tests use.

The services never import it, and the container image does not ship it (the Dockerfile copies
shared/, services/ and perpex_cli/ only): in the image these commands say they are unavailable.
"""

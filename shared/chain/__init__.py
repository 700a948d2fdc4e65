"""Chain access for Perp-EX: contract artifacts (ABI + bytecode from the Foundry build output),
the deployment file model, and the local deploy helper.

Submodules are imported on demand (``from shared.chain.abi import load_abi``) so that importing
this package stays cheap.
"""

"""What the session's deployment fixtures hand out (tests/conftest.py: `session_deployment`,
`deployed`)."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from shared.chain.deployment import Deployment


class Deployed(NamedTuple):
    """A deployment and the file describing it (what `perpex deploy --out FILE` leaves)."""

    deployment: Deployment
    path: Path

"""Runs one action of the real Helm engine (helm-sdkpy) and prints its result as JSON.

Runs under .venv-helm's Python 3.12 (helm-sdkpy needs it; that venv holds nothing else, so
this file uses the standard library only), started by the tests as a subprocess. Not a test
module itself.

  helm_action.py lint CHART_DIR
      `helm lint` of the chart directory (the tests write merged values into a temporary copy
      of the chart first: helm-sdkpy's Lint takes no values argument).
  helm_action.py install CHART_DIR KUBECONFIG NAMESPACE RELEASE VALUES_JSON
      `helm install` into the API server named by KUBECONFIG (in the tests, the Kubernetes API
      emulator), keeping the release record in memory (the caller sets HELM_DRIVER=memory).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any


def lint(chart: str) -> dict[str, Any]:
    import helm_sdkpy

    result = asyncio.run(helm_sdkpy.Lint(helm_sdkpy.Configuration()).run(chart))
    return {
        "messages": [
            {"severity": m.get("Severity"), "path": m.get("Path")}
            for m in result.get("Messages") or []
        ],
        "errors": len(result.get("Errors") or []),
    }


def install(chart: str, kubeconfig: str, namespace: str, release: str, values_file: str) -> Any:
    if os.environ.get("HELM_DRIVER") != "memory":
        # Go reads the environment when the engine loads: the caller must set it.
        return {"error": "run with HELM_DRIVER=memory in the environment"}
    import helm_sdkpy

    with open(values_file) as fh:
        values = json.load(fh)
    config = helm_sdkpy.Configuration(namespace=namespace, kubeconfig=kubeconfig)
    try:
        result = asyncio.run(
            helm_sdkpy.Install(config).run(release, chart, values=values, wait=False, timeout=60)
        )
    except Exception as exc:  # reported to the test, which prints it
        return {"error": f"{type(exc).__name__}: {exc}"}
    info = result.get("info") or {}
    return {"status": info.get("status"), "notes": info.get("notes", "")}


def main(argv: list[str]) -> int:
    if argv[1] == "lint":
        out = lint(argv[2])
    elif argv[1] == "install":
        out = install(*argv[2:7])
    else:
        raise SystemExit(f"unknown action {argv[1]}")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

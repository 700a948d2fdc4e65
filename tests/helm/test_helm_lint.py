"""`helm lint` of deploy/helm/perpex with the real Helm engine (helm-sdkpy in .venv-helm).

helm-sdkpy's Lint takes a chart directory only, so values files are deep-merged into the
chart's values.yaml in a temporary copy (as `helm lint -f FILE` would). Lint renders every
template and validates the values against values.schema.json; in lint mode Helm reports a
failed `required` only as a WARN line and a `fail` only as an INFO line on stderr; both
count as problems here.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HELM_PYTHON = ROOT / ".venv-helm" / "bin" / "python"
HELM_ACTION = Path(__file__).with_name("helm_action.py")
CHART = ROOT / "deploy" / "helm" / "perpex"
EXAMPLE_VALUES = CHART / "ci" / "markets-values.yaml"

pytestmark = pytest.mark.skipif(
    not HELM_PYTHON.exists(),
    reason="tool missing: .venv-helm is absent (scripts/bootstrap.sh creates it with helm-sdkpy, which needs "
    "Python >= 3.12): the real Helm engine is unavailable",
)

ENGINE_PROBLEM = re.compile(r" (WARN|ERROR) |funcMap fail|missing required")
ERROR_SEVERITY = 3  # helm's support.ErrorSev (1 info, 2 warning, 3 error)


def merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = merge(base[key], value) if key in base else value
        return out
    return override


def lint(tmp_path: Path, *overrides: dict[str, Any]) -> tuple[dict[str, Any], str]:
    chart = tmp_path / "perpex"
    shutil.copytree(CHART, chart)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for override in overrides:
        values = merge(values, override)
    (chart / "values.yaml").write_text(json.dumps(values, indent=1))  # JSON is YAML
    proc = subprocess.run(
        [str(HELM_PYTHON), str(HELM_ACTION), "lint", str(chart)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def problems(result: dict[str, Any], stderr: str) -> list[str]:
    found = [
        f"severity {m['severity']} in {m['path']}" for m in result["messages"] if m["severity"] >= 2
    ]
    # Lint mode turns `required` into a WARN line and `fail` into an INFO "funcMap fail" line.
    found += [line for line in stderr.splitlines() if ENGINE_PROBLEM.search(line)]
    return found


def example_values() -> dict[str, Any]:
    return dict(yaml.safe_load(EXAMPLE_VALUES.read_text()))


def test_lint_default_values(tmp_path: Path):
    result, stderr = lint(tmp_path)
    assert problems(result, stderr) == []
    assert result["errors"] == 0


def test_lint_with_example_markets(tmp_path: Path):
    result, stderr = lint(tmp_path, example_values())
    assert problems(result, stderr) == []
    assert result["errors"] == 0


def test_lint_namespaced_operator_with_replicas(tmp_path: Path):
    result, stderr = lint(
        tmp_path,
        example_values(),
        {
            "operator": {"replicas": 2, "watchNamespaces": ["markets-a", "markets-b"]},
            "imagePullSecrets": [{"name": "registry"}],
            "image": {"digest": "sha256:" + "a" * 64},
            "grafana": {"dashboard": {"enabled": True}},
            "dashboard": {"graphql": {"dbSecret": {"name": "perpex-graphql-db"}}},
        },
    )
    assert problems(result, stderr) == []


BAD_VALUES = {
    "unknown log level": {"config": {"logLevel": "LOUD"}},
    "typo in a section": {"operater": {"enabled": True}},
    "rpc url with credentials": {"config": {"chain": {"rpcUrl": "https://u:p@node.example"}}},
    "bad kafka bootstrap": {"config": {"kafka": {"bootstrapServers": "no port"}}},
    "two indexers": {"indexer": {"replicas": 2}},
    "market with lowercase pair": {
        "markets": [
            {"name": "m", "spec": {"pair": "eth/usdt", "chainId": 1, "rpc": {}, "contracts": {}}}
        ]
    },
    "market with an inline private key": {
        "markets": [
            {
                "name": "m",
                "spec": {
                    "pair": "ETH/USDT",
                    "chainId": 1,
                    "rpc": {},
                    "contracts": {},
                    "keeper": {"privateKey": "0x" + "ab" * 32},
                },
            }
        ]
    },
    "missing database secret": {"config": {"database": {"existingSecret": ""}}},
    "graphql secret without a key": {"dashboard": {"graphql": {"dbSecret": {"key": ""}}}},
}


@pytest.mark.parametrize("override", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_lint_rejects_bad_values(tmp_path: Path, override: dict[str, Any]):
    result, stderr = lint(tmp_path, copy.deepcopy(override))
    assert result["errors"] > 0 or any(
        m["severity"] >= ERROR_SEVERITY for m in result["messages"]
    ), stderr[-500:]


def test_lint_rejects_many_replicas_without_peering(tmp_path: Path):
    result, stderr = lint(tmp_path, {"operator": {"replicas": 2, "peering": {"enabled": False}}})
    assert problems(result, stderr) != []

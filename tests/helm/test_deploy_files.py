"""Static checks of what cannot run here (no Docker engine, no kind): the Dockerfile, the
kind end-to-end script and its files, and the chart's values files against values.schema.json."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "perpex"
KIND = ROOT / "deploy" / "kind"


def merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        return {**base, **{k: merge(base.get(k), v) for k, v in override.items()}}
    return override


@pytest.mark.parametrize(
    "values_file",
    [None, CHART / "ci" / "markets-values.yaml", KIND / "values-e2e.yaml"],
    ids=["defaults", "ci-markets", "kind-e2e"],
)
def test_values_files_satisfy_values_schema(values_file: Path | None):
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    if values_file is not None:
        values = merge(values, yaml.safe_load(values_file.read_text()))
    errors = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(values)]
    assert errors == []


def test_chart_has_its_parts():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "perpex"
    for part in (
        "crds/perpmarkets.perpex.io.yaml",
        "crds/kopf.dev-peerings.yaml",
        "templates/NOTES.txt",
        "templates/operator.yaml",
        "templates/operator-rbac.yaml",
        "templates/indexer.yaml",
        "templates/dashboard.yaml",
        "templates/markets.yaml",
        "templates/monitoring.yaml",
        "values.schema.json",
    ):
        assert (CHART / part).is_file(), part
    # The CRD has one home: nothing else in the repository defines it.
    defs = [
        p for p in ROOT.glob("deploy/**/*.yaml") if "name: perpmarkets.perpex.io" in p.read_text()
    ]
    assert defs == [CHART / "crds" / "perpmarkets.perpex.io.yaml"]


def dockerfile_stages() -> list[tuple[str, list[str]]]:
    stages: list[tuple[str, list[str]]] = []
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append((line, []))
        elif stages:
            stages[-1][1].append(line)
    return stages


def test_dockerfile_is_multi_stage_and_runs_as_non_root():
    stages = dockerfile_stages()
    assert len(stages) >= 4
    final_from, final = stages[-1]
    assert final_from.endswith("AS runtime")
    users = [line for line in final if line.upper().startswith("USER ")]
    assert users == ["USER 10001:10001"]
    assert 'ENTRYPOINT ["perpex"]' in final
    assert any("PERPEX_CONTRACTS_OUT=/opt/perpex/contracts-out" in line for line in final)
    # Nothing in the runtime stage installs build tools or node.
    assert not any(re.search(r"apt-get|npm|gcc|build-essential", line) for line in final)
    names = {m.group(1) for s, _ in stages if (m := re.search(r" AS (\S+)$", s))}
    for source, _ in stages:
        ref = re.search(r"FROM (?:--platform=\S+ )?(\S+)", source)
        assert ref is not None
        base = ref.group(1)
        assert base.startswith("$") or ":" in base or base in names or "${" in base, base
    copies = [line for _, lines in stages for line in lines if line.startswith("COPY ")]
    for line in copies:
        if "--from=" in line:
            assert line.split("--from=")[1].split()[0] in names, line


def test_dockerfile_copies_exist_and_are_not_dockerignored():
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for _, lines in dockerfile_stages():
        for line in lines:
            if not line.startswith("COPY ") or "--from=" in line:
                continue
            for src in line.split()[1:-1]:
                if src.startswith("contracts/out"):
                    continue  # built by scripts/forge.sh for CONTRACTS_SOURCE=prebuilt
                assert (ROOT / src).exists(), src
                top = src.rstrip("/").split("/")[0]
                assert top not in ignored and src.rstrip("/") not in ignored, src


def test_dockerfile_dependency_extraction_matches_pyproject():
    """The build stage installs pyproject's dependencies with this same snippet."""
    import tomllib

    text = (ROOT / "Dockerfile").read_text()
    assert 'tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]' in text
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(d.startswith("kopf") for d in deps) and any(d.startswith("kubernetes") for d in deps)


def test_kind_files_parse():
    cluster = yaml.safe_load((KIND / "cluster.yaml").read_text())
    assert cluster["kind"] == "Cluster" and cluster["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    infra = list(yaml.safe_load_all((KIND / "infra.yaml").read_text()))
    kinds = {(d["kind"], d["metadata"]["name"]) for d in infra}
    assert {("Deployment", "anvil"), ("Deployment", "postgres"), ("Deployment", "kafka")} <= kinds
    markets = list(yaml.safe_load_all((KIND / "markets.yaml").read_text()))
    assert [m["spec"]["pair"] for m in markets] == ["ETH/USDT", "BTC/USDT"]
    text = (KIND / "markets.yaml").read_text() + (KIND / "values-e2e.yaml").read_text()
    assert not re.search(r"(0x)?[0-9a-fA-F]{64}", text), "no key material in the kind files"


def test_e2e_script_is_valid_bash():
    script = KIND / "e2e.sh"
    assert script.stat().st_mode & 0o111, "e2e.sh must be executable"
    subprocess.run(["bash", "-n", str(script)], check=True)
    if shutil.which("shellcheck"):
        proc = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash") and "set -Eeuo pipefail" in text
    # Its own kubeconfig, never the caller's context.
    assert 'export KUBECONFIG="$WORK/kubeconfig"' in text
    for step in (
        "kind create cluster",
        "docker build",
        "kind load docker-image",
        "helm upgrade --install",
        "markets.yaml",
        "--for=condition=Ready",
    ):
        assert step in text, step

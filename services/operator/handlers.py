"""kopf handlers for PerpMarket: a thin I/O edge over `reconcile` and `status`.

`register(registry, config)` adds the handlers to a kopf registry; `perpex operator` uses a
registry with kopf's default login handlers, tests use a bare one with their own login.
The Kubernetes client lives in `memo.kube`, made at startup in the operator's event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from services.operator.config import OperatorConfig
from services.operator.manifests import GROUP, PLURAL, VERSION
from services.operator.reconcile import ReconcileResult, cleanup, reconcile
from services.operator.status import status_changed
from shared.kube import Kind, KubeApi

RETRY_DELAY = 15.0
ANNOTATION_PREFIX = "operator.perpex.io"


def configure_settings(settings: kopf.OperatorSettings) -> None:
    """kopf settings the operator needs, whatever runs it (CLI or tests)."""
    # The CRD is installed by the chart before the operator; no need to watch CRDs at runtime,
    # which also keeps the ClusterRole free of customresourcedefinitions permissions.
    settings.scanning.disabled = True
    # Keep kopf's bookkeeping in annotations; .status belongs to the PerpMarket API.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=ANNOTATION_PREFIX
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{ANNOTATION_PREFIX}/cleanup"
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330


def _apply_status(patch: kopf.Patch, body: Mapping[str, Any], result: ReconcileResult) -> None:
    if status_changed(body.get("status"), result.status):
        for key, value in result.status.items():
            patch.status[key] = value


def _log(logger: Any, result: ReconcileResult) -> None:
    for change in result.changes:
        logger.info(change)
    for cond in result.status.get("conditions", []):
        if cond["type"] == "Degraded" and cond["status"] == "True":
            logger.warning("degraded (%s): %s", cond["reason"], cond["message"])


PERP_MARKETS = Kind(f"{GROUP}/{VERSION}", PLURAL)


def _reconcile_lock(memo: kopf.Memo) -> asyncio.Lock:
    """One reconcile at a time per market (the memo is per object): the update handler and
    the refresh timer run in tasks of their own."""
    lock = memo.get("reconcile_lock")
    if lock is None:
        lock = memo["reconcile_lock"] = asyncio.Lock()
    return lock


async def refresh(
    kube: KubeApi, body: Mapping[str, Any], config: OperatorConfig, lock: asyncio.Lock
) -> tuple[dict[str, Any], ReconcileResult] | None:
    """The timer's reconcile, on the market as it is now: the body the timer was handed may
    predate an update the handler has applied since (a pause, say), and reconciling it would
    undo that. None when the market is gone or going."""
    meta = body.get("metadata", {})
    async with lock:
        fresh = await kube.get(PERP_MARKETS, meta["namespace"], meta["name"])
        if fresh is None or fresh.get("metadata", {}).get("deletionTimestamp"):
            return None
        return fresh, await reconcile(kube, fresh, config)


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        configure_settings(settings)
        # The client is made inside the operator's event loop; `memo.kube_factory` (an async
        # callable returning a KubeApi) overrides how, e.g. to point tests at an emulator.
        factory = memo.get("kube_factory") or KubeApi.from_environment
        memo["kube"] = await factory()

    @kopf.on.cleanup(registry=registry)
    async def shutdown(memo: kopf.Memo, **_: Any) -> None:
        if memo.get("kube") is not None:
            await memo["kube"].close()

    @kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry, id="reconcile")
    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry, id="reconcile")
    @kopf.on.update(GROUP, VERSION, PLURAL, registry=registry, id="reconcile")
    async def reconcile_market(
        body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: Any, **_: Any
    ) -> None:
        async with _reconcile_lock(memo):
            result = await reconcile(memo["kube"], body, config)
        _apply_status(patch, body, result)
        _log(logger, result)
        if result.error is not None:
            raise kopf.TemporaryError(result.error, delay=RETRY_DELAY)

    @kopf.timer(
        GROUP,
        VERSION,
        PLURAL,
        registry=registry,
        id="refresh",
        interval=config.status_interval,
        initial_delay=config.status_interval,
    )
    async def refresh_market(
        body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: Any, **_: Any
    ) -> None:
        # Re-reconciling is read-only when nothing drifted; it repairs drift when it did
        # (a deleted or hand-edited Deployment), and refreshes ready replica counts.
        refreshed = await refresh(memo["kube"], body, config, _reconcile_lock(memo))
        if refreshed is not None:
            fresh, result = refreshed
            _apply_status(patch, fresh, result)
            _log(logger, result)

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry, id="cleanup")
    async def delete_market(body: kopf.Body, memo: kopf.Memo, logger: Any, **_: Any) -> None:
        for deleted in await cleanup(memo["kube"], body, config):
            logger.info("deleted %s", deleted)

"""The keeper's OpenTelemetry instruments (created per keeper, after telemetry set-up), exported
over OTLP when configured and always on /metrics (Prometheus; docs/observability.md).

`LiquidatableClock` measures the liquidation latency in blocks: from the first block a health
round read a position as liquidatable to the block its liquidation was mined."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sized
from typing import Any

from opentelemetry.metrics import CallbackOptions, Observation

from shared.metrics import observe
from shared.telemetry import meter

# blocks from liquidatable to mined: 0 = mined in the block the keeper read it in
LATENCY_BUCKETS = (0, 1, 2, 3, 5, 10, 20, 50, 100, 500)


class KeeperMetrics:
    def __init__(
        self,
        pending: Callable[[], int],
        balance_wei: Callable[[], int | None],
        book_size: Callable[[], int],
        stuck: Callable[[], bool] = lambda: False,
        oldest_pending_s: Callable[[], float] = lambda: 0.0,
        liquidatable: Callable[[], int] = lambda: 0,
        sender_stats: Callable[[], Any] = lambda: None,
        nonce_gap: Callable[[], int] = lambda: 0,
        send_window: Callable[[], tuple[int, bool]] = lambda: (0, False),
    ):
        m = meter("perpex.keeper")
        self.liquidation_latency = m.create_histogram(
            "perpex_keeper_liquidation_latency_blocks",
            description="blocks from the first health round that read a position liquidatable "
            "to the block its liquidation was mined",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS,
        )
        m.create_observable_gauge(
            "perpex_keeper_liquidatable_positions",
            [observe(liquidatable)],
            description="positions read liquidatable and not liquidated yet (in flight or not)",
        )
        m.create_observable_gauge(
            "perpex_keeper_nonce_gap",
            [observe(nonce_gap)],
            description="nonces the chain waits for that no tracked transaction holds (0: none)",
        )
        for name, field, what in (
            ("perpex_keeper_tx_sent", "sent", "broadcast (every version: replacements included)"),
            ("perpex_keeper_tx_replaced", "replaced", "fee-bumped replacements of a stuck one"),
            ("perpex_keeper_tx_reverted", "reverted", "mined but reverted"),
            ("perpex_keeper_tx_confirmed", "confirmed", "mined successfully"),
            ("perpex_keeper_tx_cancelled", "cancelled", "nonces filled with a cancellation"),
            ("perpex_keeper_tx_rebroadcast", "rebroadcast", "sent again after the node lost them"),
        ):
            m.create_observable_counter(
                name,
                [observe(lambda field=field: _stat(sender_stats(), field))],  # type: ignore[misc]
                description=f"wallet transactions {what}",
            )
        self.liquidations_sent = m.create_counter(
            "perpex_keeper_liquidations_sent", description="liquidation transactions broadcast"
        )
        self.liquidations_confirmed = m.create_counter(
            "perpex_keeper_liquidations_confirmed", description="liquidations mined successfully"
        )
        self.liquidations_dropped = m.create_counter(
            "perpex_keeper_liquidations_dropped",
            description="positions dropped without (or after) sending, by reason",
        )
        self.liquidation_failures = m.create_counter(
            "perpex_keeper_liquidation_failures", description="liquidations to retry, by reason"
        )
        self.health_rpc_calls = m.create_counter(
            "perpex_keeper_health_rpc_calls",
            description="JSON-RPC requests of the health path (block polls, prices, batch views)",
        )
        self.health_checked = m.create_counter(
            "perpex_keeper_positions_checked", description="positions confirmed on-chain"
        )
        self.events = m.create_counter(
            "perpex_keeper_events", description="Kafka events by outcome (applied, duplicate...)"
        )
        self.malformed_events = m.create_counter(
            "perpex_keeper_malformed_events", description="Kafka messages skipped as malformed"
        )
        self.rpc_errors = m.create_counter(
            "perpex_keeper_rpc_errors", description="failed chain reads (retried with backoff)"
        )
        self.low_balance = m.create_counter(
            "perpex_keeper_low_balance_warnings",
            description="wallet balance seen below KEEPER_MIN_BALANCE_ETH",
        )
        self.lost_races = m.create_counter(
            "perpex_keeper_lost_races",
            description="liquidations another liquidator got first, by reason (gone, "
            "not_liquidatable, mined_after_competitor) and stage (latest, pending: nothing "
            "sent; mined: our transaction reverted)",
        )
        self.unprofitable = m.create_counter(
            "perpex_keeper_unprofitable_skips",
            description="liquidations not sent because the reward would not pay the gas "
            "(x KEEPER_MIN_PROFIT_RATIO), by market",
        )
        self.rewards = m.create_counter(
            "perpex_keeper_rewards_collateral",
            description="rewards of this keeper's mined liquidations (collateral units), as "
            "their pending-block simulations returned them",
        )
        self.mirror_mismatch = m.create_counter(
            "perpex_keeper_mirror_mismatch",
            description="off-chain margin math disagreed with the chain's health view",
        )

        def _pending(_: CallbackOptions) -> Iterable[Observation]:
            yield Observation(pending())

        def _balance(_: CallbackOptions) -> Iterable[Observation]:
            value = balance_wei()
            if value is not None:
                yield Observation(value / 1e18)

        def _book(_: CallbackOptions) -> Iterable[Observation]:
            yield Observation(book_size())

        m.create_observable_gauge(
            "perpex_keeper_pending_transactions",
            callbacks=[_pending],
            description="liquidations broadcast and not yet mined",
        )
        m.create_observable_gauge(
            "perpex_keeper_wallet_balance_eth",
            callbacks=[_balance],
            description="keeper wallet balance (ETH)",
        )

        def _stuck(_: CallbackOptions) -> Iterable[Observation]:
            yield Observation(1 if stuck() else 0)

        def _oldest(_: CallbackOptions) -> Iterable[Observation]:
            yield Observation(oldest_pending_s())

        m.create_observable_gauge(
            "perpex_keeper_sender_stuck",
            callbacks=[_stuck],
            description="1 while the transaction sender is stuck (a nonce gap it cannot fill, "
            "a liquidation not mined for STUCK_AFTER_S)",
        )
        m.create_observable_gauge(
            "perpex_keeper_oldest_pending_seconds",
            callbacks=[_oldest],
            description="age of the oldest liquidation broadcast and not yet mined",
        )
        m.create_observable_gauge(
            "perpex_keeper_book_positions",
            callbacks=[_book],
            description="open positions this replica watches",
        )

        m.create_observable_gauge(
            "perpex_keeper_send_window",
            [observe(lambda: send_window()[0])],
            description="liquidations allowed between their pending-block simulation and their "
            "broadcast at once (1 while contested; otherwise widening up to "
            "LIQUIDATION_CONCURRENCY)",
        )
        m.create_observable_gauge(
            "perpex_keeper_contested",
            [observe(lambda: 1 if send_window()[1] else 0)],
            description="1 while the keeper counts itself contested (a race lost within "
            "KEEPER_CONTESTED_FOR_S)",
        )

    @classmethod
    def of(
        cls,
        sender: Any,
        book_size: Callable[[], int],
        latency: Sized,
        send_window: Callable[[], tuple[int, bool]] = lambda: (0, False),
    ) -> KeeperMetrics:
        """A keeper's metrics: its wallet's `sender` (shared.chain.tx.TxSender), its book's
        size, the positions its LiquidatableClock holds."""
        return cls(
            pending=lambda: len(sender.pending),
            balance_wei=lambda: sender.last_balance_wei,
            book_size=book_size,
            stuck=lambda: sender.stuck() is not None,
            oldest_pending_s=sender.oldest_pending_s,
            liquidatable=lambda: len(latency),
            sender_stats=lambda: sender.stats,
            nonce_gap=sender.nonce_gap,
            send_window=send_window,
        )


def _stat(stats: Any, field: str) -> int | None:
    return None if stats is None else int(getattr(stats, field))


class LiquidatableClock:
    """token -> the block a health round first read it liquidatable in, until its liquidation
    is mined (recorded), it is read healthy again or it is gone (forgotten)."""

    def __init__(self, record: Callable[[int], None]):
        self.record = record
        self.since: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.since)

    def observe(self, token: int, block: int, liquidatable: bool) -> None:
        if liquidatable:
            self.since.setdefault(token, block)
        else:
            self.since.pop(token, None)

    def read(self, health: Any, block: int, settled: int | None) -> None:
        """A health round read `health` (a position's on-chain health view) at `block`;
        `settled`: the block our last liquidation of it was mined in. A read from before that
        block, or one without a price (the oracle down), tells nothing."""
        if settled is not None and block < settled:
            return
        if health.index_price or not health.exists:
            self.observe(health.token_id, block, health.exists and health.liquidatable)

    def mined(self, token: int, block: int) -> int | None:
        """Its liquidation was mined in `block`: the latency recorded (None: not tracked)."""
        since = self.since.pop(token, None)
        if since is None:
            return None
        latency = max(0, block - since)
        self.record(latency)
        return latency

    def forget(self, token: int) -> None:
        self.since.pop(token, None)

"""The keeper's OpenTelemetry instruments (created per keeper, after telemetry set-up)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from opentelemetry.metrics import CallbackOptions, Observation

from shared.telemetry import meter


class KeeperMetrics:
    def __init__(
        self,
        pending: Callable[[], int],
        balance_wei: Callable[[], int | None],
        book_size: Callable[[], int],
        stuck: Callable[[], bool] = lambda: False,
        oldest_pending_s: Callable[[], float] = lambda: 0.0,
        send_window: Callable[[], tuple[int, bool]] = lambda: (0, False),
    ):
        m = meter("perpex.keeper")
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
            "perpex_keeper_lost_races_total",
            description="liquidations another liquidator got first, by reason (gone, "
            "not_liquidatable, mined_after_competitor) and stage (latest, pending: nothing "
            "sent; mined: our transaction reverted)",
        )
        self.unprofitable = m.create_counter(
            "perpex_keeper_unprofitable_skips_total",
            description="liquidations not sent because the reward would not pay the gas "
            "(x KEEPER_MIN_PROFIT_RATIO), by market",
        )
        self.rewards = m.create_counter(
            "perpex_keeper_rewards_collateral_total",
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

        def _window(_: CallbackOptions) -> Iterable[Observation]:
            yield Observation(send_window()[0])

        def _contested(_: CallbackOptions) -> Iterable[Observation]:
            yield Observation(1 if send_window()[1] else 0)

        m.create_observable_gauge(
            "perpex_keeper_send_window",
            callbacks=[_window],
            description="liquidations allowed between their pending-block simulation and their "
            "broadcast at once (1 while contested; otherwise widening up to "
            "LIQUIDATION_CONCURRENCY)",
        )
        m.create_observable_gauge(
            "perpex_keeper_contested",
            callbacks=[_contested],
            description="1 while the keeper counts itself contested (a race lost within "
            "KEEPER_CONTESTED_FOR_S)",
        )

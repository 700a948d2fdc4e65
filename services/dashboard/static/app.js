// Perp-EX dashboard page: tables and charts from the JSON API, kept live by /ws.
// Plain JS, no dependencies. Data is only ever inserted with textContent (never innerHTML).
"use strict";

(function () {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const FEED_MAX = 100;
  const PAGE_SIZE = 20;
  const POSITION_EVENTS = new Set([
    "PositionOpened", "PositionClosed", "PositionLiquidated", "PositionReduced", "PositionDecreased",
    "MarginChanged",
  ]);

  const state = {
    filters: { status: "all", market: "", owner: "" },
    offset: 0,
    total: 0,
    fundingMarket: "",
    markets: [],
    feedSeen: new Set(),
    feedCount: 0,
    pending: new Set(),
    timer: null,
    ws: null,
    backoff: 1000,
  };

  // ---------- formatting ----------
  // Decimal strings from the API are exact; format them as strings so nothing is rounded
  // through a double: group thousands, keep at most `maxFrac` fraction digits (truncated).
  function fmt(value, maxFrac) {
    if (value === null || value === undefined || value === "") return "–";
    const text = String(value);
    const neg = text.startsWith("-");
    const body = neg ? text.slice(1) : text;
    const parts = body.split(".");
    const whole = parts[0].replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    let frac = (parts[1] || "").slice(0, maxFrac === undefined ? 4 : maxFrac).replace(/0+$/, "");
    const out = frac ? whole + "." + frac : whole;
    return (neg && out.replace(/[0.,]/g, "") !== "" ? "-" : "") + out;
  }

  function fmtPct(value) {
    if (value === null || value === undefined) return "–";
    return fmt(value, 6) + "%";
  }

  function shortHex(value) {
    if (!value) return "–";
    return value.length > 12 ? value.slice(0, 6) + "…" + value.slice(-4) : value;
  }

  function fmtTime(iso) {
    if (!iso) return "–";
    const d = new Date(iso);
    if (isNaN(d.getTime())) return iso;
    const pad = (n) => String(n).padStart(2, "0");
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }

  function signClass(value) {
    if (!value) return "";
    return String(value).startsWith("-") ? "neg" : (String(value).replace(/[0.]/g, "") ? "pos" : "");
  }

  // ---------- DOM helpers ----------
  function el(tag, opts, children) {
    const node = document.createElement(tag);
    if (opts) {
      if (opts.cls) node.className = opts.cls;
      if (opts.text !== undefined) node.textContent = opts.text;
      if (opts.title) node.title = opts.title;
      if (opts.data) for (const k in opts.data) node.dataset[k] = opts.data[k];
    }
    for (const child of children || []) node.appendChild(child);
    return node;
  }

  function td(text, cls, title) {
    return el("td", { text: text, cls: cls, title: title });
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const k in attrs || {}) node.setAttribute(k, attrs[k]);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function replaceRows(tbody, rows) {
    while (tbody.firstChild) tbody.removeChild(tbody.firstChild);
    for (const row of rows) tbody.appendChild(row);
  }

  function showError(message) {
    const node = document.getElementById("error");
    node.textContent = message || "";
    node.hidden = !message;
  }

  async function api(path) {
    const response = await fetch(path, { headers: { Accept: "application/json" } });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new Error((body.param ? body.param + ": " : "") + (body.message || response.statusText));
    }
    return body;
  }

  // ---------- markets ----------
  function marketLabel(m) {
    return m.pair || shortHex(m.market_id);
  }

  function oiBar(longValue, shortValue) {
    const l = Number(longValue) || 0;
    const s = Number(shortValue) || 0;
    const total = l + s;
    const width = 90;
    const lw = total > 0 ? Math.round((l / total) * width) : width / 2;
    const box = svg("svg", { width: width, height: 10, viewBox: "0 0 " + width + " 10", class: "bar" });
    box.appendChild(svg("rect", { x: 0, y: 0, width: lw, height: 10, fill: "#2fbf71" }));
    box.appendChild(svg("rect", { x: lw, y: 0, width: width - lw, height: 10, fill: "#e5534b" }));
    box.appendChild(svg("title", {}, total > 0 ? Math.round((l / total) * 100) + "% long" : "no open interest"));
    return box;
  }

  async function loadMarkets() {
    const body = await api("/api/markets");
    state.markets = body.items;
    const rows = body.items.map((m) => {
      const bar = el("td");
      bar.appendChild(oiBar(m.open_interest_long, m.open_interest_short));
      return el("tr", { data: { marketId: m.market_id } }, [
        td(marketLabel(m) + (m.paused ? " (paused)" : ""), "", m.market_id),
        td(fmt(m.open_interest_long, 2), "num long"),
        td(fmt(m.open_interest_short, 2), "num short"),
        bar,
        td(String(m.open_positions), "num"),
        td(String(m.closed_positions), "num"),
        td(String(m.liquidated_positions), "num"),
        td(fmt(m.liquidation_rewards, 4), "num"),
        td(fmtPct(m.funding_rate_pct), "num " + signClass(m.funding_rate)),
        td(fmtTime(m.last_funding_at)),
      ]);
    });
    replaceRows(document.querySelector("#markets tbody"), rows);
    document.getElementById("markets-empty").hidden = rows.length > 0;
    fillMarketSelects();
  }

  function fillMarketSelects() {
    const filter = document.querySelector("#position-filters select[name=market]");
    const funding = document.getElementById("funding-market");
    const keepFilter = filter.value;
    const keepFunding = funding.value || state.fundingMarket;
    while (filter.options.length > 1) filter.remove(1);
    while (funding.options.length) funding.remove(0);
    for (const m of state.markets) {
      filter.appendChild(new Option(marketLabel(m), m.market_id));
      funding.appendChild(new Option(marketLabel(m), m.market_id));
    }
    filter.value = keepFilter;
    if (filter.value !== keepFilter) filter.value = "";
    let chosen = keepFunding;
    if (!state.markets.some((m) => m.market_id === chosen)) {
      const withFunding = state.markets.find((m) => m.funding_rate !== null);
      chosen = withFunding ? withFunding.market_id : (state.markets[0] || {}).market_id || "";
    }
    funding.value = chosen;
    if (chosen !== state.fundingMarket) {
      state.fundingMarket = chosen;
      schedule("funding");
    }
  }

  // ---------- funding chart ----------
  async function loadFunding() {
    const box = document.getElementById("funding-chart");
    if (!state.fundingMarket) {
      drawFunding(box, []);
      return;
    }
    const q = new URLSearchParams({ market: state.fundingMarket, limit: "500", order: "desc" });
    const body = await api("/api/funding?" + q);
    const points = body.items
      .map((f) => ({ t: new Date(f.time).getTime(), v: Number(f.funding_rate_pct), label: f.funding_rate_pct, time: f.time }))
      .filter((p) => isFinite(p.t) && isFinite(p.v))
      .sort((a, b) => a.t - b.t);
    drawFunding(box, points);
  }

  function niceTicks(min, max, count) {
    if (min === max) { min -= 1e-6; max += 1e-6; }
    const span = max - min;
    const step0 = Math.pow(10, Math.floor(Math.log10(span / count)));
    const err = (count * step0) / span;
    const step = step0 * (err <= 0.15 ? 10 : err <= 0.35 ? 5 : err <= 0.75 ? 2 : 1);
    const ticks = [];
    for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
    return ticks;
  }

  function drawFunding(box, points) {
    while (box.firstChild) box.removeChild(box.firstChild);
    const W = 720, H = 240, L = 70, R = 14, T = 12, B = 28;
    const root = svg("svg", { viewBox: "0 0 " + W + " " + H, preserveAspectRatio: "none" });
    box.appendChild(root);
    if (!points.length) {
      root.appendChild(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "tick" }, "No funding updates yet"));
      return;
    }
    let vmin = Math.min(0, ...points.map((p) => p.v));
    let vmax = Math.max(0, ...points.map((p) => p.v));
    const ticks = niceTicks(vmin, vmax, 4);
    vmin = Math.min(vmin, ticks[0]);
    vmax = Math.max(vmax, ticks[ticks.length - 1]);
    if (vmin === vmax) vmax = vmin + 1;
    const t0 = points[0].t;
    const t1 = points[points.length - 1].t === t0 ? t0 + 1 : points[points.length - 1].t;
    const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
    const y = (v) => T + (1 - (v - vmin) / (vmax - vmin)) * (H - T - B);
    root.appendChild(svg("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }));
    root.appendChild(svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }));
    for (const v of ticks) {
      root.appendChild(svg("line", { x1: L, y1: y(v), x2: W - R, y2: y(v), class: v === 0 ? "zero" : "axis" }));
      root.appendChild(svg("text", { x: L - 6, y: y(v) + 3, "text-anchor": "end", class: "tick" }, v + "%"));
    }
    const labelCount = Math.min(points.length, 5);
    for (let i = 0; i < labelCount; i++) {
      const p = points[Math.round((i * (points.length - 1)) / Math.max(1, labelCount - 1))];
      const anchor = i === 0 ? "start" : i === labelCount - 1 ? "end" : "middle";
      root.appendChild(svg("text", { x: x(p.t), y: H - 8, "text-anchor": anchor, class: "tick" }, fmtTime(p.time).slice(5, 16)));
    }
    const d = points.map((p, i) => (i ? "L" : "M") + x(p.t).toFixed(1) + " " + y(p.v).toFixed(1)).join(" ");
    root.appendChild(svg("path", { d: d, class: "series" }));
    for (const p of points.slice(-200)) {
      const dot = svg("circle", { cx: x(p.t), cy: y(p.v), r: 3, class: "dot" });
      dot.appendChild(svg("title", {}, fmtTime(p.time) + "  " + fmtPct(p.label)));
      root.appendChild(dot);
    }
  }

  // ---------- positions ----------
  async function loadPositions() {
    const q = new URLSearchParams({ limit: String(PAGE_SIZE), offset: String(state.offset) });
    for (const key of ["status", "market", "owner"]) {
      if (state.filters[key]) q.set(key, state.filters[key]);
    }
    let body;
    try {
      body = await api("/api/positions?" + q);
    } catch (err) {
      showError(err.message);
      return;
    }
    state.total = body.total;
    const rows = body.items.map((p) =>
      el("tr", { data: { tokenId: String(p.token_id) } }, [
        td("#" + p.token_id, "num mono"),
        td(p.market || shortHex(p.market_id), "", p.market_id),
        td(p.side, p.side),
        td(fmt(p.size, 4), "num"),
        td(fmt(p.entry_price, 2), "num"),
        td(fmt(p.notional, 2), "num"),
        td(fmt(p.collateral, 2), "num"),
        td(fmt(p.leverage, 2) + "x", "num"),
        el("td", {}, [el("span", { cls: "status status-" + p.status, text: p.status })]),
        td(fmt(p.realized_pnl, 2), "num " + signClass(p.realized_pnl)),
        td(fmtTime(p.opened_at)),
        td(shortHex(p.owner), "mono", p.owner),
      ]),
    );
    replaceRows(document.querySelector("#positions tbody"), rows);
    const first = body.total ? state.offset + 1 : 0;
    document.getElementById("positions-range").textContent =
      first + "–" + (state.offset + body.items.length) + " of " + body.total;
    document.getElementById("positions-prev").disabled = state.offset === 0;
    document.getElementById("positions-next").disabled = body.next_offset === null;
  }

  // ---------- liquidations ----------
  async function loadLiquidations() {
    const body = await api("/api/liquidations?limit=10");
    const rows = body.items.map((l) =>
      el("tr", { data: { tokenId: String(l.token_id) } }, [
        td(fmtTime(l.time).slice(5, 16), "", l.time),
        td("#" + l.token_id, "num mono"),
        td(l.market || shortHex(l.market_id), "", l.market_id),
        td(fmt(l.price, 2), "num"),
        td(fmt(l.reward, 4), "num"),
        td(shortHex(l.liquidator), "mono", l.liquidator),
      ]),
    );
    replaceRows(document.querySelector("#liquidations tbody"), rows);
    document.getElementById("liquidations-empty").hidden = rows.length > 0;
  }

  // ---------- bridge (deposits locked on the remote chain, not credited yet) ----------
  async function loadBridge() {
    const section = document.getElementById("bridge-section");
    let body;
    try {
      body = await api("/api/bridge/transfers?status=in_flight&direction=deposit&limit=10");
    } catch (err) {
      section.hidden = true; // no bridge tables: an indexer without the bridge mode
      return;
    }
    section.hidden = body.chains.length === 0;
    const d = body.in_flight.deposit;
    const w = body.in_flight.withdrawal;
    document.getElementById("bridge-summary").textContent =
      d.count + " deposit(s) in flight (" + fmt(d.amount, 2) + "), " +
      w.count + " withdrawal(s) in flight (" + fmt(w.amount, 2) + ")";
    const rows = body.items.map((t) =>
      el("tr", { data: { guid: t.guid } }, [
        td(fmtTime(t.sent_at).slice(5, 16), "", t.sent_tx),
        td(String(t.nonce), "num"),
        td(shortHex(t.account), "mono", t.account),
        td(fmt(t.amount, 2), "num"),
        td(t.age_s === undefined ? "–" : t.age_s + "s", "num"),
      ]),
    );
    replaceRows(document.querySelector("#bridge-in-flight tbody"), rows);
    document.getElementById("bridge-empty").hidden = rows.length > 0;
  }

  // ---------- governance (proposals pending and executed, parameter changes) ----------
  async function loadGovernance() {
    const section = document.getElementById("governance-section");
    let body;
    try {
      body = await api("/api/governance?limit=8");
    } catch (err) {
      section.hidden = true; // an indexer database without the governance views
      return;
    }
    section.hidden = body.proposals.length === 0 && body.changes.length === 0;
    const stage = (p) =>
      p.phase + (p.seconds_left === null ? "" : " (" + p.seconds_left + "s)");
    const rows = body.proposals.map((p) =>
      el("tr", { data: { proposal: p.proposal_id } }, [
        td(shortHex(p.proposal_id), "mono", p.proposal_id),
        td(p.description, "", p.created_tx),
        td(stage(p), p.status === "executed" ? "" : "muted"),
        td(fmt(p.votes.for, 0), "num"),
      ]),
    );
    replaceRows(document.querySelector("#governance-proposals tbody"), rows);
    document.getElementById("governance-empty").hidden = rows.length > 0;
    const changes = body.changes.slice(0, 8).map((c) =>
      el("tr", {}, [
        td(String(c.block_number), "num", c.tx_hash),
        td(c.market || "–"),
        td(
          c.name + " " +
            Object.entries(c.values).map(([k, v]) => k + " " + v).join(", "),
        ),
      ]),
    );
    replaceRows(document.querySelector("#governance-changes tbody"), changes);
  }

  // ---------- indexer status ----------
  async function loadStatus() {
    const body = await api("/api/status");
    const node = document.getElementById("sync");
    if (!body.sync.length) {
      node.textContent = "indexer: not synced yet";
      return;
    }
    const block = Math.min(...body.sync.map((s) => s.last_synced_block));
    const age = Math.max(...body.sync.map((s) => s.seconds_since_update || 0));
    node.textContent = "indexer at block " + block + " (updated " + Math.round(age) + "s ago)";
  }

  // ---------- refresh scheduling ----------
  const LOADERS = {
    markets: loadMarkets,
    positions: loadPositions,
    liquidations: loadLiquidations,
    funding: loadFunding,
    status: loadStatus,
    bridge: loadBridge,
    governance: loadGovernance,
  };

  function schedule(...parts) {
    for (const p of parts) state.pending.add(p);
    if (state.timer) return;
    state.timer = setTimeout(async () => {
      state.timer = null;
      const todo = Array.from(state.pending);
      state.pending.clear();
      // Markets first: they fill the selects the other views read.
      if (todo.includes("markets")) await run("markets");
      await Promise.all(todo.filter((p) => p !== "markets").map(run));
    }, 250);
  }

  async function run(part) {
    try {
      await LOADERS[part]();
      showError("");
    } catch (err) {
      showError(part + ": " + err.message);
    }
  }

  function refreshAll() {
    schedule("markets", "positions", "liquidations", "funding", "status", "bridge", "governance");
  }

  // ---------- live feed ----------
  function addFeedItem(ev) {
    // a transaction re-mined in another block after a reorg keeps its event id
    const key = ev.event_id + "@" + (ev.block_hash || "") + (ev.reverted ? ":r" : "");
    if (state.feedSeen.has(key)) return false;
    state.feedSeen.add(key);
    const head = el("div", { cls: "head" }, [
      el("span", {}, [
        el("span", { cls: "name", text: ev.name }),
        ...(ev.reverted ? [el("span", { cls: "tag", text: "reverted (reorg)" })] : []),
      ]),
      el("span", { cls: "muted", text: "block " + ev.block_number }),
    ]);
    const meta = el("div", { cls: "muted" }, [
      el("span", {
        text: (ev.market || "") + (ev.token_id !== null && ev.token_id !== undefined ? "  #" + ev.token_id : "") +
          "  " + fmtTime(ev.time),
      }),
    ]);
    const item = el("li", {
      cls: "flash ev-" + ev.name + (ev.reverted ? " reverted" : ""),
      data: { eventId: ev.event_id, name: ev.name, block: ev.block_number, logIndex: ev.log_index },
      title: ev.tx_hash,
    }, [head, el("div", { cls: "summary", text: ev.summary }), meta]);
    // Newest chain position first. Kafka orders events per partition only, so an event may
    // arrive after a later one from another partition: slot it in by (block, log index).
    const list = document.getElementById("feed");
    let before = list.firstChild;
    while (before && chainBefore(ev, before)) before = before.nextSibling;
    list.insertBefore(item, before);
    while (list.children.length > FEED_MAX) list.removeChild(list.lastChild);
    state.feedCount += 1;
    document.getElementById("feed-count").textContent = "(" + state.feedCount + ")";
    document.getElementById("feed-empty").hidden = true;
    return true;
  }

  function chainBefore(ev, li) {
    const block = Number(li.dataset.block);
    const logIndex = Number(li.dataset.logIndex);
    return ev.block_number < block || (ev.block_number === block && ev.log_index < logIndex);
  }

  const GOVERNANCE_EVENTS = new Set([
    "ProposalCreated", "VoteCast", "ProposalQueued", "ProposalExecuted", "ProposalCanceled",
    "RiskParamsUpdated", "SafetyParamsUpdated", "FundingParamsUpdated", "ParamChangeScheduled",
    "FundingRewardSet", "GuardianSet", "ParamChangeDelaySet", "MarketPaused",
  ]);

  function onEvent(ev) {
    if (!addFeedItem(ev)) return;
    if (POSITION_EVENTS.has(ev.name)) schedule("positions", "markets", "status");
    if (ev.name === "PositionLiquidated") schedule("liquidations");
    if (ev.name === "FundingRateUpdated") schedule("markets", "funding", "status");
    if (ev.name === "MarketAdded" || ev.name === "MarketPaused") schedule("markets");
    if (GOVERNANCE_EVENTS.has(ev.name)) schedule("governance", "markets");
  }

  function setConn(live, text) {
    const node = document.getElementById("conn");
    node.className = "badge " + (live ? "live" : "down");
    node.dataset.state = live ? "live" : "down";
    node.textContent = text;
  }

  function connect() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(proto + "//" + location.host + "/ws");
    state.ws = ws;
    ws.onopen = () => {
      state.backoff = 1000;
    };
    ws.onmessage = (msg) => {
      let data;
      try {
        data = JSON.parse(msg.data);
      } catch (e) {
        return;
      }
      if (data.type === "hello") {
        const feed = data.feed;
        setConn(true, feed && !feed.live ? "live (Kafka feed down)" : "live");
        refreshAll();
      } else if (data.type === "event") {
        onEvent(data.event);
      } else if (data.type === "lagged") {
        refreshAll();
      }
    };
    ws.onclose = () => {
      setConn(false, "reconnecting…");
      setTimeout(connect, state.backoff);
      state.backoff = Math.min(state.backoff * 2, 15000);
    };
  }

  // ---------- controls ----------
  function bind() {
    const form = document.getElementById("position-filters");
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const data = new FormData(form);
      state.filters = {
        status: data.get("status") || "all",
        market: data.get("market") || "",
        owner: (data.get("owner") || "").trim(),
      };
      state.offset = 0;
      schedule("positions");
    });
    document.getElementById("positions-prev").addEventListener("click", () => {
      state.offset = Math.max(0, state.offset - PAGE_SIZE);
      schedule("positions");
    });
    document.getElementById("positions-next").addEventListener("click", () => {
      state.offset += PAGE_SIZE;
      schedule("positions");
    });
    document.getElementById("funding-market").addEventListener("change", (e) => {
      state.fundingMarket = e.target.value;
      schedule("funding");
    });
    setInterval(() => schedule("status"), 15000);
    setInterval(() => schedule("bridge"), 3000); // bridge events do not come over /ws
  }

  bind();
  refreshAll();
  connect();
  window.perpexDashboard = { state: state, fmt: fmt };
})();

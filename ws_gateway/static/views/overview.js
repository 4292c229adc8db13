// Overview: KPI cards against the previous period, revenue/orders and orders/carts over time, the
// journey funnel, e-mail's share, quota use, and the live totals the WebSocket pushes.
import { drawBarList, drawChart, timeOf } from "../charts.js";
import { card, errorLine, h, setText } from "../dom.js";
import * as fmt from "../format.js";
import { daysBetween, previousSpan, spans } from "../period.js";
import { drawRecommendations } from "./recommendations.js";

const KPIS = [
  // [id, message key, source, read(body) -> number, text(number, body)]
  ["revenue", "kpi.revenue", "figures", (b) => b.gross_revenue.amount, (n, b) => fmt.money({ ...b.gross_revenue, amount: n })],
  ["net_revenue", "kpi.net_revenue", "figures", (b) => b.net_revenue.amount, (n, b) => fmt.money({ ...b.net_revenue, amount: n })],
  ["orders", "kpi.orders", "figures", (b) => b.paid_orders, (n) => fmt.number(n)],
  ["aov", "kpi.aov", "figures", (b) => b.aov.amount, (n, b) => fmt.money({ ...b.aov, amount: n })],
  ["conversion", "kpi.conversion", "journey", (b) => b.conversion_rate, (n) => fmt.percent(n)],
  ["abandonment", "kpi.abandonment", "carts", (b) => b.abandonment_rate, (n) => fmt.percent(n)],
  ["repeat", "kpi.repeat", "customers", (b) => b.summary.repeat_purchase_rate, (n) => fmt.percent(n)],
  ["email_revenue", "kpi.email_revenue", "attribution", (b) => b.revenue.amount, (n, b) => fmt.money({ ...b.revenue, amount: n })],
];
const LOWER_IS_BETTER = new Set(["abandonment"]);
const MONEY_FIELD = { revenue: "gross_revenue", net_revenue: "net_revenue", aov: "aov", email_revenue: "revenue" };
const LIVE_ROWS = ["gross_revenue", "refunds", "net_revenue", "paid_orders", "aov"];
const LIVE_PERIODS = ["today", "7d", "30d", "all"];
const MOST_SPANS = 14;
const QUOTA_EVERY_MS = 30000;
const HOUR_MS = 3600000;

// The instant `days` days before `nowMs`, to the nearest whole hour, as ISO 8601 (the figures' until=).
export function sameTimeBefore(nowMs, days) {
  return new Date(Math.round((nowMs - days * 24 * HOUR_MS) / HOUR_MS) * HOUR_MS).toISOString();
}

// The five sources of the KPI cards over one span; each a body or {error}. With `until`, the figures
// count only the hours before it (the others are kept per day).
async function sources(ctx, span, until) {
  const p = ctx.params(span);
  const ps = ctx.params(span, { segment: true });
  const ask = (path, params) => ctx.api.get(path, params).catch((e) => ({ error: e.message }));
  const [figures, journey, carts, customers, attribution] = await Promise.all([
    ask("figures", { ...ps, until }), ask("journey", p), ask("carts", { ...ps, limit: 1 }),
    ask("customers", { ...ps, limit: 1 }), ask("attribution", p),
  ]);
  return { figures, journey, carts, customers, attribution };
}

export default {
  id: "overview",
  title: "view.overview",

  mount(panel, ctx) {
    const t = ctx.t;
    this.kpis = {};
    const grid = h("div", { class: "kpis" });
    for (const [id, key] of KPIS) {
      const value = h("p", { class: "kpi-value", "data-kpi": id, text: "–" });
      const delta = h("p", { class: "kpi-change", "data-kpi-change": id });
      const warn = h("p", { class: "warning", "data-kpi-warning": id, hidden: true });
      const el = h("section", { class: "kpi", "aria-label": t(key) }, h("h2", { text: t(key) }), value, delta, warn);
      this.kpis[id] = { value, delta, warn };
      grid.append(el);
    }
    this.revenue = card(t("chart.revenue"), { wide: true });
    this.orders = card(t("chart.orders"), { wide: true });
    this.revenue.body.dataset.chart = "revenue";
    this.orders.body.dataset.chart = "orders";
    this.carts = card(t("chart.orders_carts"), { wide: true });
    this.funnel = card(t("journey.title"));
    this.email = card(t("email.title"), { wide: true });
    this.quota = card(t("quota.title"));
    this.liveTable = card(t("live.title"), { wide: true });
    this.forYou = card(t("rec.title"), { wide: true });
    this.forYou.el.hidden = true;
    this.liveTable.set(this.liveFigures(ctx));
    panel.replaceChildren(h("div", { class: "cards" }, this.forYou.el), grid, h("div", { class: "cards" }, this.revenue.el, this.orders.el, this.carts.el,
      this.funnel.el, this.quota.el, this.email.el, this.liveTable.el));
    this.prevCache = new Map();
  },

  liveFigures(ctx) {
    const t = ctx.t;
    return h("div", { class: "scroll", role: "region", "aria-label": t("live.title"), tabindex: "0" },
      h("table", { id: "figures" },
        h("caption", { class: "visually-hidden", text: t("live.title") }),
        h("thead", {}, h("tr", {}, h("th", { scope: "col", text: t("live.figure") }),
          LIVE_PERIODS.map((p) => h("th", { scope: "col", class: "num", text: t(`live.${p}`) })))),
        h("tbody", {}, LIVE_ROWS.map((k) => h("tr", {}, h("th", { scope: "row", text: t(`figure.${k}`) }),
          LIVE_PERIODS.map((p) => h("td", { class: "num", "data-figure": `${k}.${p}` })))))));
  },

  // The WebSocket's figures (organisation currency, the store filter applied), straight into the table.
  live(ctx, msg, flash) {
    if (!msg || !msg.figures) return;
    const figs = ctx.state.store ? msg.figures.stores[ctx.state.store] : msg.figures.total;
    if (!figs) return;
    for (const k of LIVE_ROWS) for (const p of LIVE_PERIODS) {
      const v = figs[p][k];
      const cell = this.liveTable.el.querySelector(`td[data-figure="${k}.${p}"]`);
      setText(cell, typeof v === "number" ? fmt.number(v) : fmt.money(v), flash);
    }
  },

  async refresh(ctx, flash) {
    // Everything is asked at once (the API client queues it): the span is known from the organisation's
    // today, so the previous period, the series and the cards need not wait for the figures.
    const span = ctx.span();
    const current = sources(ctx, {}); // asked first: the queue serves in order
    const prevSpan = span && previousSpan(span.from, span.to);
    // A period ending today is so far: its figures are compared with the period before cut at the same time
    // (its nearest whole hour: figures are kept by the hour), not with whole days, which every morning read
    // as a fall on today (and a seventh of one on 7 days).
    const sofar = span && prevSpan && span.to === ctx.state.orgToday;
    this.today = ctx.state.period === "today";
    this.until = sofar ? sameTimeBefore(Date.now(), daysBetween(span.from, span.to)) : undefined;
    let before = Promise.resolve(null);
    if (prevSpan) {
      const key = JSON.stringify({ ...ctx.params(prevSpan, { segment: true }), until: this.until });
      if (!this.prevCache.has(key)) this.prevCache.set(key, sources(ctx, prevSpan, this.until));
      before = this.prevCache.get(key);
    }
    const jobs = [current.then((now) => Promise.all([this.drawFunnel(ctx, now.journey, now.customers), this.drawEmail(ctx, now.attribution, now.figures)]))];
    if (span) jobs.push(this.drawSeries(ctx, span));
    // The quota reads every order (it costs the most of the read budget): at most every 30 s when live.
    if (!flash || Date.now() - (this.quotaAt || 0) > QUOTA_EVERY_MS) { this.quotaAt = Date.now(); jobs.push(this.drawQuota(ctx)); }
    const now = await current;
    this.drawKpis(ctx, now, undefined, flash); // the values first; their changes once the previous period is in
    this.drawKpis(ctx, now, await before, false);
    if (!flash) jobs.push(drawRecommendations(ctx, this.forYou)); // on opening and on filter changes, not on every push
    await Promise.all(jobs);
  },

  drawKpis(ctx, now, before, flash) {
    for (const [id, , source, read, text] of KPIS) {
      const { value, delta, warn } = this.kpis[id];
      const body = now[source];
      // A money figure the server could not convert whole says what it leaves out (a missing rate).
      const note = body.error ? null : MONEY_FIELD[id] && body[MONEY_FIELD[id]] && body[MONEY_FIELD[id]].message;
      warn.hidden = !note;
      warn.textContent = note || "";
      if (body.error) { setText(value, "–", false); delta.textContent = body.error; delta.className = "kpi-change error"; continue; }
      // A figure the server cannot restrict to a segment is null, with its reason (segment=, docs/segments.md)
      const field = MONEY_FIELD[id] && source === "figures" ? MONEY_FIELD[id] : null;
      if (field && body[field] === null) {
        setText(value, "–", false);
        delta.className = "kpi-change";
        delta.textContent = (body.not_restricted && body.not_restricted[field]) || "";
        continue;
      }
      const n = read(body);
      setText(value, text(n, body), flash);
      if (before === undefined) continue;
      const old = before && !before[source].error ? read(before[source]) : null;
      const c = fmt.change(n, old);
      const better = LOWER_IS_BETTER.has(id) ? -c : c; // more abandonment is worse news
      delta.className = `kpi-change ${Math.abs(c) < 0.0005 ? "" : better > 0 ? "up" : better < 0 ? "down" : ""}`;
      delta.textContent = old === null ? ctx.t("kpi.no_previous") : this.versus(ctx, c, source);
      if (this.until && source === "figures") delta.dataset.until = this.until; else delete delta.dataset.until;
    }
  },

  // What a KPI's change is against: the previous period; for a period ending today, the figures (revenue,
  // orders, AOV) against the period before cut at this time, the rest (kept per day) against whole days.
  versus(ctx, c, source) {
    const change = c === null ? null : fmt.signedPercent(c);
    if (this.until && source === "figures") {
      if (this.today) {
        const time = fmt.time(this.until);
        return change === null ? ctx.t("kpi.was_zero_until", { time }) : ctx.t("kpi.vs_until", { change, time });
      }
      const when = fmt.dateTime(this.until);
      return change === null ? ctx.t("kpi.was_zero_previous_until", { when }) : ctx.t("kpi.vs_previous_until", { change, when });
    }
    if (this.today) return change === null ? ctx.t("kpi.was_zero_yesterday") : ctx.t("kpi.vs_yesterday", { change });
    return change === null ? ctx.t("kpi.was_zero") : ctx.t("kpi.vs_previous", { change });
  },

  async drawSeries(ctx, span) {
    const t = ctx.t;
    const grain = span.from === span.to ? "hour" : "day";
    const p = { ...ctx.params(span), granularity: grain };
    try {
      const [rev, ord] = await Promise.all([
        ctx.api.get("series", { ...p, metric: "gross_revenue" }), ctx.api.get("series", { ...p, metric: "paid_orders" })]);
      const xs = rev.points.map((pt) => timeOf(pt.t));
      const days = grain === "day";
      const labels = rev.points.map((pt) => pt.t);
      drawChart(this.revenue.body, { xs, days, labels, xLabel: t(days ? "chart.when" : "chart.hour"), series: [{ label: t("kpi.revenue"), values: rev.points.map((pt) => pt.value) }],
        format: (v) => fmt.money({ amount: v, currency: rev.currency, exponent: rev.exponent }) });
      for (const old of this.revenue.body.querySelectorAll(".warning")) old.remove();
      const gap = rev.points.find((pt) => pt.message);
      if (gap) this.revenue.body.append(h("p", { class: "warning", text: gap.message }));
      drawChart(this.orders.body, { xs, days, labels, xLabel: t(days ? "chart.when" : "chart.hour"), bars: true, series: [{ label: t("kpi.orders"), values: ord.points.map((pt) => pt.value) }],
        format: fmt.number });
      await this.drawCarts(ctx, span, ord.points);
    } catch (e) {
      this.revenue.set(errorLine(e.message));
      this.orders.set(errorLine(e.message));
    }
  },

  // Orders against carts (started, and abandoned) per span: the carts API sums a span, so a long
  // period is cut into at most 14 spans.
  async drawCarts(ctx, span, orderPoints) {
    const t = ctx.t;
    const parts = span.from === span.to ? [span] : spans(span.from, span.to, MOST_SPANS);
    const bodies = await Promise.all(parts.map((s) => ctx.cached("carts", { ...ctx.params(s, { segment: true }), limit: 1 })));
    const ordersIn = (s) => orderPoints.filter((pt) => pt.t.slice(0, 10) >= s.from && pt.t.slice(0, 10) <= s.to)
      .reduce((a, pt) => a + (pt.value ?? 0), 0); // null: an hour not begun yet
    if (parts.length === 1) { // one day: a line of one point draws nothing
      const [b] = bodies;
      drawBarList(this.carts.body, [["kpi.orders", ordersIn(parts[0])], ["carts.carts", b.carts], ["carts.abandoned", b.abandoned]]
        .map(([key, value]) => ({ key, label: t(key), value, text: fmt.number(value) })), "orders-carts-day");
      return;
    }
    drawChart(this.carts.body, {
      xs: parts.map((s) => timeOf(s.from)), days: true, xLabel: t("chart.from"),
      series: [
        { label: t("kpi.orders"), values: parts.map(ordersIn) },
        { label: t("carts.carts"), values: bodies.map((b) => b.carts) },
        { label: t("carts.abandoned"), values: bodies.map((b) => b.abandoned) },
      ],
      format: fmt.number,
    });
  },

  // The journey's steps are people per day (/journey); "purchased again" is the period's repeat
  // customers (/customers summary: bought in the period and before it, or twice in it). The journey's
  // own purchased_again counts two orders on one day, all but 0 in a real shop.
  drawFunnel(ctx, j, customers) {
    const t = ctx.t;
    if (j.error) { this.funnel.set(errorLine(j.error)); return; }
    const again = customers && !customers.error ? customers.summary.repeat_customers : j.purchased_again;
    const steps = [["visitors", j.visitors], ["added_to_cart", j.added_to_cart], ["purchased", j.purchased], ["purchased_again", again]];
    const top = Math.max(j.visitors, 1);
    const list = h("ol", { class: "funnel" }, steps.map(([k, n]) => {
      const bar = h("span", { class: "bar" });
      bar.style.width = `${Math.min(100, (100 * n) / top)}%`;
      return h("li", { "data-step": k }, h("span", { class: "label", text: t(`journey.${k}`) }),
        h("span", { class: "track" }, bar), h("span", { class: "num", text: `${fmt.number(n)} (${fmt.percent(n / top)})` }));
    }));
    this.funnel.set(list);
  },

  drawEmail(ctx, a, figures) {
    const t = ctx.t;
    if (a.error) { this.email.set(errorLine(a.error)); return; }
    const paid = figures.error ? 0 : figures.paid_orders;
    const rows = a.campaigns.map((c) => h("tr", {}, h("th", { scope: "row", text: c.campaign }),
      h("td", { class: "num", text: fmt.number(c.orders) }),
      h("td", { class: "num", text: paid ? fmt.percent(c.orders / paid) : "–" }),
      h("td", { class: "num", text: fmt.money(c.revenue) })));
    this.email.set(
      h("p", { text: t("email.summary", { orders: fmt.number(a.orders), share: paid ? fmt.percent(a.orders / paid) : "–",
        revenue: fmt.money(a.revenue), days: a.window_days }) }),
      rows.length ? h("div", { class: "scroll", role: "region", "aria-label": t("email.title"), tabindex: "0" },
        h("table", {}, h("caption", { class: "visually-hidden", text: t("email.title") }),
          h("thead", {}, h("tr", {}, [t("email.campaign"), t("kpi.orders"), t("email.share"), t("kpi.revenue")]
            .map((l, i) => h("th", { scope: "col", class: i ? "num" : null, text: l })))), h("tbody", {}, rows)))
        : h("p", { class: "empty", text: t("email.none") }));
  },

  async drawQuota(ctx) {
    const t = ctx.t;
    try {
      const q = await ctx.api.get("quota");
      const nodes = [h("p", { "data-quota": "count", text: t("quota.count", { count: fmt.number(q.paid_orders_30d) }) })];
      if (q.plan_limit) {
        nodes.push(h("meter", { min: "0", max: String(q.plan_limit), value: String(q.paid_orders_30d), high: String(0.8 * q.plan_limit),
          optimum: "0", "aria-label": t("quota.title") }),
        h("p", { text: t("quota.used", { used: fmt.percent(q.used), limit: fmt.number(q.plan_limit) }) }));
      } else nodes.push(h("p", { class: "muted", text: t("quota.no_limit") }));
      this.quota.set(nodes);
    } catch (e) { this.quota.set(errorLine(e.message)); }
  },
};

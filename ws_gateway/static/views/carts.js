// Carts: open now, abandoned, recovered, the latest carts and the most abandoned products.
import { card, errorLine, h, table } from "../dom.js";
import { customersOf, engageButton, saveSegmentButton } from "../engage.js";
import * as fmt from "../format.js";
import { segmentOf } from "../segment_of.js";
import { storeColumn } from "./products.js";

const BEST = 10;

export default {
  id: "carts",
  title: "view.carts",
  mount(panel, ctx) {
    const t = ctx.t;
    this.summary = card(t("carts.summary"), { wide: true });
    this.best = card(t("carts.best"), { wide: true });
    this.latest = card(t("carts.latest"), { wide: true });
    this.products = card(t("carts.most_abandoned"));
    this.latest.heading.append(" ", engageButton(t, "carts-customers", async () => {
      const body = await ctx.api.get("carts", { ...ctx.params({}, { segment: true }), limit: 1000 });
      return customersOf(body.latest_carts, { key: "person", amount: (c) => ({ amount: c.value, currency: c.currency }) });
    }), " ", saveSegmentButton(ctx, "carts-customers", async () => segmentOf("carts", {}, ctx.saveFilters())));
    panel.replaceChildren(h("div", { class: "cards" }, this.summary.el, this.best.el, this.latest.el, this.products.el));
  },
  async refresh(ctx) {
    const t = ctx.t;
    let b, f;
    try {
      const p = ctx.params({}, { segment: true });
      [b, f] = await Promise.all([ctx.api.get("carts", { ...p, limit: 20 }), ctx.api.get("figures", p)]);
    } catch (e) {
      this.summary.set(errorLine(e.message));
      return;
    }
    const stat = (key, n, value) => h("div", { class: "stat", "data-stat": key },
      h("span", { class: "stat-label", text: t(key) }), h("span", { class: "stat-value", text: fmt.number(n) }),
      value ? h("span", { class: "muted", text: fmt.money(value) }) : null);
    this.summary.set(h("div", { class: "stats" },
      stat("carts.open_now", b.open_now.carts, b.open_now.value),
      stat("carts.carts", b.carts, b.value),
      stat("carts.abandoned", b.abandoned, b.abandoned_value),
      stat("carts.recovered", b.recovered, b.recovered_value),
      stat("carts.purchased", b.purchased, b.purchased_value),
      stat("carts.orders", f.paid_orders, f.gross_revenue), // orders against carts: 4Dem's comparison
      h("div", { class: "stat" }, h("span", { class: "stat-label", text: t("kpi.abandonment") }),
        h("span", { class: "stat-value", text: fmt.percent(b.abandonment_rate) })),
      h("div", { class: "stat" }, h("span", { class: "stat-label", text: t("carts.recovery_rate") }),
        h("span", { class: "stat-value", text: fmt.percent(b.recovery_rate) }))));
    const cartColumns = [
      { label: t("col.last_activity"), value: (c) => fmt.dateTime(c.last) },
      { label: t("col.cart"), value: (c) => c.cart },
      { label: t("col.store"), value: (c) => c.store },
      { label: t("col.customer"), value: (c) => c.buyer || c.name || (c.person ?? "–") }, // as typed at the checkout, else their profile's, else the id
      { label: t("col.value"), value: (c) => fmt.money({ amount: c.value, currency: c.currency, exponent: c.exponent }), num: true },
    ];
    this.best.set(table(t("carts.best"), cartColumns, (b.best_carts ?? []).slice(0, BEST), t("carts.no_open")));
    this.latest.set(table(t("carts.latest"), [
      { label: t("col.last_activity"), value: (c) => fmt.dateTime(c.last) },
      { label: t("col.cart"), value: (c) => c.cart },
      { label: t("col.store"), value: (c) => c.store },
      { label: t("col.customer"), value: (c) => c.buyer || c.name || (c.person ?? "–") }, // as typed at the checkout, else their profile's, else the id
      { label: t("col.status"), value: (c) => t(`cart_status.${c.status}`) },
      { label: t("col.value"), value: (c) => fmt.money({ amount: c.value, currency: c.currency, exponent: c.exponent }), num: true },
    ], b.latest_carts, t("empty")));
    this.products.set(table(t("carts.most_abandoned"), [
      { label: t("col.product"), value: (r) => r.name || r.product }, // named as the latest cart naming it
      ...storeColumn(t, b.most_abandoned_products),
      { label: t("carts.carts"), value: (r) => fmt.number(r.carts), num: true },
    ], b.most_abandoned_products, t("empty")));
  },
};

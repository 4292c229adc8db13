// Orders: latest and best orders, orders and revenue by source.
import { card, errorLine, h, table } from "../dom.js";
import { customersOf, engageButton, saveSegmentButton } from "../engage.js";
import * as fmt from "../format.js";
import { segmentOf } from "../segment_of.js";

function ordersTable(t, caption, orders) {
  return table(caption, [
    { label: t("col.paid_at"), value: (o) => fmt.dateTime(o.paid_at) },
    { label: t("col.order"), value: (o) => o.order },
    { label: t("col.store"), value: (o) => o.store },
    // the name (else e-mail) typed at the checkout, else the customer id, else a guest
    { label: t("col.customer"), value: (o) => o.buyer || (o.customer ?? t("col.guest")) },
    { label: t("col.source"), value: (o) => o.source },
    { label: t("col.items"), value: (o) => fmt.number(o.items), num: true },
    { label: t("col.amount"), value: (o) => fmt.money(o.amount), num: true },
    { label: t("col.refunded"), value: (o) => (o.refunded.amount ? fmt.money(o.refunded) : ""), num: true },
  ], orders, t("empty"));
}

export default {
  id: "orders",
  title: "view.orders",
  mount(panel, ctx) {
    const t = ctx.t;
    this.latest = card(t("orders.latest"), { wide: true });
    this.best = card(t("orders.best"), { wide: true });
    this.sources = card(t("orders.by_source"));
    const fetchAll = async () => (await ctx.api.get("orders", { ...ctx.params({}, { segment: true }), sort: "latest", limit: 1000 })).orders;
    this.latest.heading.append(" ", engageButton(t, "orders-customers",
      async () => customersOf(await fetchAll(), { key: "customer", amount: (o) => o.amount })),
    " ", saveSegmentButton(ctx, "orders-customers", async () => {
      const body = await ctx.api.get("orders", { ...ctx.params({}, { segment: true }), limit: 1 });
      const total = Object.values(body.by_source).reduce((n, s) => n + s.orders, 0);
      return segmentOf("orders", { total }, ctx.saveFilters());
    }));
    panel.replaceChildren(h("div", { class: "cards" }, this.latest.el, this.best.el, this.sources.el));
  },
  async refresh(ctx) {
    const t = ctx.t;
    const p = ctx.params({}, { segment: true });
    try {
      const [latest, best] = await Promise.all([
        ctx.api.get("orders", { ...p, sort: "latest", limit: 20 }), ctx.api.get("orders", { ...p, sort: "best", limit: 10 })]);
      this.latest.set(ordersTable(t, t("orders.latest"), latest.orders));
      this.best.set(ordersTable(t, t("orders.best"), best.orders));
      const rows = Object.entries(latest.by_source).map(([s, v]) => ({ source: s, ...v }));
      this.sources.set(table(t("orders.by_source"), [
        { label: t("col.source"), value: (r) => r.source },
        { label: t("kpi.orders"), value: (r) => fmt.number(r.orders), num: true },
        { label: t("kpi.revenue"), value: (r) => fmt.money(r.revenue), num: true },
      ], rows, t("empty")));
    } catch (e) { this.latest.set(errorLine(e.message)); }
  },
};

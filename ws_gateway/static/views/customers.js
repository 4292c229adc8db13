// Customers: best by revenue, orders or items; registered and never bought; new vs returning.
import { card, errorLine, h, table } from "../dom.js";
import { engageButton, saveSegmentButton } from "../engage.js";
import * as fmt from "../format.js";
import { segmentOf } from "../segment_of.js";

const SORTS = ["revenue", "orders", "items"];

function customerRows(t, caption, rows) {
  return table(caption, [
    { label: t("col.customer"), value: (c) => c.customer },
    { label: t("col.name"), value: (c) => c.name ?? "" },
    { label: t("col.email"), value: (c) => c.email ?? "" },
    { label: t("kpi.orders"), value: (c) => fmt.number(c.orders), num: true },
    { label: t("col.items"), value: (c) => fmt.number(c.items), num: true },
    { label: t("kpi.revenue"), value: (c) => fmt.money(c.revenue), num: true },
    { label: t("col.last_order"), value: (c) => fmt.dateTime(c.last_order_at) },
  ], rows, t("empty"));
}

export default {
  id: "customers",
  title: "view.customers",
  mount(panel, ctx) {
    const t = ctx.t;
    this.sort = "revenue";
    this.best = card(t("customers.best"), { wide: true });
    this.summary = card(t("customers.summary"));
    this.never = card(t("customers.never_bought"), { wide: true });
    const select = h("select", { id: "customers-sort", "aria-label": t("customers.sort"), onchange: (ev) => {
      this.sort = ev.target.value;
      ctx.refresh();
    } }, SORTS.map((s) => h("option", { value: s, text: t(`customers.by_${s}`) })));
    this.best.heading.append(" ", select, " ", engageButton(t, "customers",
      async () => (await ctx.api.get("customers", { ...ctx.params({}, { segment: true }), sort: this.sort, limit: 1000 })).customers),
    " ", saveSegmentButton(ctx, "customers", async () => (this.shown
      ? segmentOf("best", { rows: this.shown.rows, sort: this.shown.sort }, this.shown.filters)
      : { reason: "save.reason_empty" })));
    this.never.heading.append(" ", engageButton(t, "never-bought",
      async () => (await ctx.api.get("customers", { ...ctx.params({}, { segment: true }), filter: "never_bought", limit: 1000 })).customers),
    " ", saveSegmentButton(ctx, "never-bought", async () => segmentOf("never_bought", {}, ctx.saveFilters())));
    panel.replaceChildren(h("div", { class: "cards" }, this.best.el, this.summary.el, this.never.el));
  },
  async refresh(ctx) {
    const t = ctx.t;
    const p = ctx.params({}, { segment: true });
    const asked = { sort: this.sort, filters: ctx.saveFilters() }; // what the rows answer, for "save as segment"
    try {
      const [best, never] = await Promise.all([
        ctx.api.get("customers", { ...p, sort: asked.sort, limit: 20 }),
        ctx.api.get("customers", { ...p, filter: "never_bought", limit: 20 })]);
      this.shown = { ...asked, rows: best.customers }; // "save as segment" reproduces the list as shown
      this.best.set(customerRows(t, t("customers.best"), best.customers));
      const s = best.summary;
      this.summary.set(h("dl", { class: "facts" },
        [["customers.customers", fmt.number(s.customers)], ["customers.new", fmt.number(s.new_customers)],
          ["customers.returning", fmt.number(s.returning_customers)], ["kpi.repeat", fmt.percent(s.repeat_purchase_rate)],
          ["customers.guest_orders", fmt.number(s.guest_orders)]]
          .map(([k, v]) => h("div", { "data-fact": k }, h("dt", { text: t(k) }), h("dd", { text: v })))));
      this.never.set(h("p", { text: t("customers.never_total", { count: fmt.number(never.total) }) }),
        table(t("customers.never_bought"), [
          { label: t("col.customer"), value: (c) => c.customer },
          { label: t("col.name"), value: (c) => c.name ?? "" },
          { label: t("col.email"), value: (c) => c.email ?? "" },
          { label: t("col.registered"), value: (c) => fmt.dateTime(c.registered_at) },
        ], never.customers, t("empty")));
    } catch (e) { this.best.set(errorLine(e.message)); }
  },
};

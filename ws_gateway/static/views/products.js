// Products: top by revenue and by units, most abandoned, bought together.
import { download, toCsv } from "../csv.js";
import { card, errorLine, h, table } from "../dom.js";
import * as fmt from "../format.js";

// A product's id is its store's own: two stores selling "Gift card" are two rows. With several stores among
// the rows, a column says which store each is (the latest order or cart naming it).
export function storeColumn(t, rows) {
  return new Set((rows ?? []).map((r) => r.store)).size > 1 ? [{ label: t("col.store"), value: (r) => r.store ?? "" }] : [];
}

function productsTable(t, caption, rows) {
  return table(caption, [
    { label: t("col.product"), value: (r) => r.name || r.product },
    ...storeColumn(t, rows),
    { label: t("kpi.revenue"), value: (r) => fmt.money(r.revenue), num: true },
    { label: t("col.units"), value: (r) => fmt.number(r.units), num: true },
    { label: t("kpi.orders"), value: (r) => fmt.number(r.orders), num: true },
  ], rows, t("empty"));
}

export default {
  id: "products",
  title: "view.products",
  mount(panel, ctx) {
    const t = ctx.t;
    this.revenue = card(t("products.by_revenue"), { wide: true });
    this.units = card(t("products.by_units"), { wide: true });
    this.abandoned = card(t("carts.most_abandoned"));
    this.pairs = card(t("products.pairs"), { wide: true }); // two names a row: the narrow card cut the columns off
    this.revenue.heading.append(" ", h("button", { type: "button", class: "engage", "data-export": "products", onclick: async () => {
      const b = await ctx.api.get("products", { ...ctx.params({}), sort: "revenue", limit: 1000 });
      download("storepulse-products.csv", toCsv(["product", "name", "store", "revenue_minor", "currency", "units", "orders"],
        b.products.map((r) => [r.product, r.name ?? "", r.store ?? "", r.revenue.amount, r.revenue.currency, r.units, r.orders])));
    } }, t("engage.export_products")));
    panel.replaceChildren(h("div", { class: "cards" }, this.revenue.el, this.units.el, this.abandoned.el, this.pairs.el));
  },
  async refresh(ctx) {
    const t = ctx.t;
    const p = ctx.params({});
    try {
      const [rev, units, carts, pairs] = await Promise.all([
        ctx.api.get("products", { ...p, sort: "revenue", limit: 10 }), ctx.api.get("products", { ...p, sort: "units", limit: 10 }),
        ctx.api.get("carts", { ...p, limit: 10 }), ctx.api.get("pairs", { ...p, sort: "orders", limit: 10 })]);
      this.revenue.set(productsTable(t, t("products.by_revenue"), rev.products));
      this.units.set(productsTable(t, t("products.by_units"), units.products));
      this.abandoned.set(table(t("carts.most_abandoned"), [
        { label: t("col.product"), value: (r) => r.name || r.product },
        ...storeColumn(t, carts.most_abandoned_products),
        { label: t("carts.carts"), value: (r) => fmt.number(r.carts), num: true },
      ], carts.most_abandoned_products, t("empty")));
      this.pairs.set(table(t("products.pairs"), [
        { label: t("col.product"), value: (r) => `${r.a_name || r.a} + ${r.b_name || r.b}` },
        { label: t("kpi.orders"), value: (r) => fmt.number(r.orders), num: true },
        { label: t("products.lift"), value: (r) => fmt.decimal(r.lift), num: true },
      ], pairs.pairs, t("empty")));
    } catch (e) { this.revenue.set(errorLine(e.message)); }
  },
};

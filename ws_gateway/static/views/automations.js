// Automations (issue 10's API): definitions, deliveries and dead letters. A server without the
// automations API (404) shows "not available on this server".
import { card, errorLine, h, table } from "../dom.js";
import * as fmt from "../format.js";

const items = (body, key) => (Array.isArray(body) ? body : body[key] ?? []);

export default {
  id: "automations",
  title: "view.automations",
  mount(panel, ctx) {
    const t = ctx.t;
    this.defs = card(t("automations.list"), { wide: true });
    this.deliveries = card(t("automations.deliveries"), { wide: true });
    this.dead = card(t("automations.dead"), { wide: true });
    panel.replaceChildren(h("div", { class: "cards" }, this.defs.el, this.deliveries.el, this.dead.el));
  },
  async refresh(ctx) {
    const t = ctx.t;
    let defs;
    try { defs = await ctx.api.optional("automations"); } catch (e) { this.defs.set(errorLine(e.message)); return; }
    const available = defs !== null;
    this.deliveries.el.hidden = this.dead.el.hidden = !available;
    if (!available) {
      this.defs.set(h("p", { class: "unavailable", "data-unavailable": "automations", text: t("unavailable") }));
      return;
    }
    this.defs.set(table(t("automations.list"), [
      { label: t("segments.name"), value: (a) => a.name ?? a.id },
      { label: t("automations.trigger"), value: (a) => (typeof a.trigger === "string" ? a.trigger : JSON.stringify(a.trigger ?? a.on ?? "")) },
      { label: t("automations.channel"), value: (a) => a.channel ?? "" },
      { label: t("automations.enabled"), value: (a) => (a.enabled === false ? t("no") : t("yes")) },
    ], items(defs, "automations"), t("automations.none")));
    const deliveryTable = (caption, rows) => table(caption, [
      { label: t("automations.delivery"), value: (d) => d.id },
      { label: t("automations.automation"), value: (d) => d.automation ?? "" },
      { label: t("automations.channel"), value: (d) => d.channel ?? "" },
      { label: t("col.status"), value: (d) => d.status ?? "" },
      { label: t("automations.attempts"), value: (d) => fmt.number((d.attempts ?? []).length), num: true },
      { label: t("connections.reason"), value: (d) => { const a = d.attempts ?? []; return a.length ? a[a.length - 1].error ?? "" : ""; } },
    ], rows, t("empty"));
    try {
      const [all, dead] = await Promise.all([ctx.api.get("deliveries", { limit: 20 }), ctx.api.get("deliveries", { status: "dead", limit: 20 })]);
      this.deliveries.set(deliveryTable(t("automations.deliveries"), items(all, "deliveries")));
      this.dead.set(deliveryTable(t("automations.dead"), items(dead, "deliveries")));
    } catch (e) { this.deliveries.set(errorLine(e.message)); }
  },
};

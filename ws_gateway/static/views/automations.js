// Automations (issue 10's API): definitions, the latest deliveries, and dead letters with replay. A
// server without the automations API (404) shows "not available on this server".
import { card, errorLine, h, table } from "../dom.js";
import * as fmt from "../format.js";
import { segmentName } from "../i18n.js";

// What each automation came to in the period (GET automations' `results`, one for each automation); a
// cart's recovery only for cart reminders, "–" for the others.
function resultColumns(t, results) {
  const carts = (a) => a.trigger === "cart.abandoned" && results[a.id];
  return [
    { label: t("automations.delivered"), value: (a) => (results[a.id] ? fmt.number(results[a.id].deliveries.delivered) : "–"), num: true },
    { label: t("automations.recovered"), value: (a) => (carts(a) ? fmt.number(carts(a).recovered_carts) : "–"), num: true },
    { label: t("automations.recovered_value"), value: (a) => (carts(a) ? fmt.money(carts(a).recovered_value) : "–"), num: true },
  ];
}

const RESULTS_EVERY_MS = 30000;

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
  async refresh(ctx, flash) {
    const t = ctx.t;
    let defs;
    // With the period's results (delivered, carts bought after a reminder), which read the delivery log
    // (~0.55 s at 20,000 deliveries, bench/automation_results.py): on opening and on filter changes, and at most every 30 s when live.
    const fresh = !flash || !this.results || Date.now() - this.resultsAt > RESULTS_EVERY_MS;
    try { defs = await ctx.api.optional("automations", fresh ? ctx.params() : undefined); } catch (e) { this.defs.set(errorLine(e.message)); return; }
    if (defs && defs.results) { this.results = defs.results; this.resultsAt = Date.now(); } else if (defs && !fresh) defs.results = this.results;
    const available = defs !== null;
    this.deliveries.el.hidden = this.dead.el.hidden = !available;
    if (!available) {
      this.defs.set(h("p", { class: "unavailable", "data-unavailable": "automations", text: t("unavailable") }));
      return;
    }
    // a trigger's segment by its name in the page's language (the filter's list; read here when this
    // view is the first one opened, before the filter has it)
    const segments = ctx.segments.length ? ctx.segments : (await ctx.api.optional("segments").catch(() => null))?.segments ?? [];
    const named = new Map(segments.map((s) => [s.id, s]));
    this.defs.set(table(t("automations.list"), [
      { label: t("segments.name"), value: (a) => a.id },
      { label: t("automations.trigger"), value: (a) => a.trigger ?? "" },
      { label: t("automations.channel"), value: (a) => (a.send ?? []).join(", ") },
      { label: t("filter.segment"), value: (a) => (a.segment ? segmentName(named.get(a.segment) ?? { id: a.segment }) : "") },
      { label: t("automations.wait"), value: (a) => a.wait ?? "" },
      ...(defs.results ? resultColumns(t, defs.results) : []),
    ], defs.automations ?? [], t("automations.none")));
    const columns = [
      { label: t("automations.fired"), value: (d) => fmt.dateTime(d.fired_at) },
      { label: t("automations.automation"), value: (d) => d.automation ?? "" },
      { label: t("automations.channel"), value: (d) => d.channel ?? "" },
      // the customer by name, else e-mail (from their profile when the action fired), else their id
      { label: t("col.customer"), value: (d) => d.payload?.name || d.payload?.email || d.subject || "" },
      { label: t("col.status"), value: (d) => (d.status ? t(`delivery_status.${d.status}`) : "") },
      { label: t("automations.attempts"), value: (d) => fmt.number((d.attempts ?? []).length), num: true },
      { label: t("connections.reason"), value: (d) => { const a = d.attempts ?? []; return a.length ? a[a.length - 1].error ?? "" : ""; } },
    ];
    try {
      const [all, dead] = await Promise.all([ctx.api.get("deliveries", { limit: 20 }), ctx.api.get("deliveries", { status: "dead", limit: 20 })]);
      this.deliveries.set(table(t("automations.deliveries"), columns, all.deliveries ?? [], t("empty")));
      const replay = (d) => h("button", { type: "button", class: "engage", onclick: async (ev) => {
        ev.currentTarget.disabled = true;
        try { await ctx.api.send("POST", `deliveries/${encodeURIComponent(d.id)}/replay`); ctx.refresh(); } catch (e) {
          this.dead.body.append(errorLine(e.message));
        }
      } }, t("automations.replay", { id: d.id }));
      const rows = dead.deliveries ?? [];
      this.dead.set(table(t("automations.dead"), columns, rows, t("empty")),
        rows.length ? h("div", { class: "pick", role: "group", "aria-label": t("automations.dead") }, rows.map(replay)) : null);
    } catch (e) { this.deliveries.set(errorLine(e.message)); }
  },
};

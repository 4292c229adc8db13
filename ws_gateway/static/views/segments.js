// Segments (issue 9's API, docs/segments.md): live counts, a segment's members (and the server's CSV
// of them), its history of entries and exits, and a rule to preview and save. A server without the
// segments API (404) shows "not available on this server".
import { download } from "../csv.js";
import { card, errorLine, h, table } from "../dom.js";
import * as fmt from "../format.js";
import { bySegmentName, segmentName } from "../i18n.js";

const DAY_MS = 24 * 3600 * 1000;
const EXAMPLE = '{"all": [{"orders": {"gte": 2}}, {"spent": {"gte": "100.00", "within": "90d"}}]}';

export default {
  id: "segments",
  title: "view.segments",
  mount(panel, ctx) {
    const t = ctx.t;
    this.selected = null;
    this.list = card(t("segments.list"), { wide: true });
    this.members = card(t("segments.members"), { wide: true });
    this.history = card(t("segments.history"), { wide: true });
    this.builder = card(t("segments.builder"), { wide: true });
    const rule = h("textarea", { id: "segment-rule", rows: "3", cols: "60", "aria-label": t("segments.rule") });
    rule.value = EXAMPLE;
    const name = h("input", { id: "segment-name", type: "text", "aria-label": t("segments.name"), placeholder: t("segments.name") });
    const result = h("div", { role: "status" });
    const parse = () => { try { return JSON.parse(rule.value); } catch (e) { throw new Error(t("segments.bad_json", { error: e.message })); } };
    const act = (fn) => async () => { try { await fn(); } catch (e) { result.replaceChildren(errorLine(e.message)); } };
    const preview = act(async () => {
      const p = await ctx.api.send("POST", "segments/preview", { rule: parse() });
      result.replaceChildren(h("p", { "data-preview": "count", text: t("segments.preview_count", { count: fmt.number(p.members) }) }),
        h("p", { class: "muted", text: (p.first ?? []).map((c) => (typeof c === "string" ? c : c.customer)).join(", ") }));
    });
    const save = act(async () => {
      const id = name.value.trim().toLowerCase().replace(/[^a-z0-9_-]+/g, "-").replace(/^-|-$/g, "");
      if (!id) throw new Error(t("segments.name_needed"));
      await ctx.api.send("PUT", `segments/${encodeURIComponent(id)}`, { name: name.value.trim(), rule: parse() });
      result.replaceChildren(h("p", { text: t("segments.saved", { name: name.value.trim() }) }));
      ctx.refresh();
    });
    this.builder.set(h("p", { class: "muted", text: t("segments.rule_help") }), rule,
      h("div", { class: "row" }, h("button", { type: "button", class: "engage", onclick: preview }, t("segments.preview")),
        name, h("button", { type: "button", class: "engage", onclick: save }, t("segments.save"))), result);
    panel.replaceChildren(h("div", { class: "cards" }, this.list.el, this.members.el, this.history.el, this.builder.el));
  },
  async refresh(ctx) {
    const t = ctx.t;
    let body;
    try { body = await ctx.api.optional("segments"); } catch (e) { this.list.set(errorLine(e.message)); return; }
    const available = body !== null;
    this.builder.el.hidden = !available;
    if (!available) {
      this.list.set(h("p", { class: "unavailable", "data-unavailable": "segments", text: t("unavailable") }));
      this.members.el.hidden = this.history.el.hidden = true;
      return;
    }
    const segments = [...(body.segments ?? [])].sort((a, b) => bySegmentName(a, b, fmt.getLocale()));
    const pick = (s) => h("button", { type: "button", class: "link", "aria-pressed": String(this.selected === s.id),
      onclick: () => { this.selected = s.id; ctx.refresh(); } }, segmentName(s));
    this.list.set(table(t("segments.list"), [
      { label: t("segments.name"), value: pick },
      { label: t("segments.count"), value: (s) => fmt.number(s.members), num: true },
      { label: t("segments.as_of"), value: (s) => fmt.dateTime(s.as_of) },
      { label: t("segments.predefined"), value: (s) => (s.predefined ? t("yes") : t("no")) },
    ], segments, t("segments.none")));
    this.members.el.hidden = this.history.el.hidden = this.selected === null;
    if (this.selected === null) return;
    const id = encodeURIComponent(this.selected);
    try {
      const [m, c] = await Promise.all([ctx.api.get(`segments/${id}/members`, { limit: 50 }), ctx.api.get(`segments/${id}/changes`, { from: new Date(Date.now() - DAY_MS).toISOString(), limit: 1000 })]);
      const exportCsv = h("button", { type: "button", class: "engage", "data-export": "segment", onclick: async () => {
        const res = await fetch(ctx.api.url(`segments/${id}/members`, { format: "csv" }), { headers: { Authorization: `Bearer ${ctx.api.token}` } });
        download(`storepulse-segment-${this.selected}.csv`, await res.text());
      } }, t("engage.export"));
      this.members.set(exportCsv, table(t("segments.members"), [
        { label: t("col.customer"), value: (r) => r.customer },
        { label: t("col.email"), value: (r) => r.email ?? "" },
        { label: t("col.name"), value: (r) => r.name ?? "" },
        { label: t("kpi.orders"), value: (r) => fmt.number(r.orders), num: true },
        { label: t("segments.spent"), value: (r) => fmt.money(r.spent), num: true },
        { label: t("col.last_order"), value: (r) => fmt.dateTime(r.last_order) },
        { label: t("segments.entered"), value: (r) => fmt.dateTime(r.entered_at) },
      ], m.members ?? [], t("empty")));
      this.history.set(table(t("segments.history"), [
        { label: t("segments.at"), value: (r) => fmt.dateTime(r.at) },
        { label: t("col.customer"), value: (r) => r.customer },
        { label: t("segments.change"), value: (r) => t(`segments.${r.change}`) },
        { label: t("segments.cause"), value: (r) => r.cause ?? "" },
      ], (c.changes ?? []).slice(-50).reverse(), t("empty"))); // the API lists oldest first: the latest 50, newest on top
    } catch (e) { this.members.set(errorLine(e.message)); }
  },
};

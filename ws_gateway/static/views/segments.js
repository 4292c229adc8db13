// Segments (issue 9's API): live counts, a segment's members and their CSV export. A server without
// the segments API (404) shows "not available on this server".
import { download } from "../csv.js";
import { card, errorLine, h, table } from "../dom.js";
import * as fmt from "../format.js";

export default {
  id: "segments",
  title: "view.segments",
  mount(panel, ctx) {
    const t = ctx.t;
    this.selected = null;
    this.list = card(t("segments.list"), { wide: true });
    this.members = card(t("segments.members"), { wide: true });
    panel.replaceChildren(h("div", { class: "cards" }, this.list.el, this.members.el));
  },
  async refresh(ctx) {
    const t = ctx.t;
    let body;
    try { body = await ctx.api.optional("segments"); } catch (e) { this.list.set(errorLine(e.message)); return; }
    if (body === null) {
      this.list.set(h("p", { class: "unavailable", "data-unavailable": "segments", text: t("unavailable") }));
      this.members.el.hidden = true;
      return;
    }
    const segments = body.segments ?? [];
    const pick = (s) => h("button", { type: "button", class: "link", onclick: () => { this.selected = s.id; ctx.refresh(); } }, s.name ?? s.id);
    const rows = table(t("segments.list"), [
      { label: t("segments.name"), value: (s) => s.name ?? s.id },
      { label: t("segments.count"), value: (s) => fmt.number(s.members), num: true },
      { label: t("segments.as_of"), value: (s) => fmt.dateTime(s.as_of) },
      { label: t("segments.predefined"), value: (s) => (s.predefined ? t("yes") : t("no")) },
    ], segments, t("segments.none"));
    this.list.set(rows, h("div", { class: "pick", "aria-label": t("segments.members") }, segments.map(pick)));
    this.members.el.hidden = this.selected === null;
    if (this.selected === null) return;
    try {
      const id = encodeURIComponent(this.selected);
      const m = await ctx.api.get(`segments/${id}/members`, { limit: 50 });
      const exportCsv = h("button", { type: "button", class: "engage", "data-export": "segment", onclick: async () => {
        const res = await fetch(ctx.api.url(`segments/${id}/members`, { format: "csv" }), { headers: { Authorization: `Bearer ${ctx.api.token}` } });
        download(`storepulse-segment-${this.selected}.csv`, await res.text());
      } }, t("engage.export"));
      this.members.set(exportCsv, table(t("segments.members"), [
        { label: t("col.customer"), value: (c) => c.customer },
        { label: t("col.email"), value: (c) => c.email ?? "" },
        { label: t("col.name"), value: (c) => c.name ?? "" },
        { label: t("kpi.orders"), value: (c) => fmt.number(c.orders), num: true },
        { label: t("segments.entered"), value: (c) => fmt.dateTime(c.entered_at) },
      ], m.members ?? [], t("empty")));
    } catch (e) { this.members.set(errorLine(e.message)); }
  },
};

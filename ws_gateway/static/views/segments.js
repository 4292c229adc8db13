// Segments (issue 9's API, docs/segments.md): live counts; a chosen segment's rule (to edit, copy or
// delete), its entries and exits over the period (GET .../growth), its members (and the server's CSV
// of them); and a rule to preview and save. A server without the segments API (404) shows "not
// available on this server".
import { drawBarList, drawChart, timeOf } from "../charts.js";
import { download } from "../csv.js";
import { card, errorLine, h, table } from "../dom.js";
import * as fmt from "../format.js";
import { bySegmentName, segmentName } from "../i18n.js";
import { mountBuilder, ruleText } from "../rule_builder.js";
import { settle } from "../settle.js";

const GROWTH_EVERY_MS = 10000; // while live, the chosen segment's growth is asked again at most this often
const EXAMPLE = '{"all": [{"orders": {"gte": 2}}, {"spent": {"gte": "100.00", "within": "90d"}}]}';

export default {
  id: "segments",
  title: "view.segments",
  mount(panel, ctx) {
    const t = ctx.t;
    this.selected = null;
    this.editing = null; // the id a save replaces ("Edit"); null: a new segment named by its name
    this.list = card(t("segments.list"), { wide: true });
    this.detail = card(t("segments.chosen"), { wide: true });
    // kept across refreshes: the chart redraws in place, and an opened rule stays open
    this.chart = h("div", { class: "chart", "data-chart": "segment-growth" });
    this.rule = h("pre", { class: "rule" });
    this.ruleBox = h("details", {}, h("summary", { text: t("segments.rule_shown") }), this.rule);
    this.members = card(t("segments.members"), { wide: true });
    this.history = card(t("segments.history"), { wide: true });
    this.builder = card(t("segments.builder"), { wide: true });
    const rule = h("textarea", { id: "segment-rule", rows: "3", cols: "60", "aria-label": t("segments.rule") });
    const fit = () => { rule.rows = String(Math.max(3, Math.min(12, rule.value.split("\n").length))); };
    // Conditions picked from lists write the JSON below; JSON typed there is shown in them when it can be.
    const form = h("div", { class: "builder", "data-builder": "form" });
    const builder = mountBuilder(form, t, {
      segments: () => this.customerSegments ?? [],
      currency: () => ctx.state.last?.currency ?? "",
      onRule: (r) => { rule.value = ruleText(r); fit(); },
    });
    const show = (r) => { rule.value = ruleText(r); fit(); builder.load(r); };
    rule.addEventListener("change", () => { try { builder.load(JSON.parse(rule.value)); } catch { /* not JSON yet: Preview says so */ } });
    show(JSON.parse(EXAMPLE));
    const name = h("input", { id: "segment-name", type: "text", size: "40", "aria-label": t("segments.name"), placeholder: t("segments.name") });
    const result = h("div", { role: "status" });
    const parse = () => { try { return JSON.parse(rule.value); } catch (e) { throw new Error(t("segments.bad_json", { error: e.message })); } };
    // the server's 400 names the JSON path of what is wrong: the condition it names is marked too
    const act = (fn) => async () => {
      try { await fn(); builder.mark("", "rule"); } catch (e) { result.replaceChildren(errorLine(e.message)); builder.mark(e.message, "rule"); }
    };
    const preview = act(async () => {
      const p = await ctx.api.send("POST", "segments/preview", { rule: parse() });
      result.replaceChildren(h("p", { "data-preview": "count", text: t("segments.preview_count", { count: fmt.number(p.members) }) }),
        notKept(p.not_kept), h("p", { class: "muted", text: (p.first ?? []).map((c) => (typeof c === "string" ? c : c.customer)).join(", ") }));
    });
    // what the rule reads of the past that no segment kept (the server says): saved, it counts from then on
    const notKept = (what) => (what && what.length ? h("p", { class: "warning", "data-not-kept": "", text: t("segments.not_kept", { what: what.join("; ") }) }) : null);
    const editing = h("p", { class: "muted", "data-editing": "" });
    const save = act(async () => {
      const id = this.editing ?? name.value.trim().toLowerCase().replace(/[^a-z0-9_-]+/g, "-").replace(/^-|-$/g, "");
      if (!id || !name.value.trim()) throw new Error(t("segments.name_needed"));
      const saved = { name: name.value.trim(), rule: parse() };
      const answer = await ctx.api.send("PUT", `segments/${encodeURIComponent(id)}`, saved);
      result.replaceChildren(h("p", { text: t("segments.saved", { name: saved.name }) }), notKept(answer.not_kept));
      this.edit(null);
      const same = JSON.stringify(saved.rule);
      await settle(ctx, "segments", (b) => (b.segments ?? []).some((x) => x.id === id && x.name === saved.name && JSON.stringify(x.rule) === same));
      ctx.segmentsChanged();
    });
    // Fills the builder with a segment's rule: to replace it (`id`), or as a copy to save under a new name.
    this.edit = (s, id = null) => {
      this.editing = id;
      editing.textContent = id ? t("segments.editing", { name: segmentName(s) }) : "";
      if (!s) return;
      show(s.rule);
      name.value = id ? segmentName(s) : t("segments.copy_of", { name: segmentName(s) });
      result.replaceChildren();
      this.builder.el.scrollIntoView({ block: "nearest" });
      rule.focus();
    };
    this.builder.set(h("p", { class: "muted", text: t("segments.rule_help") }), editing, form,
      h("label", { for: "segment-rule", class: "muted", text: t("segments.rule") }), rule,
      h("div", { class: "row" }, h("button", { type: "button", class: "engage", onclick: preview }, t("segments.preview")),
        name, h("button", { type: "button", class: "engage", onclick: save }, t("segments.save"))), result);
    panel.replaceChildren(h("div", { class: "cards" }, this.list.el, this.detail.el, this.members.el, this.history.el, this.builder.el));
  },
  async refresh(ctx, flash) {
    const t = ctx.t;
    let body;
    try { body = await ctx.api.optional("segments"); } catch (e) { this.list.set(errorLine(e.message)); return; }
    const available = body !== null;
    this.builder.el.hidden = !available || ctx.readOnly; // a share link neither previews nor saves (POSTs)
    if (!available) {
      this.list.set(h("p", { class: "unavailable", "data-unavailable": "segments", text: t("unavailable") }));
      this.detail.el.hidden = this.members.el.hidden = this.history.el.hidden = true;
      return;
    }
    const segments = [...(body.segments ?? [])].sort((a, b) => bySegmentName(a, b, fmt.getLocale()));
    this.customerSegments = segments.filter((s) => s.subject === "customer").map((s) => ({ id: s.id, label: segmentName(s) }));
    const pick = (s) => h("button", { type: "button", class: "link", "aria-pressed": String(this.selected === s.id),
      onclick: () => { this.selected = s.id; ctx.refresh(); } }, segmentName(s));
    // one clock for every count (the watermark they are exact for), said once above them
    const asOf = body.as_of ? h("p", { class: "muted", "data-as-of": body.as_of, text: t("segments.as_of", { time: fmt.dateTime(body.as_of) }) }) : null;
    this.list.set(asOf, table(t("segments.list"), [
      { label: t("segments.name"), value: pick },
      { label: t("segments.count"), value: (s) => fmt.number(s.members), num: true },
      { label: t("segments.predefined"), value: (s) => (s.predefined ? t("yes") : t("no")) },
    ], segments, t("segments.none")));
    const chosen = segments.find((s) => s.id === this.selected);
    if (!chosen) this.selected = null; // deleted meanwhile
    this.detail.el.hidden = this.members.el.hidden = this.history.el.hidden = !chosen;
    if (!chosen) return;
    const id = encodeURIComponent(chosen.id);
    try {
      const params = ctx.params();
      const again = !flash || !this.grown || this.grown.key !== `${chosen.id}|${JSON.stringify(params)}`
        || Date.now() - this.grown.at > GROWTH_EVERY_MS;
      const [m, g] = await Promise.all([ctx.api.get(`segments/${id}/members`, { limit: 50 }),
        again ? ctx.api.get(`segments/${id}/growth`, { ...params, limit: 50 }) : this.grown.body]);
      if (again) this.grown = { key: `${chosen.id}|${JSON.stringify(params)}`, at: Date.now(), body: g };
      this.showDetail(ctx, chosen, g);
      const exportCsv = h("button", { type: "button", class: "engage", "data-export": "segment", onclick: async () => {
        const res = await fetch(ctx.api.url(`segments/${id}/members`, { format: "csv" }), { headers: { Authorization: `Bearer ${ctx.api.token}` } });
        download(`storepulse-segment-${chosen.id}.csv`, await res.text());
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
      ], g.latest ?? [], t("empty"))); // the newest 50 of the period, newest first
    } catch (e) { this.detail.set(errorLine(e.message)); }
  },
  // The chosen segment: its rule and what to do with it, and its entries and exits over the period, per
  // day (exits drawn below the axis) or, for one day, as two bars.
  showDetail(ctx, s, g) {
    const t = ctx.t;
    this.detail.heading.textContent = segmentName(s);
    const mine = !s.predefined && s.subject === "customer";
    const remove = async (ev) => {
      if (!window.confirm(t("segments.confirm_delete", { name: segmentName(s) }))) return;
      ev.currentTarget.disabled = true;
      try {
        await ctx.api.send("DELETE", `segments/${encodeURIComponent(s.id)}`);
        this.detail.body.append(h("p", { role: "status", text: t("segments.deleted", { name: segmentName(s) }) }));
        await settle(ctx, "segments", (b) => !(b.segments ?? []).some((x) => x.id === s.id));
        ctx.segmentsChanged();
      } catch (e) { this.detail.body.append(errorLine(e.message)); }
    };
    const actions = s.subject === "customer" && !ctx.readOnly ? h("div", { class: "row" },
      h("button", { type: "button", class: "engage", "data-act": "copy", onclick: () => this.edit(s) }, t("segments.edit_copy")),
      mine ? h("button", { type: "button", class: "engage", "data-act": "edit", onclick: () => this.edit(s, s.id) }, t("segments.edit")) : null,
      mine ? h("button", { type: "button", class: "engage", "data-act": "delete", onclick: remove }, t("segments.delete")) : null) : null;
    const chart = this.chart;
    this.rule.textContent = ruleText(s.rule);
    this.rule.dataset.rule = s.id;
    this.detail.set(
      h("p", { "data-growth": "summary", text: t("segments.growth_summary", { entered: fmt.number(g.entered), exited: fmt.number(g.exited),
        net: `${g.net > 0 ? "+" : g.net < 0 ? "\u2212" : ""}${fmt.number(Math.abs(g.net))}`, members: fmt.number(s.members) }) }),
      chart,
      this.ruleBox,
      actions);
    const days = g.days ?? [];
    if (days.length === 1) {
      drawBarList(chart, [{ key: "entered", label: t("segments.entered"), value: days[0].entered, text: fmt.number(days[0].entered) },
        { key: "exited", label: t("segments.exited"), value: days[0].exited, text: fmt.number(days[0].exited) }], "segment-growth");
    } else {
      drawChart(chart, { xs: days.map((d) => timeOf(d.day)), days: true, bars: true, xLabel: t("chart.when"),
        format: (v) => fmt.number(Math.abs(v)), series: [{ label: t("segments.entered"), values: days.map((d) => d.entered) },
          { label: t("segments.exited"), values: days.map((d) => -d.exited) }] });
    }
  },
};

// Automations (issue 10's API): definitions, the latest deliveries, and dead letters with replay. A
// server without the automations API (404) shows "not available on this server".
import { definitionText, fresh as newAutomation, mountAutomationForm } from "../automation_form.js";
import { card, errorLine, h, table } from "../dom.js";
import * as fmt from "../format.js";
import { bySegmentName, segmentName } from "../i18n.js";
import { settle } from "../settle.js";

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

// A listed definition as text that does not depend on its keys' order (the listing writes them in its own).
function canonical(a) {
  const sorted = (x) => (Array.isArray(x) ? x.map(sorted) : x && typeof x === "object"
    ? Object.fromEntries(Object.keys(x).sort().map((k) => [k, sorted(x[k])])) : x);
  return JSON.stringify(sorted(a));
}

export default {
  id: "automations",
  title: "view.automations",
  mount(panel, ctx) {
    const t = ctx.t;
    this.defs = card(t("automations.list"), { wide: true });
    this.deliveries = card(t("automations.deliveries"), { wide: true });
    this.dead = card(t("automations.dead"), { wide: true });
    this.dead.el.dataset.card = "dead";
    this.editor = card(t("auto.new"), { wide: true });
    this.channels = card(t("channels.title"), { wide: true });
    this.channels.el.dataset.card = "channels";
    this.choices = { segments: [], channels: [] };
    this.editing = null; // the id a save replaces; null: a new automation under the id typed
    this.listed = new Map(); // id -> canonical(listed definition), as last read
    const json = h("textarea", { id: "automation-json", rows: "6", cols: "60", "aria-label": t("auto.json") });
    const fit = () => { json.rows = String(Math.max(4, Math.min(16, json.value.split("\n").length))); };
    const fields = h("div", { class: "automation-form", "data-automation": "form" });
    const form = mountAutomationForm(fields, t, { choices: () => this.choices,
      onChange: (d) => { json.value = definitionText(d); fit(); } });
    json.addEventListener("change", () => { try { form.load(JSON.parse(json.value)); } catch { /* not JSON yet: Save says so */ } });
    const id = h("input", { id: "automation-id", type: "text", size: "30", "aria-label": t("auto.id"), placeholder: t("auto.id") });
    const note = h("span", { class: "muted", "data-editing": "" });
    const again = h("button", { type: "button", class: "link", hidden: true, onclick: () => this.edit(newAutomation()) }, t("auto.start_new"));
    const result = h("div", { role: "status" });
    this.form = form;
    // Shows a definition in the form: to replace it (`id`), or a new one.
    this.edit = (definition, editing = null) => {
      this.editing = editing;
      note.textContent = editing ? t("auto.editing", { id: editing }) : "";
      again.hidden = editing === null;
      id.value = editing ?? "";
      id.disabled = editing !== null;
      form.load(definition);
      result.replaceChildren();
      this.editor.heading.textContent = editing ? t("auto.edit_title", { id: editing }) : t("auto.new");
      this.editor.el.scrollIntoView({ block: "nearest" });
    };
    const save = async () => {
      try {
        const name = this.editing ?? id.value.trim();
        if (!/^[A-Za-z0-9_-]{1,64}$/.test(name)) throw new Error(t("auto.id_needed"));
        let definition;
        try { definition = JSON.parse(json.value); } catch (e) { throw new Error(t("segments.bad_json", { error: e.message })); }
        await ctx.api.send("PUT", `automations/${encodeURIComponent(name)}`, definition);
        result.replaceChildren(h("p", { "data-saved": name, text: t("auto.saved", { id: name }) }));
        const before = this.listed.get(name); // an edit shows once the listing holds another definition
        this.edit(newAutomation());
        await settle(ctx, "automations", (b) => (b.automations ?? []).some((a) => a.id === name && canonical(a) !== before));
        form.mark("");
      } catch (e) { result.replaceChildren(errorLine(e.message)); form.mark(e.message); }
    };
    // What it would send, for a sample firing of its trigger now (POST .../automations/preview): nothing is saved
    const shown = h("div", { class: "message-preview", "data-message": "" });
    const preview = async () => {
      try {
        let definition;
        try { definition = JSON.parse(json.value); } catch (e) { throw new Error(t("segments.bad_json", { error: e.message })); }
        const name = this.editing ?? (id.value.trim() || undefined);
        const p = await ctx.api.request("POST", "automations/preview", name ? { id: name } : {}, definition);
        const m = p.message;
        shown.replaceChildren(h("p", { class: "muted", text: t(p.digest ? "auto.preview_digest" : "auto.preview_note") }),
          h("p", {}, h("strong", { "data-message": "subject", text: m.subject })),
          h("pre", { class: "rule", "data-message": "text", text: m.text }),
          h("details", {}, h("summary", { text: t("auto.preview_json") }), h("pre", { class: "rule", "data-message": "json", text: JSON.stringify(m.json, null, 2) })));
        form.mark("");
      } catch (e) { shown.replaceChildren(errorLine(e.message)); form.mark(e.message); }
    };
    this.editor.set(h("p", { class: "muted", text: t("auto.help") }), h("p", {}, note, " ", again), fields,
      h("label", { for: "automation-json", class: "muted", text: t("auto.json") }), json,
      h("div", { class: "row" }, id, h("button", { type: "button", class: "engage", "data-act": "preview-automation", onclick: preview },
        t("auto.preview")), h("button", { type: "button", class: "engage", "data-act": "save-automation", onclick: save }, t("auto.save"))),
      result, shown);
    this.editor.el.hidden = true; // until the server says it takes automations from this token
    panel.replaceChildren(h("div", { class: "cards" }, this.defs.el, this.editor.el, this.channels.el, this.deliveries.el, this.dead.el));
  },
  // Each channel: where it sends (no secret), whether it is on, its dead letters, and a test message now
  // (POST .../channels/{id}/test: delivered and how fast, or the receiver's error; a test enables a
  // disabled channel again). An e-mail channel to "customer" asks where the test goes.
  showChannels(ctx, channels) {
    const t = ctx.t;
    const results = this.channelResults ?? (this.channelResults = new Map()); // id -> the last test's line, across refreshes
    const test = (c) => async (ev) => {
      const button = ev.currentTarget;
      let to;
      if (c.kind === "email" && c.to === "customer") {
        to = window.prompt(t("channels.test_to"));
        if (!to) return;
      }
      button.disabled = true;
      const line = h("span", { "data-test-result": c.id });
      try {
        const r = await ctx.api.request("POST", `channels/${encodeURIComponent(c.id)}/test`, to ? { to } : {});
        line.textContent = t("channels.test_delivered", { ms: fmt.number(r.latency_ms ?? 0), status: r.status ?? "" });
      } catch (e) {
        line.textContent = t("channels.test_failed", { error: e.message });
        line.className = "error";
      }
      results.get(c.id)?.remove(); // the previous test's line
      results.set(c.id, line);
      button.disabled = false;
      // a refresh meanwhile drew the table again: the next one shows the line; a disabled channel is on again
      if (button.isConnected) button.after(line);
      if (!button.isConnected || !c.enabled) ctx.refresh();
    };
    const where = (c) => c.url ?? (c.to === "customer" ? t("channels.to_customer") : Array.isArray(c.to) ? c.to.join(", ") : "");
    this.channels.set(table(t("channels.title"), [
      { label: t("channels.channel"), value: (c) => c.id },
      { label: t("channels.kind"), value: (c) => c.kind },
      { label: t("channels.where"), value: where },
      { label: t("col.status"), value: (c) => (c.enabled ? t("channels.enabled") : t("channels.disabled", { reason: c.disabled_reason ?? "" })) },
      { label: t("automations.dead"), value: (c) => fmt.number(c.dead ?? 0), num: true },
      { label: t("auto.actions"), value: (c) => h("span", { class: "row" },
        h("button", { type: "button", class: "engage", "data-test": c.id, onclick: test(c) }, t("channels.test")), results.get(c.id) ?? null) },
    ], channels, t("auto.no_channels")));
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
      this.editor.el.hidden = this.channels.el.hidden = true;
      return;
    }
    // a trigger's segment by its name in the page's language, and the segments the form offers
    const segments = (await ctx.api.optional("segments").catch(() => null))?.segments ?? ctx.segments; // one made since the page opened too
    const named = new Map(segments.map((s) => [s.id, s]));
    // the channels to send to; a token that may not read them (a share link) may not write either: no editing
    const channels = await ctx.api.optional("channels").catch(() => null);
    const writable = channels !== null && !ctx.readOnly;
    this.editor.el.hidden = this.channels.el.hidden = !writable;
    if (writable) this.showChannels(ctx, channels.channels ?? []);
    const choices = { segments: segments.filter((s) => s.subject !== "product").sort((a, b) => bySegmentName(a, b, fmt.getLocale()))
      .map((s) => ({ id: s.id, label: segmentName(s) })), channels: (channels?.channels ?? []).map((c) => ({ id: c.id, kind: c.kind })),
      currency: ctx.state.last?.currency ?? "" };
    if (JSON.stringify(choices) !== JSON.stringify(this.choices)) { this.choices = choices; this.form.redraw(); } // not while typing
    this.listed = new Map((defs.automations ?? []).map((a) => [a.id, canonical(a)]));
    const remove = (a) => async (ev) => {
      if (!window.confirm(t("auto.confirm_delete", { id: a.id }))) return;
      ev.currentTarget.disabled = true;
      try {
        await ctx.api.send("DELETE", `automations/${encodeURIComponent(a.id)}`);
        await settle(ctx, "automations", (b) => !(b.automations ?? []).some((x) => x.id === a.id));
      } catch (e) { this.defs.body.append(errorLine(e.message)); }
    };
    const actions = (a) => h("span", { class: "row" },
      h("button", { type: "button", class: "engage", "data-act": "edit", onclick: () => this.edit(a, a.id) }, t("auto.edit")),
      h("button", { type: "button", class: "engage", "data-act": "delete", onclick: remove(a) }, t("auto.delete")));
    const trigger = (v) => { const text = t(`trigger.${v}`); return text === `trigger.${v}` ? v : text; };
    this.defs.set(table(t("automations.list"), [
      { label: t("segments.name"), value: (a) => a.id },
      { label: t("automations.trigger"), value: (a) => (a.trigger ? trigger(a.trigger) : "") },
      { label: t("automations.channel"), value: (a) => (a.send ?? []).join(", ") },
      { label: t("filter.segment"), value: (a) => (a.segment ? segmentName(named.get(a.segment) ?? { id: a.segment }) : "") },
      { label: t("automations.wait"), value: (a) => a.wait ?? "" },
      ...(defs.results ? resultColumns(t, defs.results) : []),
      ...(writable ? [{ label: t("auto.actions"), value: actions }] : []),
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
      // the newest 20 whatever the period (the delivery log is listed newest first, not by day)
      this.deliveries.set(table(t("automations.deliveries"), columns, all.deliveries ?? [], t("automations.no_deliveries")));
      const replay = (d) => h("button", { type: "button", class: "engage", onclick: async (ev) => {
        ev.currentTarget.disabled = true;
        try { await ctx.api.send("POST", `deliveries/${encodeURIComponent(d.id)}/replay`); ctx.refresh(); } catch (e) {
          this.dead.body.append(errorLine(e.message));
        }
      } }, t("automations.replay", { id: d.id }));
      const rows = dead.deliveries ?? [];
      this.dead.set(table(t("automations.dead"), columns, rows, t("automations.no_dead")),
        rows.length ? h("div", { class: "pick", role: "group", "aria-label": t("automations.dead") }, rows.map(replay)) : null);
    } catch (e) { this.deliveries.set(errorLine(e.message)); }
  },
};

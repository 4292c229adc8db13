// The automation form: an automation's definition (docs/automations.md, the keys of `PUT .../automations/{id}`)
// edited with lists and fields, written as its JSON. The JSON stays the definition: keys the form has no
// field for (html templates, a locale, a digest ...) are kept as they were, and the server checks it all.
import { h } from "./dom.js";
import { compact, mountBuilder } from "./rule_builder.js";

// the triggers offered (docs/automations.md, "Triggers"); a definition with another keeps it, listed too
export const TRIGGERS = ["cart.abandoned", "order.paid", "order.refunded", "checkout.started", "customer.created",
  "segment.entered", "segment.exited", "quota.crossed", "schedule"];
export const DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const CANCELS = ["order.paid", "checkout.completed"]; // what usually takes a waiting reminder back
const UNITS = ["m", "h", "d"];
const DURATION = /^(\d+)([smhd])$/;

// A definition as JSON text to read: a key a line, each value on one line.
export function definitionText(d) {
  return `{\n${Object.entries(d).map(([k, v]) => `  ${JSON.stringify(k)}: ${compact(v)}`).join(",\n")}\n}`;
}

// A new automation: a cart reminder an hour after the cart is left, dropped when it is bought, once a customer.
export function fresh() {
  return { trigger: "cart.abandoned", send: [], wait: "1h", cancel_on: ["checkout.completed", "order.paid"], once: true };
}

// {n, unit} of "4h" (seconds shown as they are: the form offers minutes, hours and days)
export function durationParts(text) {
  const m = typeof text === "string" ? DURATION.exec(text) : null;
  return m ? { n: m[1], unit: m[2] } : { n: "", unit: "h" };
}

// The definition without a key whose value is empty: no `segment` outside segment triggers, no
// `schedule` outside schedule, no `cancel_on` without a wait, no empty templates.
export function tidy(d) {
  const out = { ...d };
  if (!String(out.trigger).startsWith("segment.")) delete out.segment;
  if (out.trigger !== "schedule") { delete out.schedule; delete out.digest; }
  if (!out.wait) { delete out.wait; delete out.cancel_on; }
  if (out.cancel_on && !out.cancel_on.length) delete out.cancel_on;
  if (!out.cooldown) delete out.cooldown;
  if (!out.once) delete out.once;
  if (out.templates) {
    const kept = Object.fromEntries(Object.entries(out.templates).filter(([, v]) => v !== ""));
    if (Object.keys(kept).length) out.templates = kept; else delete out.templates;
  }
  return out;
}

// The form in `container`. `choices()` gives {segments: [{id, label}], channels: [{id, kind}], currency};
// `onChange(definition)` follows every edit; `load(definition)` shows one.
export function mountAutomationForm(container, t, { choices, onChange }) {
  let state = fresh();
  const named = (prefix, v) => { const key = `${prefix}.${v}`; const text = t(key); return text === key ? v : text; };
  const changed = () => { state = tidy(state); onChange(state); };
  const field = (label, ...controls) => h("div", { class: "row" }, h("span", { class: "label", text: label }), ...controls);
  const select = (name, values, current, text, onchange) => {
    const el = h("select", { "data-field": name, "aria-label": t(`auto.${name}`) },
      values.map((v) => h("option", { value: v, text: text(v), selected: v === current })));
    el.addEventListener("change", () => onchange(el.value));
    return el;
  };
  const input = (name, value, onchange, attrs = {}) => {
    const el = h("input", { type: "text", "data-field": name, "aria-label": t(`auto.${name}`), value: value ?? "", ...attrs });
    el.addEventListener("input", () => onchange(el.value));
    return el;
  };
  const checks = (name, values, chosen, text, onchange) => h("span", { class: "checks", role: "group", "aria-label": t(`auto.${name}`) },
    values.map((v) => {
      const box = h("input", { type: "checkbox", value: v, "data-field": `${name}:${v}`, checked: chosen.includes(v) });
      box.addEventListener("change", () => onchange(box.checked ? [...chosen.filter((x) => x !== v), v] : chosen.filter((x) => x !== v)));
      return h("label", {}, box, ` ${text(v)}`);
    }));
  // a duration as a number and a unit; empty: none
  const during = (name, value, onchange) => {
    const d = durationParts(value);
    let n = d.n, unit = UNITS.includes(d.unit) ? d.unit : "h";
    const set = () => onchange(n.trim() === "" ? undefined : `${n.trim()}${unit}`);
    return [input(name, n, (v) => { n = v; set(); }, { size: "4", inputmode: "numeric" }),
      select(`${name}_unit`, UNITS, unit, (u) => t(`auto.unit_${u}`), (u) => { unit = u; set(); })];
  };
  const ruleBox = h("div", { class: "builder", "data-field": "if-builder" });
  const builder = mountBuilder(ruleBox, t, { segments: () => choices().segments, currency: () => choices().currency ?? "",
    onRule: (r) => { state.if = r; changed(); } });
  const draw = () => {
    const { segments, channels } = choices();
    const triggers = TRIGGERS.includes(state.trigger) ? TRIGGERS : [...TRIGGERS, state.trigger];
    const rows = [field(t("auto.trigger"), select("trigger", triggers, state.trigger, (v) => named("trigger", v),
      (v) => { state.trigger = v; if (v.startsWith("segment.") && !state.segment && segments.length) state.segment = segments[0].id; changed(); draw(); }))];
    if (state.trigger.startsWith("segment.")) {
      rows.push(field(t("auto.segment"), select("segment", segments.map((s) => s.id), state.segment,
        (id) => segments.find((s) => s.id === id)?.label ?? id, (v) => { state.segment = v; changed(); })));
    }
    if (state.trigger === "schedule") {
      const schedule = state.schedule ?? { at: "08:00", days: [...DAYS] };
      if (!state.schedule) state.schedule = schedule;
      rows.push(field(t("auto.at"), input("at", schedule.at, (v) => { state.schedule = { ...state.schedule, at: v }; changed(); }, { size: "5", placeholder: "08:00" }),
        checks("days", DAYS, schedule.days ?? [...DAYS], (d) => t(`day.${d}`), (v) => { state.schedule = { ...state.schedule, days: DAYS.filter((d) => v.includes(d)) }; changed(); draw(); })));
    }
    const only = h("input", { type: "checkbox", "data-field": "if", checked: state.if !== undefined });
    only.addEventListener("change", () => {
      if (only.checked) { state.if = { orders: { gte: 1 } }; builder.load(state.if); } else delete state.if;
      ruleBox.hidden = !only.checked;
      changed();
    });
    ruleBox.hidden = state.if === undefined;
    if (state.if !== undefined) builder.load(state.if);
    rows.push(field(t("auto.only_if"), h("label", {}, only, ` ${t("auto.only_if_help")}`)), ruleBox);
    rows.push(field(t("auto.wait"), ...during("wait", state.wait, (v) => { state.wait = v; if (v && !state.cancel_on) state.cancel_on = []; changed(); draw(); }),
      ...(state.wait ? [h("span", { text: t("auto.cancel_on") }), checks("cancel_on", CANCELS, state.cancel_on ?? [], (k) => t(`cancel.${k}`),
        (v) => { state.cancel_on = v.sort(); changed(); draw(); })] : [])));
    const often = state.once ? "once" : state.cooldown ? "cooldown" : "always";
    rows.push(field(t("auto.often"), select("often", ["always", "once", "cooldown"], often, (o) => t(`auto.often_${o}`), (o) => {
      state.once = o === "once";
      state.cooldown = o === "cooldown" ? state.cooldown || "7d" : undefined;
      changed(); draw();
    }), ...(often === "cooldown" ? during("cooldown", state.cooldown, (v) => { state.cooldown = v; changed(); }) : [])));
    rows.push(field(t("auto.send"), channels.length ? checks("send", channels.map((c) => c.id), state.send ?? [],
      (id) => `${id} (${channels.find((c) => c.id === id)?.kind ?? ""})`, (v) => { state.send = v; changed(); draw(); })
      : h("span", { class: "muted", "data-field": "no-channels", text: t("auto.no_channels") })));
    const templates = state.templates ?? {};
    rows.push(field(t("auto.subject"), input("subject", templates.subject, (v) => { state.templates = { ...state.templates, subject: v }; changed(); },
      { size: "50", placeholder: t("auto.default_template") })));
    rows.push(field(t("auto.text"), input("text", templates.text, (v) => { state.templates = { ...state.templates, text: v }; changed(); },
      { size: "50", placeholder: t("auto.default_template") })));
    // a redraw keeps the focus on the field it was in (a checkbox ticked, a unit chosen)
    const focused = container.contains(document.activeElement) ? document.activeElement.dataset.field : undefined;
    container.replaceChildren(...rows);
    if (focused) container.querySelector(`[data-field="${CSS.escape(focused)}"]`)?.focus();
  };
  draw();
  onChange(state);
  return {
    load(definition) {
      const { id, source, ...rest } = definition; // the listing's own keys, not the definition's
      void id; void source;
      const next = tidy({ ...rest, send: rest.send === undefined ? [] : Array.isArray(rest.send) ? rest.send : [rest.send] });
      if (compact(next) === compact(state)) return; // shown already (the JSON's change event on leaving it): keep the fields
      state = next;
      draw();
      onChange(state);
    },
    redraw: draw, // the choices changed (channels or segments read)
    mark: (message) => builder.mark(message, "if"), // the condition a server error names, marked invalid
  };
}

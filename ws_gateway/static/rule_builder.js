// The segment rule builder: conditions picked from lists, written as the rule language's JSON
// (docs/segments.md, core/rules/criteria.py), and a rule read back into conditions when it is one the
// builder can show (all or any of simple conditions). The JSON stays the rule: the server checks it and
// names the JSON path of anything wrong; anything the builder cannot show is edited as JSON.
import { h } from "./dom.js";

// criterion -> what it compares: a count, an amount, a moment, a name, a segment or a custom field;
// `window`: it takes `within`; `item`: the qualifier it requires; `ops`: its comparisons, if not the type's
export const CRITERIA = {
  orders: { type: "count", window: true },
  spent: { type: "money", window: true },
  net_spent: { type: "money", window: true },
  order_value: { type: "money", window: true, ops: ["gte", "gt", "lte", "lt"] },
  items: { type: "count", window: true },
  bought_product: { type: "count", window: true, item: "product" },
  bought_category: { type: "count", window: true, item: "category" },
  bought_brand: { type: "count", window: true, item: "brand" },
  refunds: { type: "count", window: true },
  email_engaged: { type: "count", window: true },
  open_cart_value: { type: "money" },
  last_order_at: { type: "moment" },
  first_order_at: { type: "moment" },
  last_active_at: { type: "moment" },
  registered_at: { type: "moment" },
  last_abandoned_cart_at: { type: "moment" },
  last_cart_created_at: { type: "moment" },
  stores: { type: "count" },
  store: { type: "name" },
  in_segment: { type: "segment" },
  attribute: { type: "attribute" },
};

const OPS = {
  count: ["gte", "gt", "lte", "lt", "eq", "ne", "between"],
  money: ["gte", "gt", "lte", "lt", "eq", "ne", "between"],
  moment: ["after", "before", "on", "exists", "never"],
  name: ["eq", "ne"],
  segment: ["eq", "ne"],
  attribute: ["eq", "ne", "gte", "gt", "lte", "lt", "exists"],
};
const UNITS = ["d", "h"];
const DURATION = /^(\d{1,7})([dh])$/;

export function opsOf(criterion) { const c = CRITERIA[criterion]; return c.ops ?? OPS[c.type]; }

// A fresh condition of `criterion` (the first of its comparisons, no value yet).
export function blank(criterion = "orders") {
  return { criterion, op: opsOf(criterion)[0], value: "", value2: "", window: "", unit: "d", item: "", name: "" };
}

function number(text) { const s = String(text).trim(); return /^\d+$/.test(s) ? Number(s) : s; }
function scalar(text) {
  const s = String(text).trim();
  if (s === "true" || s === "false") return s === "true";
  return /^-?\d+(\.\d+)?$/.test(s) ? Number(s) : s;
}
function amount(text) { return String(text).trim(); } // a decimal string, checked by the server

// One condition as the rule language writes it.
export function toCondition(c) {
  const spec = CRITERIA[c.criterion];
  if (spec.type === "moment") {
    if (c.op === "exists" || c.op === "never") return { [c.criterion]: { exists: c.op === "exists" } };
    return { [c.criterion]: { [c.op]: `${String(c.value).trim()}${c.op === "on" ? "d" : c.unit}` } };
  }
  if (spec.type === "segment") return { in_segment: { [c.op]: c.value } };
  if (spec.type === "name") return { [c.criterion]: { [c.op]: String(c.value).trim() } };
  if (spec.type === "attribute") {
    return { attribute: { name: String(c.name).trim(), [c.op]: c.op === "exists" ? true : scalar(c.value) } };
  }
  const read = spec.type === "money" ? amount : number;
  const body = { [c.op]: c.op === "between" ? [read(c.value), read(c.value2)] : read(c.value) };
  if (spec.window && String(c.window).trim() !== "") body.within = `${String(c.window).trim()}${c.unit}`;
  if (spec.item) body[spec.item] = String(c.item).trim();
  return { [c.criterion]: body };
}

// JSON on one line, spaced to be read: {"orders": {"gte": 2}}.
export function compact(x) {
  if (Array.isArray(x)) return `[${x.map(compact).join(", ")}]`;
  if (x && typeof x === "object") return `{${Object.entries(x).map(([k, v]) => `${JSON.stringify(k)}: ${compact(v)}`).join(", ")}}`;
  return JSON.stringify(x);
}

// A rule as JSON text to read: each condition of a top-level all/any on a line of its own.
export function ruleText(rule) {
  const group = rule && typeof rule === "object" && Object.keys(rule).length === 1 ? ["all", "any"].find((k) => Array.isArray(rule[k])) : undefined;
  return group ? `{${JSON.stringify(group)}: [\n  ${rule[group].map(compact).join(",\n  ")}\n]}` : compact(rule);
}

// {match: "all" | "any", conditions} as a rule: one condition alone, else all/any of them.
export function toRule({ match, conditions }) {
  const parts = conditions.map(toCondition);
  return parts.length === 1 ? parts[0] : { [match]: parts };
}

function keysAre(body, allowed) { return Object.keys(body).every((k) => allowed.includes(k)); }

// A condition of the rule language as the builder holds it, or null when it cannot show it.
export function fromCondition(cond) {
  if (!cond || typeof cond !== "object" || Array.isArray(cond)) return null;
  const keys = Object.keys(cond);
  if (keys.length !== 1 || !(keys[0] in CRITERIA)) return null;
  const criterion = keys[0];
  const spec = CRITERIA[criterion];
  const body = cond[criterion];
  if (!body || typeof body !== "object" || Array.isArray(body)) return null;
  const c = blank(criterion);
  const ops = Object.keys(body).filter((k) => !["within", "name", "product", "category", "brand"].includes(k));
  if (ops.length !== 1) return null;
  const op = ops[0];
  const v = body[op];
  if (spec.type === "moment") {
    if (op === "exists") return typeof v === "boolean" && keysAre(body, ["exists"]) ? { ...c, op: v ? "exists" : "never" } : null;
    const m = typeof v === "string" ? DURATION.exec(v) : null;
    if (!m || !["before", "after", "on"].includes(op) || (op === "on" && m[2] !== "d") || !keysAre(body, [op])) return null;
    return { ...c, op, value: m[1], unit: m[2] };
  }
  if (spec.type === "segment" || spec.type === "name") {
    return OPS[spec.type].includes(op) && typeof v === "string" && keysAre(body, [op]) ? { ...c, op, value: v } : null;
  }
  if (spec.type === "attribute") {
    if (typeof body.name !== "string" || !OPS.attribute.includes(op) || !keysAre(body, ["name", op])) return null;
    if (op === "exists") return v === true ? { ...c, op, name: body.name } : null;
    return ["string", "number", "boolean"].includes(typeof v) ? { ...c, op, name: body.name, value: String(v) } : null;
  }
  if (!opsOf(criterion).includes(op) || !keysAre(body, [op, ...(spec.window ? ["within"] : []), ...(spec.item ? [spec.item] : [])])) return null;
  if (spec.item && typeof body[spec.item] !== "string") return null;
  const fits = (x) => (spec.type === "money" ? typeof x === "string" : Number.isInteger(x));
  if (op === "between" ? !(Array.isArray(v) && v.length === 2 && v.every(fits)) : !fits(v)) return null;
  let window = "", unit = "d";
  if ("within" in body) {
    const m = typeof body.within === "string" ? DURATION.exec(body.within) : null;
    if (!m) return null;
    [window, unit] = [m[1], m[2]];
  }
  return { ...c, op, value: String(op === "between" ? v[0] : v), value2: op === "between" ? String(v[1]) : "", window, unit,
    item: spec.item ? body[spec.item] : "" };
}

// A rule as {match, conditions}, or null when the builder cannot show it (a not, a nested all/any,
// since/until, minutes ...): it is then edited as JSON.
export function fromRule(rule) {
  if (rule && typeof rule === "object" && !Array.isArray(rule) && Object.keys(rule).length === 1
      && (Array.isArray(rule.all) || Array.isArray(rule.any))) {
    const match = "all" in rule ? "all" : "any";
    const conditions = rule[match].map(fromCondition);
    return conditions.length && conditions.every(Boolean) ? { match, conditions } : null;
  }
  const one = fromCondition(rule);
  return one ? { match: "all", conditions: [one] } : null;
}

// The builder's form in `container`: `segments()` lists the segments in_segment may name ({id, label});
// `currency()` the organisation's (amounts are in it); `onRule(rule)` is called with the rule after every
// change. `load(rule)` shows a rule (false: it cannot).
export function mountBuilder(container, t, { segments, onRule, currency = () => "" }) {
  let state = { match: "all", conditions: [blank()] };
  const note = h("p", { class: "muted", "data-builder": "json-only", hidden: true, text: t("builder.json_only") });
  const rows = h("div", { class: "conditions" });
  const match = h("select", { "data-builder": "match", "aria-label": t("builder.match") },
    ["all", "any"].map((m) => h("option", { value: m, text: t(`builder.${m}`) })));
  const changed = () => { onRule(toRule(state)); };
  match.addEventListener("change", () => { state.match = match.value; changed(); });
  const select = (label, values, current, text, onchange) => {
    const el = h("select", { "aria-label": label }, values.map((v) => h("option", { value: v, text: text(v), selected: v === current })));
    el.addEventListener("change", () => onchange(el.value));
    return el;
  };
  const input = (label, value, onchange, attrs = {}) => {
    const el = h("input", { type: "text", "aria-label": label, value, size: "8", ...attrs });
    el.addEventListener("input", () => onchange(el.value));
    return el;
  };
  const row = (c, i) => {
    const spec = CRITERIA[c.criterion];
    const set = (patch, redraw = false) => { state.conditions[i] = { ...state.conditions[i], ...patch }; if (redraw) draw(); changed(); };
    const parts = [select(t("builder.criterion"), Object.keys(CRITERIA), c.criterion, (k) => t(`crit.${k}`),
      (k) => set(blank(k), true))];
    if (spec.type === "attribute") parts.push(input(t("builder.field"), c.name, (v) => set({ name: v }), { placeholder: t("builder.field") }));
    const named = ["moment", "name", "segment"].includes(spec.type); // "is", "is a member of", "more than ... ago"
    parts.push(select(t("builder.comparison"), opsOf(c.criterion), c.op, (o) => t(named ? `op.${spec.type}_${o}` : `op.${o}`),
      (o) => set({ op: o }, true)));
    if (spec.type === "segment") {
      const choices = segments();
      if (c.value === "" && choices.length) state.conditions[i].value = c.value = choices[0].id;
      parts.push(select(t("builder.segment"), choices.map((s) => s.id), c.value, (id) => choices.find((s) => s.id === id)?.label ?? id,
        (v) => set({ value: v })));
    } else if (spec.type === "moment") {
      if (c.op !== "exists" && c.op !== "never") {
        parts.push(input(t("builder.value"), c.value, (v) => set({ value: v }), { inputmode: "numeric", size: "4" }));
        parts.push(c.op === "on" ? h("span", { text: t("builder.days_ago") })
          : select(t("builder.unit"), UNITS, c.unit, (u) => t(`builder.unit_${u}${c.op === "before" ? "_ago" : ""}`), (u) => set({ unit: u })));
      }
    } else if (!(spec.type === "attribute" && c.op === "exists")) {
      const money = spec.type === "money";
      const hint = { inputmode: spec.type === "count" ? "numeric" : "decimal", placeholder: money ? "100.00" : spec.type === "count" ? "1" : "" };
      parts.push(input(t("builder.value"), c.value, (v) => set({ value: v }), hint));
      if (c.op === "between") parts.push(h("span", { text: t("builder.and") }), input(t("builder.value"), c.value2, (v) => set({ value2: v }), hint));
      if (money && currency()) parts.push(h("span", { class: "muted", "data-currency": "", text: currency() })); // amounts in the organisation's currency
    }
    if (spec.item) parts.push(input(t(`builder.${spec.item}`), c.item, (v) => set({ item: v }), { placeholder: t(`builder.${spec.item}`), size: "12" }));
    if (spec.window) {
      parts.push(h("span", { text: t("builder.in_the_last") }),
        input(t("builder.window"), c.window, (v) => set({ window: v }), { inputmode: "numeric", size: "4", placeholder: t("builder.ever") }),
        select(t("builder.unit"), UNITS, c.unit, (u) => t(`builder.unit_${u}`), (u) => set({ unit: u })));
    }
    if (state.conditions.length > 1) {
      parts.push(h("button", { type: "button", class: "link", "data-builder": "remove", "aria-label": t("builder.remove"),
        onclick: () => { state.conditions.splice(i, 1); draw(); changed(); } }, "×"));
    }
    return h("div", { class: "row", "data-condition": String(i) }, parts);
  };
  const draw = () => { match.value = state.match; rows.replaceChildren(...state.conditions.map(row)); };
  const add = h("button", { type: "button", class: "engage", "data-builder": "add",
    onclick: () => { state.conditions.push(blank()); draw(); changed(); } }, t("builder.add"));
  container.replaceChildren(h("div", { class: "row" }, h("span", { text: t("builder.match_prefix") }), match, h("span", { text: t("builder.match_suffix") })),
    rows, add, note);
  draw();
  return {
    // The condition a server error names by its JSON path (`$.<root>.all[1].spent.gte: ...`, or
    // `$.<root>.spent...` for a rule of one condition) is marked invalid; any other message clears the marks.
    mark(message, root) {
      for (const r of rows.querySelectorAll(".invalid")) r.classList.remove("invalid");
      for (const el of rows.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
      const m = new RegExp(`^\\$\\.${root}(?:\\.(?:all|any)\\[(\\d+)\\])?[.:\\[ ]`).exec(String(message));
      if (!m || rows.hidden) return null;
      const i = m[1] === undefined ? (state.conditions.length === 1 ? 0 : null) : Number(m[1]);
      const row = i === null ? null : rows.querySelector(`[data-condition="${i}"]`);
      if (!row) return null;
      row.classList.add("invalid");
      for (const el of row.querySelectorAll("input, select")) el.setAttribute("aria-invalid", "true");
      return i;
    },
    load(rule) {
      if (rows.hidden === false && compact(rule) === compact(toRule(state))) return true; // shown already: keep the fields (and focus)
      const shown = fromRule(rule);
      note.hidden = shown !== null;
      rows.hidden = add.hidden = match.parentElement.hidden = shown === null;
      if (shown) { state = shown; draw(); }
      return shown !== null;
    },
  };
}

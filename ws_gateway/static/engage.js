// ENGAGE: the customers behind a list, as a CSV download (built here from the API's JSON), or saved
// as a segment.
import { download, toCsv } from "./csv.js";
import { errorLine, h } from "./dom.js";
import { decimalString, intlDigits } from "./format.js";
import { segmentId } from "./segment_of.js";

export const CUSTOMER_COLUMNS = ["customer", "email", "name", "orders", "revenue", "currency"];

// One CSV row per customer: revenue as a plain decimal in its currency (exponent from the server).
export function customersCsv(rows) {
  return toCsv(CUSTOMER_COLUMNS, rows.map((r) => {
    const m = r.revenue;
    const exp = m ? (Number.isInteger(m.exponent) ? m.exponent : intlDigits(m.currency)) : 0;
    return [r.customer, r.email ?? "", r.name ?? "", r.orders ?? "", m ? decimalString(m.amount, exp) : "", m ? m.currency : ""];
  }));
}

// Distinct customers of some orders or carts: their count and sum within the list (guests left out).
export function customersOf(items, { key, amount }) {
  const by = new Map();
  for (const it of items) {
    const k = it[key];
    if (!k) continue;
    const m = amount(it);
    const row = by.get(k) || { customer: k, orders: 0, revenue: m ? { ...m, amount: 0 } : null };
    row.orders += 1;
    if (m && row.revenue && row.revenue.currency === m.currency) row.revenue.amount += m.amount;
    by.set(k, row);
  }
  return [...by.values()];
}

// A button that exports what `rows()` (async) returns; `name` is the file's stem.
export function engageButton(t, name, rows) {
  return h("button", { type: "button", class: "engage", "data-export": name, onclick: async (ev) => {
    const btn = ev.currentTarget;
    btn.disabled = true;
    try { download(`storepulse-${name}.csv`, customersCsv(await rows())); } finally { btn.disabled = false; }
  } }, t("engage.export"));
}

// "Save as segment": a button that opens a dialog with a name and the rule that reproduces the list
// (segment_of.js), and PUTs it as a new segment. `describe()` (async) answers {rule} or {reason}: a
// list no exact rule can express says so and saves nothing. A share link's token gets 403, shown here.
export function saveSegmentButton(ctx, name, describe) {
  const t = ctx.t;
  return h("button", { type: "button", class: "engage", "data-save-segment": name, onclick: async () => {
    let found;
    try { found = await describe(); } catch (e) { found = { error: e.message }; }
    openDialog(ctx, name, found);
  } }, t("save.button"));
}

function openDialog(ctx, name, found) {
  const t = ctx.t;
  const status = h("p", { role: "status", "data-save-status": "" });
  const input = h("input", { type: "text", id: `save-name-${name}`, required: true, maxlength: "64" });
  const close = () => { dialog.close(); dialog.remove(); };
  const save = async (ev) => {
    ev.preventDefault();
    const id = segmentId(input.value);
    if (!id) { status.replaceChildren(errorLine(t("segments.name_needed"))); return; }
    try {
      await ctx.api.send("PUT", `segments/${encodeURIComponent(id)}`, { name: input.value.trim(), rule: found.rule });
      status.replaceChildren(h("p", { text: t("segments.saved", { name: input.value.trim() }) }));
      saveBtn.disabled = true;
    } catch (e) { status.replaceChildren(errorLine(e.message)); }
  };
  const saveBtn = h("button", { type: "submit", class: "engage" }, t("segments.save"));
  const body = found.rule
    ? [h("label", { for: input.id, text: t("segments.name") }), " ", input,
      h("p", { class: "muted", text: t("save.rule_is") }), h("pre", { "data-save-rule": "", text: JSON.stringify(found.rule, null, 1) })]
    : [h("p", { class: found.error ? "error" : "warning", "data-save-reason": "", text: found.error ?? t(found.reason) })];
  const dialog = h("dialog", { class: "save-segment", "aria-labelledby": `save-title-${name}` },
    h("form", { onsubmit: save },
      h("h2", { id: `save-title-${name}`, text: t("save.title") }), body, status,
      h("div", { class: "row" }, found.rule ? saveBtn : null,
        h("button", { type: "button", class: "link", onclick: close }, t("save.close")))));
  dialog.addEventListener("cancel", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  if (found.rule) input.focus();
}

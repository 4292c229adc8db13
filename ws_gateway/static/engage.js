// ENGAGE: the customers behind a list, as a CSV download (built here from the API's JSON).
import { download, toCsv } from "./csv.js";
import { h } from "./dom.js";
import { decimalString, intlDigits } from "./format.js";

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

// ENGAGE "save as segment": the segment rule (docs/segments.md) whose members are exactly the customers
// behind a list as the page shows it, or why no rule can say that. Pure: the list and the filters in,
// {rule} or {reason} (a message key) out.
import { addDays } from "./period.js";
import { decimalString } from "./format.js";

// A period's days as the qualifiers of a dated criterion: calendar days in the organisation's zone,
// exactly the days the read API sums (a rolling `within` would cut the first day at this hour).
const days = (span) => ({ since: span.from, until: span.to });

// `list`: "best" (the Customers view's best, with `sort` and the `rows` shown), "never_bought" (its
// registered and never bought) or "orders" (the Orders view's: whoever paid in the period, with the
// list's `total`). `filters`: {span: {from, to} | null, store, currency, orgCurrency, segment}; `limit`:
// how many orders the Orders export reads (a list of more is not all there).
export function segmentOf(list, { rows = [], sort = "revenue", total = 0, limit = 1000 } = {}, filters) {
  const { span, store, currency, orgCurrency, segment } = filters;
  if (!span) return { reason: "save.reason_period" };
  // A rule's amounts and orders are the organisation's, over all its stores.
  if (store) return { reason: "save.reason_store" };
  let rule;
  if (list === "never_bought") {
    // registered_at in [from, to]: after the day before `from`, before the day after `to` (local days)
    rule = [{ orders: { eq: 0 } }, { registered_at: { after: addDays(span.from, -1) } },
      { registered_at: { before: addDays(span.to, 1) } }];
  } else if (list === "orders") {
    if (total > limit) return { reason: "save.reason_more" };
    rule = [{ orders: { gte: 1, ...days(span) } }];
  } else if (list === "best") {
    if (rows.length === 0) return { reason: "save.reason_empty" };
    const last = rows[rows.length - 1];
    if (sort === "revenue") {
      // Rule money is in the organisation's currency: a list converted to another has other amounts.
      if ((currency || orgCurrency) !== orgCurrency || last.revenue.currency !== orgCurrency) return { reason: "save.reason_currency" };
      const spent = decimalString(last.revenue.amount, last.revenue.exponent);
      rule = [{ spent: { gte: spent, ...days(span) } }];
      if (last.revenue.amount <= 0) rule.push({ orders: { gte: 1, ...days(span) } }); // only those who paid in it
    } else {
      const n = sort === "orders" ? last.orders : last.items;
      rule = [{ [sort]: { gte: Math.max(n, 1), ...days(span) } }];
    }
  } else return { reason: "save.reason_list" };
  if (segment) rule.push({ in_segment: { eq: segment } });
  return { rule: rule.length === 1 ? rule[0] : { all: rule } };
}

// A segment id from its name: 1-64 lowercase letters, digits, "-" and "_" (the API's rule).
export function segmentId(name) {
  return name.trim().toLowerCase().replace(/ß/g, "ss").normalize("NFKD").replace(/[\u0300-\u036f]/g, "")
    .replace(/[^a-z0-9_-]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 64);
}

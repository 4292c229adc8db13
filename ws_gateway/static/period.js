// Periods as the read API takes them, and the date arithmetic around them (pure: "today" is passed in).

export const PERIODS = ["today", "yesterday", "7d", "30d", "90d", "month", "custom"];

function toDays(iso) { const [y, m, d] = iso.split("-").map(Number); return Date.UTC(y, m - 1, d) / 86400000; }
function fromDays(n) { return new Date(n * 86400000).toISOString().slice(0, 10); }
export function addDays(iso, n) { return fromDays(toDays(iso) + n); }
export function daysBetween(first, last) { return toDays(last) - toDays(first) + 1; }

// The query parameters of a period: a named one the server resolves, or from/to dates.
// `today` is the organisation's local day (the server's answer to period=today).
export function periodParams(period, today, custom) {
  if (period === "month") return { from: `${today.slice(0, 8)}01`, to: today };
  if (period === "custom") return { from: custom.from || undefined, to: custom.to || undefined };
  return { period };
}

// The days [from, to] the server resolves a period to (core/figures.py resolve_period), known here
// once the organisation's today is: the page can ask for a period and the one before it at once.
export function periodSpan(period, today, custom) {
  if (!today) return null;
  const back = { today: 0, "7d": 6, "30d": 29, "90d": 89 };
  if (period in back) return { from: addDays(today, -back[period]), to: today };
  if (period === "yesterday") return { from: addDays(today, -1), to: addDays(today, -1) };
  if (period === "month") return { from: `${today.slice(0, 8)}01`, to: today };
  if (period === "custom" && custom.from && custom.to) return { from: custom.from, to: custom.to };
  return null;
}

// The period of equal length just before [first, last]; null for an open range.
export function previousSpan(first, last) {
  if (!first || !last) return null;
  const n = daysBetween(first, last);
  return { from: addDays(first, -n), to: addDays(first, -1) };
}

// [first, last] cut into at most `most` consecutive spans of whole days, oldest first.
export function spans(first, last, most) {
  const n = daysBetween(first, last);
  const size = Math.ceil(n / most);
  const out = [];
  for (let start = 0; start < n; start += size) {
    out.push({ from: addDays(first, start), to: addDays(first, Math.min(start + size, n) - 1) });
  }
  return out;
}

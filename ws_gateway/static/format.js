// Numbers, money, percentages and dates in the page's locale (Intl), money from integer minor units.

let locale = "en";

export function setLocale(tag) { locale = tag; }
export function getLocale() { return locale; }

const cache = new Map();
function nf(key, options) {
  const k = `${locale}|${key}`;
  if (!cache.has(k)) cache.set(k, new Intl.NumberFormat(locale, options));
  return cache.get(k);
}

// The browser's own digits for a currency: only a fallback, for a server that sends no exponent.
export function intlDigits(currency) {
  return new Intl.NumberFormat("en", { style: "currency", currency }).resolvedOptions().maximumFractionDigits;
}

// "12345", 2 -> "123.45", exactly (no float division): the digits are moved, not divided.
export function decimalString(amount, exponent) {
  const negative = amount < 0;
  let digits = String(Math.abs(Math.trunc(amount)));
  if (exponent > 0) {
    digits = digits.padStart(exponent + 1, "0");
    digits = `${digits.slice(0, -exponent)}.${digits.slice(-exponent)}`;
  }
  return negative ? `-${digits}` : digits;
}

// {amount: minor units, currency, exponent?}: the ISO 4217 exponent the server sends, else Intl's digits.
export function money(m) {
  if (!m || typeof m.amount !== "number") return "–";
  const exponent = Number.isInteger(m.exponent) ? m.exponent : intlDigits(m.currency);
  const f = nf(`money|${m.currency}|${exponent}`, {
    style: "currency", currency: m.currency, minimumFractionDigits: exponent, maximumFractionDigits: exponent,
  });
  return f.format(decimalString(m.amount, exponent)); // Intl takes a decimal string exactly
}

export function number(n) { return typeof n === "number" ? nf("int", { maximumFractionDigits: 0 }).format(n) : "–"; }
export function decimal(n, digits = 2) {
  return typeof n === "number" ? nf(`dec${digits}`, { minimumFractionDigits: digits, maximumFractionDigits: digits }).format(n) : "–";
}
export function percent(ratio) {
  return typeof ratio === "number" ? nf("pct", { style: "percent", maximumFractionDigits: 1 }).format(ratio) : "–";
}

// Change of `now` against `before` as a signed percentage; null when there is nothing to compare with.
export function change(now, before) {
  if (typeof now !== "number" || typeof before !== "number") return null;
  if (before === 0) return now === 0 ? 0 : null;
  return (now - before) / Math.abs(before);
}
export function signedPercent(ratio) {
  return nf("spct", { style: "percent", maximumFractionDigits: 1, signDisplay: "exceptZero" }).format(ratio);
}

export function dateTime(value) {
  if (value === null || value === undefined || value === "") return "–";
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  return new Intl.DateTimeFormat(locale, { dateStyle: "medium", timeStyle: "short" }).format(d);
}
export function time(value) {
  return new Intl.DateTimeFormat(locale, { timeStyle: "short" }).format(new Date(value));
}
// A local day "2026-03-04" as a date in the locale (no time zone shift: it is a calendar day).
export function day(iso) {
  if (!iso) return "–";
  const [y, m, d] = iso.split("-").map(Number);
  return new Intl.DateTimeFormat(locale, { dateStyle: "medium", timeZone: "UTC" }).format(Date.UTC(y, m - 1, d));
}

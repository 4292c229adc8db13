// Messages per language (messages/<lang>.js), chosen by ?lang= else the browser's languages (what
// it sends as Accept-Language). English fills in any key a catalogue lacks.
import en from "./messages/en.js";

export const LANGUAGES = ["en", "de", "es", "fr", "it"];
let messages = en;

// {lang, locale}: the language of the page and the locale for numbers and dates. The browser's own
// locale is kept when it is of the chosen language (de-AT stays de-AT), else the bare language.
export function pickLanguage(search, browserLanguages) {
  const asked = new URLSearchParams(search).get("lang");
  const candidates = asked ? [asked] : [...browserLanguages];
  for (const tag of candidates) {
    const lang = tag.toLowerCase().split("-")[0];
    if (LANGUAGES.includes(lang)) {
      const own = browserLanguages.find((l) => l.toLowerCase().split("-")[0] === lang && l.includes("-"));
      return { lang, locale: own || (asked && asked.includes("-") ? asked : lang) };
    }
  }
  return { lang: "en", locale: browserLanguages.find((l) => l.toLowerCase().startsWith("en")) || "en" };
}

export async function loadLanguage(lang) {
  messages = lang === "en" ? en : (await import(`./messages/${lang}.js`)).default;
}

// The message `key` with {name} placeholders filled from `vars`.
export function t(key, vars = {}) {
  const text = messages[key] ?? en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, k) => (k in vars ? String(vars[k]) : `{${k}}`));
}

// Translates the static page: data-i18n (text), data-i18n-label (aria-label), data-i18n-placeholder.
export function translatePage(root) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-label]")) el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
}

// A segment's name in the page's language: a predefined one by its id ("segment.<id>"), one the shop
// defined (or redefined: no longer predefined) as it was named.
export function segmentName(s) {
  const key = `segment.${s.id}`;
  return s.predefined && key in en ? t(key) : s.name ?? s.id;
}

// Segments in the order the page's language sorts their names ("Started a cart, never bought" among the
// S's, not where its id, "carted_...", put it).
export function bySegmentName(a, b, locale) { return segmentName(a).localeCompare(segmentName(b), locale); }

// The dashboard: filters, tabs, the live feed, and the views (views/*.js) that draw the read API.
import { Api } from "./api.js";
import * as fmt from "./format.js";
import { LANGUAGES, bySegmentName, loadLanguage, pickLanguage, segmentName, t, translatePage } from "./i18n.js";
import { connectLive } from "./live.js";
import { periodParams, periodSpan } from "./period.js";
import automations from "./views/automations.js";
import carts from "./views/carts.js";
import connections from "./views/connections.js";
import customers from "./views/customers.js";
import marketing from "./views/marketing.js";
import orders from "./views/orders.js";
import overview from "./views/overview.js";
import products from "./views/products.js";
import segments from "./views/segments.js";

// The WebSocket announces every change of a figure; records it does not announce (a cart updated with
// no order yet) are re-read this often while the page is visible.
const REREAD_MS = 30000;
const VIEWS = [overview, orders, carts, products, customers, marketing, segments, automations, connections];
// The ECB's reference currencies (and EUR): what a rates file can convert between.
const ECB = ["EUR", "USD", "JPY", "BGN", "CZK", "DKK", "GBP", "HUF", "PLN", "RON", "SEK", "CHF", "ISK", "NOK", "TRY", "AUD",
  "BRL", "CAD", "CNY", "HKD", "IDR", "ILS", "INR", "KRW", "MXN", "MYR", "NZD", "PHP", "SGD", "THB", "ZAR"];
const $ = (id) => document.getElementById(id);
const WS_PORT = document.querySelector('meta[name="storepulse-ws-port"]').content;

const state = { period: "today", custom: { from: "", to: "" }, store: "", currency: "", segment: "", orgToday: null, last: null,
  readOnly: false };
let api = null;
let active = VIEWS[0];
let mounted = false;
let running = false;
let again = null; // a refresh asked for while one ran: null, or whether it is a live one (it flashes)
let startedAt = 0;
let timer = null;
// Live refreshes start at most this often: a busy shop pushes many changes a second, and each
// refresh costs the organisation's read budget (20 units a second by default).
const LIVE_GAP_MS = 500;
const closed = new Map(); // answers about spans that ended before today: they no longer change

const ctx = {
  t, state,
  get api() { return api; },
  // The filters as query parameters; `span` ({from, to}) replaces the period. `segment` only where the
  // API takes one (figures, orders, carts, customers).
  params(span = {}, { segment = false } = {}) {
    const period = span.from ? { from: span.from, to: span.to } : periodParams(state.period, state.orgToday, state.custom);
    return { ...period, store: state.store || undefined, currency: state.currency || undefined,
      segment: segment && state.segment ? state.segment : undefined };
  },
  refresh: () => refresh(false),
  // A share link's token (GET /api/v1/me says so): the views show no form or button that would write.
  get readOnly() { return state.readOnly; },
  // The organisation's segments as the filter lists them (empty until read, beside the first view).
  get segments() { return segmentChoices; },
  // A segment was saved or deleted here: the filter's list is read again.
  segmentsChanged: () => learnSegments(),
  // The filters as "save as segment" needs them (segment_of.js): the period's days, the organisation's currency.
  saveFilters() {
    return { span: periodSpan(state.period, state.orgToday, state.custom), store: state.store, currency: state.currency,
      orgCurrency: state.last ? state.last.currency : "", segment: state.segment };
  },
  // The filter's period as days [from, to] of the organisation; null for an open or unknown range.
  span() { return periodSpan(state.period, state.orgToday, state.custom); },
  // GET, kept when the span ended before the organisation's today (a chart's older spans).
  cached(path, params) {
    if (!params.to || !state.orgToday || params.to >= state.orgToday) return api.get(path, params);
    const key = `${path}?${JSON.stringify(params)}`;
    if (closed.size > 500) closed.clear();
    if (!closed.has(key)) closed.set(key, api.get(path, params).catch((e) => { closed.delete(key); throw e; }));
    return closed.get(key);
  },
};

// One refresh of the active view at a time; changes meanwhile make exactly one more.
function refresh(flash) {
  if (!api || !mounted) return;
  if (running) { again = again === null ? flash : again && flash; return; }
  const wait = startedAt + LIVE_GAP_MS - Date.now();
  if (flash && wait > 0) {
    if (!timer) timer = setTimeout(() => { timer = null; refresh(true); }, wait);
    return;
  }
  running = true;
  startedAt = Date.now();
  const view = active;
  view.refresh(ctx, flash).catch((e) => { $("error").textContent = e.message; }).finally(() => {
    running = false;
    if (again !== null) { const live = again; again = null; refresh(live); }
  });
}

function mountViews() {
  for (const v of VIEWS) v.mount($(`view-${v.id}`), ctx);
  mounted = true;
  if (state.last) overview.live(ctx, state.last, false);
}

// --- tabs: arrow keys move between them (WAI-ARIA tabs pattern) ---------------------------------
function buildTabs() {
  const list = $("tabs");
  list.replaceChildren();
  for (const v of VIEWS) {
    const b = document.createElement("button");
    b.type = "button";
    b.id = `tab-${v.id}`;
    b.setAttribute("role", "tab");
    b.setAttribute("aria-controls", `view-${v.id}`);
    b.textContent = t(v.title);
    b.addEventListener("click", () => show(v));
    list.append(b);
    $(`view-${v.id}`).setAttribute("aria-labelledby", b.id);
  }
  list.addEventListener("keydown", (ev) => {
    const i = VIEWS.indexOf(active);
    const to = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: VIEWS.length - 1 }[ev.key];
    if (to === undefined) return;
    ev.preventDefault();
    show(VIEWS[(to + VIEWS.length) % VIEWS.length]);
    $(`tab-${active.id}`).focus();
  });
  markTabs();
}

function markTabs() {
  for (const v of VIEWS) {
    const on = v === active;
    const b = $(`tab-${v.id}`);
    b.setAttribute("aria-selected", String(on));
    b.tabIndex = on ? 0 : -1;
    $(`view-${v.id}`).hidden = !on;
  }
}

// The address's hash: #orders, or #token=...&view=orders (a link that carries the token too).
function hashParams() { return new URLSearchParams(location.hash.slice(1)); }

// The view the hash names.
function viewOfHash() { return VIEWS.find((v) => v.id === (hashParams().get("view") || location.hash.slice(1))); }

// A link, an edit of the address or Back and Forward after the start: its view; a token in it leaves the
// address as at the start, and another one than this page's (another organisation's link) starts the page
// again with it.
function onHash() {
  const token = hashParams().get("token");
  if (token && token !== sessionStorage.getItem("token")) { location.reload(); return; }
  const view = viewOfHash();
  if (token) history.replaceState(null, "", `${location.pathname}${location.search}#${(view ?? active).id}`);
  if (view && view !== active) show(view, false);
}

// Shows a view; one the user chose (a tab, the arrow keys) becomes an entry of the browser's history, so
// that Back returns to the view before it (not when the address already names it: Back, a link).
function show(view, remember = true) {
  active = view;
  markTabs();
  if (remember && !document.body.classList.contains("embed") && location.hash !== `#${view.id}`) {
    history.pushState(null, "", `${location.search}#${view.id}`);
  }
  refresh(false);
}

// --- filters ------------------------------------------------------------------------------------
function addOption(select, value, text) {
  if (![...select.options].some((o) => o.value === value)) select.add(new Option(text ?? value, value));
}

function buildFilters() {
  const period = $("period");
  period.replaceChildren(...["today", "yesterday", "7d", "30d", "90d", "month", "custom"]
    .map((p) => new Option(t(`period.${p}`), p, false, p === state.period)));
  const lang = $("lang");
  lang.replaceChildren(...LANGUAGES.map((l) => new Option(t(`lang.${l}`), l, false, l === document.documentElement.lang)));
  $("store").options[0].textContent = t("filter.all_stores");
  $("segment").options[0].textContent = t("filter.no_segment");
}

function onFilters() {
  state.period = $("period").value;
  $("custom").hidden = state.period !== "custom";
  state.custom = { from: $("from").value, to: $("to").value };
  state.store = $("store").value;
  state.currency = $("currency").value;
  state.segment = $("segment").value;
  if (state.period === "custom" && (!state.custom.from || !state.custom.to)) return; // wait for both dates
  if (state.last) overview.live(ctx, state.last, false);
  refresh(false);
}

async function learnOrg(org) {
  api = new Api(org, sessionStorage.getItem("token"));
  const me = await fetch("/api/v1/me", { headers: { Authorization: `Bearer ${api.token}` } })
    .then((r) => (r.ok ? r.json() : null)).catch(() => null);
  state.readOnly = Boolean(me && me.read_only);
  state.orgToday = (await api.get("figures", { period: "today" })).from;
  const cur = $("currency");
  addOption(cur, state.last.currency);
  state.currency = state.currency || state.last.currency;
  cur.value = state.currency;
  for (const code of ECB) addOption(cur, code);
  setInterval(async () => { state.orgToday = (await api.get("figures", { period: "today" })).from; }, 300000);
}

// The filters' other choices (stores' currencies, segments): read beside the first view, not before it.
async function learnChoices() {
  try {
    const c = await api.get("connections");
    for (const s of c.connections) { addOption($("store"), s.store); addOption($("currency"), s.currency); }
  } catch { /* the store list from the snapshot stays */ }
  await learnSegments();
}

async function learnSegments() {
  const segs = await api.optional("segments").catch(() => null);
  segmentChoices = segs ? segs.segments ?? [] : [];
  fillSegments();
  $("segment-filter").hidden = segmentChoices.length === 0;
}

// The segment filter's choices, named and sorted in the page's language (again when it changes).
let segmentChoices = [];
function fillSegments() {
  const select = $("segment"), chosen = select.value;
  select.replaceChildren(select.options[0], ...[...segmentChoices].sort((a, b) => bySegmentName(a, b, fmt.getLocale()))
    .map((s) => new Option(segmentName(s), s.id, false, s.id === chosen)));
}

// --- the live feed ------------------------------------------------------------------------------
function setStatus(kind, reason) {
  const el = $("status");
  if (kind === "disconnected") el.textContent = reason ? t("status.disconnected_reason", { reason }) : t("status.disconnected");
  else el.textContent = t(`status.${kind}`);
  if (kind !== "live") el.classList.remove("stale");
}

async function onMessage(msg) {
  if (msg.type === "snapshot") {
    $("org").textContent = `· ${msg.org}`;
    for (const s of Object.keys(msg.figures ? msg.figures.stores : {})) addOption($("store"), s);
  }
  $("error").textContent = msg.error || "";
  if (msg.figures || msg.type === "snapshot") state.last = msg;
  const fresh = msg.freshness; // alerts carry none: they leave the indicator as it is
  if (fresh) {
    $("status").textContent = fresh.live ? t("status.live")
      : fresh.stale_since ? t("status.stale_since", { since: fmt.dateTime(fresh.stale_since) }) : t("status.stale_none");
    $("status").classList.toggle("stale", !fresh.live);
  }
  if (msg.type === "snapshot" && !api) {
    await learnOrg(msg.org);
    $("dashboard").hidden = false;
    mountViews();
    refresh(false);
    learnChoices();
    setInterval(() => { if (document.visibilityState === "visible") refresh(false); }, REREAD_MS);
    return;
  }
  if (mounted && msg.figures) overview.live(ctx, msg, msg.type === "figures");
  if (msg.type === "alert") overview.quotaAt = 0; // a quota crossed: re-read it now
  if (msg.type !== "pong") refresh(true); // every change may move any view: the active one re-reads
}

function connect(token) {
  connectLive({
    port: WS_PORT, token,
    onMessage: (m) => { onMessage(m).catch((e) => { $("error").textContent = e.message; }); },
    onStatus: setStatus,
    onRefused: (message) => {
      $("error").textContent = message;
      sessionStorage.removeItem("token");
      $("login").hidden = false;
    },
  });
}

async function main() {
  const { lang, locale } = pickLanguage(location.search, navigator.languages || [navigator.language]);
  await loadLanguage(lang);
  document.documentElement.lang = lang;
  fmt.setLocale(locale);
  translatePage(document);
  buildFilters();
  buildTabs();
  // /embed/<view> (dashapi's ws_gateway/embed.py serves this page there, for an iframe) shows that view
  // alone, without tabs; else the hash names the view, at the start and whenever it changes (a link, an edit)
  const embedded = location.pathname.match(/^\/embed\/([a-z]+)$/);
  const wanted = embedded ? VIEWS.find((v) => v.id === embedded[1]) : viewOfHash();
  document.body.classList.toggle("embed", Boolean(embedded));
  if (wanted) { active = wanted; markTabs(); }
  if (!embedded) window.addEventListener("hashchange", onHash);
  for (const id of ["period", "from", "to", "store", "currency", "segment"]) $(id).addEventListener("change", onFilters);
  $("lang").addEventListener("change", async () => {
    const next = new URLSearchParams(location.search);
    next.set("lang", $("lang").value);
    history.replaceState(null, "", `?${next}${location.hash}`);
    const picked = pickLanguage(location.search, navigator.languages || [navigator.language]);
    await loadLanguage(picked.lang);
    document.documentElement.lang = picked.lang;
    fmt.setLocale(picked.locale);
    translatePage(document);
    buildFilters();
    fillSegments();
    buildTabs();
    if (api) { mountViews(); refresh(false); }
  });
  $("login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem("token", $("token").value);
    $("login").hidden = true;
    connect($("token").value);
  });
  const fromHash = hashParams().get("token");
  if (fromHash) {
    sessionStorage.setItem("token", fromHash);
    history.replaceState(null, "", `${location.pathname}${location.search}${embedded ? "" : `#${active.id}`}`);
  }
  const token = sessionStorage.getItem("token");
  if (token) connect(token); else $("login").hidden = false;
}

main();

// Small DOM helpers: elements, tables, headings. No inline styles or handlers (the page's CSP allows none).

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") el.textContent = v;
    else if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c);
  return el;
}

// A <table> of `rows` with `columns` [{label, value: row -> text or element, num: right-aligned?}], or a
// "nothing here" line when there are no rows.
export function table(caption, columns, rows, emptyText) {
  if (!rows || rows.length === 0) return h("p", { class: "empty", text: emptyText });
  return h("div", { class: "scroll", role: "region", "aria-label": caption, tabindex: "0" },
    h("table", {},
      h("caption", { class: "visually-hidden", text: caption }),
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : null, text: c.label })))),
      h("tbody", {}, rows.map((r) => h("tr", {}, columns.map((c) => {
        const v = c.value(r); // text, or an element (a button in a cell)
        return v instanceof Node ? h("td", { class: c.num ? "num" : null }, v) : h("td", { class: c.num ? "num" : null, text: v });
      }))))));
}

// A card ("section") with a heading and a body that refreshes replace.
export function card(title, { wide = false } = {}) {
  const body = h("div", { class: "card-body" });
  const heading = h("h2", { text: title });
  const el = h("section", { class: wide ? "card wide" : "card" }, heading, body);
  // set(table, maybe) : a part given as null or undefined is left out (replaceChildren would print "null")
  return { el, body, heading, set(...nodes) { body.replaceChildren(...nodes.flat().filter((n) => n != null)); } };
}

export function errorLine(message) { return h("p", { class: "error", role: "status", text: message }); }

// Replaces the text of `el` and flashes it when a live update changed it.
export function setText(el, text, flash) {
  if (el.textContent === text) return;
  el.textContent = text;
  el.classList.remove("changed");
  if (flash) { void el.offsetWidth; el.classList.add("changed"); }
}

// Connections: data monitoring per store (sync, last event, events in the last hour, rejected and
// quarantined deliveries and why), and the latest rejected deliveries.
import { card, errorLine, h, table } from "../dom.js";
import * as fmt from "../format.js";

export default {
  id: "connections",
  title: "view.connections",
  mount(panel, ctx) {
    const t = ctx.t;
    this.stores = card(t("connections.stores"), { wide: true });
    this.rejected = card(t("connections.rejected"), { wide: true });
    panel.replaceChildren(h("div", { class: "cards" }, this.stores.el, this.rejected.el));
  },
  async refresh(ctx) {
    const t = ctx.t;
    try {
      const [c, r] = await Promise.all([ctx.api.get("connections"), ctx.api.get("rejected", { limit: 20 })]);
      // ingest/sync.py's checkpoint: status, the resource in progress, events appended so far, the error.
      const sync = (s) => (!s.sync ? t("connections.no_sync") : [t(`sync.${s.sync.status}`), s.sync.resource,
        t("connections.appended", { count: fmt.number(s.sync.appended ?? 0) }), s.sync.error].filter(Boolean).join(" · "));
      this.stores.set(table(t("connections.stores"), [
        { label: t("col.store"), value: (s) => s.store },
        { label: t("connections.provider"), value: (s) => s.provider },
        { label: t("connections.currency"), value: (s) => s.currency },
        { label: t("connections.last_event"), value: (s) => fmt.dateTime(s.last_event_time) },
        { label: t("connections.last_hour"), value: (s) => fmt.number(s.events_last_hour), num: true },
        { label: t("connections.rejected_count"), value: (s) => fmt.number(s.rejected.count), num: true },
        { label: t("connections.last_reason"), value: (s) => s.rejected.last_reason ?? "" },
        { label: t("connections.quarantined"), value: (s) => fmt.number(s.quarantined.count), num: true },
        { label: t("connections.sync"), value: sync },
      ], c.connections, t("empty")));
      this.rejected.set(table(t("connections.rejected"), [
        { label: t("connections.received"), value: (x) => fmt.dateTime(x.received_at * 1000) },
        { label: t("col.store"), value: (x) => x.store ?? "" },
        { label: t("connections.status"), value: (x) => String(x.status ?? "") },
        { label: t("connections.reason"), value: (x) => x.reason ?? x.error ?? "" },
      ], r.rejected, t("connections.none_rejected")));
    } catch (e) { this.stores.set(errorLine(e.message)); }
  },
};

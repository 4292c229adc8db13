// Marketing: e-mail-attributed revenue over time by campaign or automation, and the content table.
import { drawBarList, drawChart, timeOf } from "../charts.js";
import { card, errorLine, h, table } from "../dom.js";
import * as fmt from "../format.js";
import { spans } from "../period.js";

const MOST_SPANS = 14;
const MOST_LINES = 5;

export default {
  id: "marketing",
  title: "view.marketing",
  mount(panel, ctx) {
    const t = ctx.t;
    this.chart = card(t("marketing.over_time"), { wide: true });
    this.content = card(t("marketing.content"), { wide: true });
    panel.replaceChildren(h("div", { class: "cards" }, this.chart.el, this.content.el));
  },
  async refresh(ctx) {
    const t = ctx.t;
    try {
      const total = await ctx.api.get("attribution", ctx.params({}));
      const figures = await ctx.api.get("figures", ctx.params({}));
      // The content table (server's `content`: sends and engagement per campaign or automation beside
      // its attributed money); rates over the people sent one, "–" where no send is reported.
      this.content.set(h("p", { class: "muted", text: t("marketing.rates_note") }), table(t("marketing.content"), [
        { label: t("email.campaign"), value: (c) => c.campaign },
        { label: t("marketing.type"), value: (c) => (c.type ? t(`marketing.type_${c.type}`) : "–") },
        { label: t("marketing.last_sent"), value: (c) => (c.last_sent ? fmt.dateTime(c.last_sent) : "–") },
        { label: t("marketing.sent"), value: (c) => fmt.number(c.sent), num: true },
        { label: t("marketing.opened"), value: (c) => fmt.number(c.opened), num: true },
        { label: t("marketing.open_rate"), value: (c) => fmt.percent(c.open_rate ?? undefined), num: true },
        { label: t("marketing.clicked"), value: (c) => fmt.number(c.clicked), num: true },
        { label: t("marketing.click_rate"), value: (c) => fmt.percent(c.click_rate ?? undefined), num: true },
        { label: t("kpi.orders"), value: (c) => fmt.number(c.orders), num: true },
        { label: t("kpi.revenue"), value: (c) => fmt.money(c.revenue), num: true },
      ], total.content ?? [], t("email.none")));
      const first = total.from || figures.from;
      const last = total.to || figures.to;
      const parts = first === last ? [{ from: first, to: last }] : spans(first, last, MOST_SPANS);
      const bodies = await Promise.all(parts.map((s) => ctx.cached("attribution", ctx.params(s))));
      const names = total.campaigns.slice(0, MOST_LINES).map((c) => c.campaign);
      const amount = (b, name) => { const c = b.campaigns.find((x) => x.campaign === name); return c ? c.revenue.amount : 0; };
      const series = names.length ? names.map((n) => ({ label: n, values: bodies.map((b) => amount(b, n)) }))
        : [{ label: t("kpi.email_revenue"), values: bodies.map((b) => b.revenue.amount) }];
      const money = (v) => fmt.money({ ...total.revenue, amount: v });
      if (parts.length === 1) { // one day: a line of one point draws nothing
        drawBarList(this.chart.body, series.map((x) => ({ key: x.label, label: x.label, value: x.values[0], text: money(x.values[0]) })),
          "attributed-day");
      } else {
        drawChart(this.chart.body, { xs: parts.map((s) => timeOf(s.from)), days: true, xLabel: t("chart.from"), series, format: money });
      }
    } catch (e) { this.chart.set(errorLine(e.message)); }
  },
};

// "For you" on the overview (ActiveCampaign's recommendations): what would make the dashboard and the
// shop's marketing better, each with its action, dismissible, and gone once done. Pure decisions from
// what the API answered; the card draws them.
import { errorLine, h } from "../dom.js";

// The recommendations that apply: [{id, action?}] from the connections, the journey of the last 30
// days, and the automations and segments (null: the server has no such API, so nothing to suggest).
export function recommend({ connections, visitors, automations, segments }) {
  const out = [];
  const tracked = connections.some((c) => c.provider === "events");
  if (!tracked || visitors === 0) out.push({ id: "site_tracking" });
  if (automations !== null && !automations.some((a) => /abandon/.test(String(a.trigger ?? "")))) out.push({ id: "abandoned_cart" });
  if (segments !== null) {
    const have = new Set(segments.map((s) => s.id));
    for (const [id, rule] of [["one_time_buyers", { orders: { eq: 1 } }], ["repeat_buyers", { orders: { gte: 2 } }]]) {
      if (!have.has(id)) out.push({ id: `segment_${id}`, segment: { id, rule } });
    }
  }
  return out;
}

const dismissedKey = (org) => `storepulse:dismissed:${org}`;
function dismissed(org) {
  try { return new Set(JSON.parse(localStorage.getItem(dismissedKey(org)) || "[]")); } catch { return new Set(); }
}

export async function drawRecommendations(ctx, target) {
  const t = ctx.t;
  const org = ctx.api.org;
  try {
    const [c, j, a, s] = await Promise.all([ctx.api.get("connections"), ctx.api.get("journey", { period: "30d" }),
      ctx.api.optional("automations"), ctx.api.optional("segments")]);
    const hidden = dismissed(org);
    const items = recommend({ connections: c.connections, visitors: j.visitors, automations: a && (a.automations ?? []),
      segments: s && (s.segments ?? []) }).filter((r) => !hidden.has(r.id));
    target.el.hidden = items.length === 0;
    target.set(h("ul", { class: "recommendations" }, items.map((r) => {
      const dismiss = h("button", { type: "button", class: "link", "data-dismiss": r.id, onclick: () => {
        const now = dismissed(org);
        now.add(r.id);
        localStorage.setItem(dismissedKey(org), JSON.stringify([...now]));
        drawRecommendations(ctx, target);
      } }, t("rec.dismiss"));
      const act = r.segment ? h("button", { type: "button", class: "engage", onclick: async () => {
        try {
          await ctx.api.send("PUT", `segments/${r.segment.id}`, { name: t(`rec.${r.id}.name`), rule: r.segment.rule });
          drawRecommendations(ctx, target);
        } catch (e) { target.body.append(errorLine(e.message)); }
      } }, t("rec.save_segment")) : null;
      return h("li", { "data-recommendation": r.id }, h("strong", { text: t(`rec.${r.id}.title`) }), " ",
        h("span", { text: t(`rec.${r.id}.why`) }), " ", act, " ", dismiss);
    })));
  } catch (e) { target.set(errorLine(e.message)); }
}

// "For you" on the overview (ActiveCampaign's recommendations): what would make the dashboard and the
// shop's marketing better, each with its action, dismissible, and gone once done. Pure decisions from
// what the API answered; the card draws them.
import { errorLine, h } from "../dom.js";

// The abandoned-cart automation the card offers to define: a reminder an hour after a cart is left,
// dropped if they buy meanwhile; to the shopper when an e-mail channel mails customers, else to the
// first channel that is enabled. null: no channel to send it to.
export function abandonedCartAutomation(channels) {
  const usable = (channels ?? []).filter((c) => c.enabled !== false);
  const pick = usable.find((c) => c.kind === "email" && c.to === "customer") ?? usable[0];
  return pick ? { trigger: "cart.abandoned", wait: "1h", cancel_on: ["order.paid"], send: [pick.id] } : null;
}

// The recommendations that apply: [{id, segment?, automation?}] from the connections, the journey of the
// last 30 days, the automations and segments (null: the server has no such API, so nothing to suggest)
// and the channels (null: not readable here, e.g. through a share link).
export function recommend({ connections, visitors, automations, segments, channels = null }) {
  const out = [];
  const tracked = connections.some((c) => c.provider === "events");
  if (!tracked || visitors === 0) out.push({ id: "site_tracking" });
  if (automations !== null && !automations.some((a) => /abandon/.test(String(a.trigger ?? "")))) {
    out.push({ id: "abandoned_cart", automation: abandonedCartAutomation(channels), channels: channels !== null });
  }
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
    const [c, j, a, s, ch] = await Promise.all([ctx.api.get("connections"), ctx.api.get("journey", { period: "30d" }),
      ctx.api.optional("automations"), ctx.api.optional("segments"), ctx.api.optional("channels").catch(() => null)]);
    const hidden = dismissed(org);
    const items = recommend({ connections: c.connections, visitors: j.visitors, automations: a && (a.automations ?? []),
      segments: s && (s.segments ?? []), channels: ch && (ch.channels ?? []) }).filter((r) => !hidden.has(r.id));
    target.el.hidden = items.length === 0;
    target.set(h("ul", { class: "recommendations" }, items.map((r) => {
      const dismiss = h("button", { type: "button", class: "link", "data-dismiss": r.id, onclick: () => {
        const now = dismissed(org);
        now.add(r.id);
        localStorage.setItem(dismissedKey(org), JSON.stringify([...now]));
        drawRecommendations(ctx, target);
      } }, t("rec.dismiss"));
      const act = ctx.readOnly ? null : r.segment ? h("button", { type: "button", class: "engage", onclick: async () => {
        try {
          await ctx.api.send("PUT", `segments/${r.segment.id}`, { name: t(`rec.${r.id}.name`), rule: r.segment.rule });
          drawRecommendations(ctx, target);
        } catch (e) { target.body.append(errorLine(e.message)); }
      } }, t("rec.save_segment")) : r.automation ? h("button", { type: "button", class: "engage", "data-enable": r.id,
        onclick: async (ev) => {
          const li = ev.currentTarget.closest("li");
          ev.currentTarget.disabled = true;
          try { // the list shows it once the dataflow has folded it: until then, say it is done here
            await ctx.api.send("PUT", "automations/abandoned-cart", r.automation);
            li.replaceChildren(h("span", { text: t("rec.enabled", { channel: r.automation.send[0] }) }));
          } catch (e) { ev.currentTarget.disabled = false; target.body.append(errorLine(e.message)); }
        } }, t("rec.enable", { channel: r.automation.send[0] })) : null;
      // no channel to send a reminder to: say where one is added
      const missing = r.id === "abandoned_cart" && r.channels && !r.automation ? [" ", h("span", { text: t("rec.abandoned_cart.no_channel") })] : [];
      return h("li", { "data-recommendation": r.id }, h("strong", { text: t(`rec.${r.id}.title`) }), " ",
        h("span", { text: t(`rec.${r.id}.why`) }), ...missing, " ", act, " ", dismiss);
    })));
  } catch (e) { target.set(errorLine(e.message)); }
  target.el.dataset.drawn = "true"; // what has been recommended is known (a test waits for it: the page never idles while live)
}

// A definition (a segment, an automation) reaches its list through the event log and the dataflow (~0.5 s),
// and one that moves no figure sends nothing on the WebSocket: after a save or a deletion the list at `path`
// is read again until `done(body)` holds, for at most `ms`, then the view refreshes.
export async function settle(ctx, path, done, ms = 10000) {
  for (const end = Date.now() + ms; Date.now() < end;) {
    const body = await ctx.api.optional(path).catch(() => null);
    if (body && done(body)) break;
    await new Promise((resolve) => { setTimeout(resolve, 250); });
  }
  ctx.refresh();
}

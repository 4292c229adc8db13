// The WebSocket feed (ws_gateway/live.py): auth, then a snapshot, then a "figures" message after every
// change (and "alert"/"segment" messages). Reconnects after a drop; a refused token does not retry.

export function connectLive({ port, token, onMessage, onStatus, onRefused }) {
  let stopped = false;
  let socket = null;
  const open = () => {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.hostname}:${port}/v1/live`);
    socket.onopen = () => { socket.send(JSON.stringify({ type: "auth", token })); onStatus("connecting"); };
    socket.onmessage = (ev) => {
      const msg = JSON.parse(ev.data);
      if (msg.type === "error") { stopped = true; onRefused(msg.message); return; }
      onMessage(msg);
    };
    socket.onclose = (ev) => {
      if (stopped) { onStatus("not_connected"); return; }
      onStatus("disconnected", ev.reason);
      setTimeout(open, ev.code === 1013 ? 10000 : 1000); // 1013: at a connection limit, try later
    };
  };
  open();
  return { stop() { stopped = true; if (socket) socket.close(); } };
}

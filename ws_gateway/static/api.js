// The read API of one organisation, with its bearer token. The server runs at most 4 requests of an
// organisation at once (ws_gateway/limits.py): this client keeps 3 in flight and queues the rest, and
// waits out a 429's Retry-After once before giving up.

const IN_FLIGHT = 3;

export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

export class Api {
  constructor(org, token) {
    this.org = org;
    this.token = token;
    this.running = 0;
    this.waiting = [];
  }

  url(path, params = {}) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
    const qs = q.toString();
    return `/api/v1/orgs/${encodeURIComponent(this.org)}/${path}${qs ? `?${qs}` : ""}`;
  }

  // GET orgs/{org}/<path>?params as JSON; an error answer throws ApiError with the server's message.
  get(path, params) { return this.request("GET", path, params); }

  // POST/PUT `body` as JSON (a segment preview or definition, a delivery's replay). A share link's
  // token is read-only: the server answers 403, which throws like any error.
  send(method, path, body) { return this.request(method, path, {}, body); }

  async request(method, path, params, body) {
    await this.slot();
    try {
      for (let attempt = 0; ; attempt++) {
        const init = { method, headers: { Authorization: `Bearer ${this.token}` } };
        if (body !== undefined) { init.body = JSON.stringify(body); init.headers["Content-Type"] = "application/json"; }
        const res = await fetch(this.url(path, params), init);
        if (res.status === 429 && attempt === 0) {
          const wait = Math.min(Number(res.headers.get("Retry-After")) || 1, 5);
          await new Promise((r) => setTimeout(r, wait * 1000));
          continue;
        }
        let answer = null;
        try { answer = await res.json(); } catch { answer = null; }
        if (!res.ok) throw new ApiError(res.status, (answer && answer.error) || `HTTP ${res.status}`);
        return answer;
      }
    } finally {
      this.release();
    }
  }

  // Like get, but null when the server has no such endpoint (404): segments and automations are optional.
  async optional(path, params) {
    try { return await this.get(path, params); } catch (e) {
      if (e instanceof ApiError && (e.status === 404 || e.status === 405)) return null;
      throw e;
    }
  }

  slot() {
    if (this.running < IN_FLIGHT) { this.running++; return Promise.resolve(); }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  release() {
    const next = this.waiting.shift();
    if (next) next(); else this.running--;
  }
}

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
  async get(path, params) {
    await this.slot();
    try {
      for (let attempt = 0; ; attempt++) {
        const res = await fetch(this.url(path, params), { headers: { Authorization: `Bearer ${this.token}` } });
        if (res.status === 429 && attempt === 0) {
          const wait = Math.min(Number(res.headers.get("Retry-After")) || 1, 5);
          await new Promise((r) => setTimeout(r, wait * 1000));
          continue;
        }
        let body = null;
        try { body = await res.json(); } catch { body = null; }
        if (!res.ok) throw new ApiError(res.status, (body && body.error) || `HTTP ${res.status}`);
        return body;
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

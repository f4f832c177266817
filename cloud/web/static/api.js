// The REST API of the cloud that serves this page: same origin, the token only in a header.
const TOKEN_KEY = "spoke.token";

export const session = {
  get token() { return sessionStorage.getItem(TOKEN_KEY); },
  set token(value) {
    if (value) sessionStorage.setItem(TOKEN_KEY, value); else sessionStorage.removeItem(TOKEN_KEY);
  },
};

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

function describe(status, body) {
  let detail = body && body.detail;
  if (Array.isArray(detail)) detail = detail.map((d) => d.msg).join("; ");
  if (!detail) detail = `HTTP ${status}`;
  if (status === 409) return `hub offline or busy (409): ${detail}`;
  if (status === 429) return `too many requests (429): ${detail}`;
  return `${detail} (${status})`;
}

export async function api(method, path, body, token = session.token) {
  const headers = { Authorization: `Bearer ${token}`, Accept: "application/json" };
  const init = { method, headers, credentials: "omit", cache: "no-store", referrerPolicy: "no-referrer" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!response.ok) {
    const error = new ApiError(response.status, describe(response.status, data));
    error.body = data;
    throw error;
  }
  return { data, headers: response.headers };
}

// Every page of a cursor-paginated list.
export async function listAll(path) {
  const items = [];
  let cursor = null;
  for (;;) {
    const sep = path.includes("?") ? "&" : "?";
    const url = cursor ? `${path}${sep}limit=1000&cursor=${encodeURIComponent(cursor)}` : `${path}${sep}limit=1000`;
    const { data, headers } = await api("GET", url);
    items.push(...data);
    cursor = headers.get("X-Next-Cursor");
    if (!cursor) return items;
  }
}

// Calls to the service with the session cookie. Mutating requests repeat the CSRF token (double submit).
export class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

export function csrfToken() {
  const hit = document.cookie.split("; ").find((c) => c.startsWith("vfx_csrf="));
  return hit ? decodeURIComponent(hit.slice("vfx_csrf=".length)) : "";
}

export async function call(method, path, { json, form, raw } = {}) {
  const headers = {};
  if (!["GET", "HEAD"].includes(method)) headers["X-CSRF-Token"] = csrfToken();
  let body;
  if (json !== undefined) { headers["Content-Type"] = "application/json"; body = JSON.stringify(json); }
  if (form !== undefined) body = form;
  const response = await fetch(path, { method, headers, body, credentials: "same-origin" });
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail ?? detail; } catch { /* not JSON */ }
    if (typeof detail !== "string") detail = JSON.stringify(detail);
    throw new ApiError(response.status, detail);
  }
  if (raw) return response;
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  return type.includes("application/json") ? response.json() : response;
}

export const get = (path) => call("GET", path);
export const post = (path, options) => call("POST", path, options);
export const del = (path, options) => call("DELETE", path, options);

export function query(params) {
  return new URLSearchParams(Object.entries(params).filter(([, v]) => v !== null && v !== undefined)).toString();
}

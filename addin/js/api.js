// The calsync API from the browser: JSON in and out, the CSRF token on every change,
// and every failure turned into an ApiError whose message is a sentence for the user.

const UNREACHABLE =
  "calsync cannot be reached. Check your internet connection, then try again.";
const NO_ROUTE = "There is nothing at this address.";
const SERVER_TROUBLE = "Something went wrong on our side. Try again in a minute.";

export class ApiError extends Error {
  constructor(status, message, fields = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.fields = fields || {};
  }
  get notFound() { return this.status === 404; }
  get unauthorized() { return this.status === 401; }
  // The route itself does not exist on this server (not deployed yet), as opposed to a
  // 404 about a thing the route looked for.
  get routeMissing() { return this.status === 404 && this.message === NO_ROUTE; }
}

let csrfToken = null;

export function setCsrfToken(token) { csrfToken = token || null; }

async function ensureCsrf() {
  if (!csrfToken) {
    const body = await request("GET", "/api/auth/csrf");
    csrfToken = body.csrf_token;
  }
  return csrfToken;
}

function fallbackMessage(status) {
  if (status === 401) return "You are not signed in. Open calsync from Outlook to sign in.";
  if (status === 403) return "Only an administrator of your organization can do this.";
  if (status === 404) return "This is not available on this server.";
  if (status === 413) return "What you sent is too large.";
  if (status === 429) return "Too many attempts. Wait a minute, then try again.";
  if (status >= 500) return SERVER_TROUBLE;
  return "The request was refused. Check what you entered, then try again.";
}

async function request(method, path, body, retried = false) {
  const headers = { Accept: "application/json" };
  const init = { method, headers, credentials: "same-origin" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  if (!["GET", "HEAD"].includes(method)) headers["X-CSRFToken"] = await ensureCsrf();
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, UNREACHABLE);
  }
  if (response.status === 204) return null;
  let data = null;
  const type = response.headers.get("Content-Type") || "";
  if (type.includes("json")) {
    try { data = await response.json(); } catch { data = null; }
  }
  if (response.ok) return data;
  const err = data && data.error;
  const message = (err && err.message) || fallbackMessage(response.status);
  // A stale CSRF token (the session was renewed elsewhere): fetch a new one, once.
  if (response.status === 400 && !retried && /security token/i.test(message) && method !== "GET") {
    csrfToken = null;
    return request(method, path, body, true);
  }
  throw new ApiError(response.status, message, err && err.fields);
}

export const api = {
  get: (path) => request("GET", path),
  post: (path, body = {}) => request("POST", path, body),
  put: (path, body = {}) => request("PUT", path, body),
  patch: (path, body = {}) => request("PATCH", path, body),
  delete: (path) => request("DELETE", path),
};

// Which routes this server offers (from its OpenAPI document), cached per page.
let routesPromise = null;
export function routes() {
  if (!routesPromise) {
    routesPromise = api.get("/api/openapi.json")
      .then((spec) => new Set(Object.keys((spec && spec.paths) || {})))
      .catch(() => new Set());
  }
  return routesPromise;
}

export async function hasRoute(path) {
  return (await routes()).has(path);
}

// A message for a feature whose route answers 404 (not deployed on this server yet).
export function notAvailable(feature) {
  feature = feature.charAt(0).toUpperCase() + feature.slice(1);
  return `${feature} is not available yet on this server. Ask your administrator, or try again after the next update.`;
}

// The sentence to show for an error; `feature` names what is missing if the route is.
export function errorText(error, feature) {
  if (error instanceof ApiError && error.routeMissing && feature) return notAvailable(feature);
  return (error && error.message) || String(error);
}

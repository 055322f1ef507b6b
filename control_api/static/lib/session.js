// The sign-in every page shares (issue 13), kept in localStorage so moving between pages keeps
// it, and api(): the one way pages call the public API. Access tokens are short-lived; api()
// renews them with the refresh token shortly before they expire and once more on a 401.
const KEY = "openvisit.session";

// Problem details come in English; a page in another language puts its own sentence for the
// problem's type (its slug, the API's stable contract) in their place (lib/i18n.js sets this).
let localizeProblem = (_slug, _status, detail) => detail;

export function setProblemLocalizer(fn) {
  localizeProblem = fn;
}

export class ApiError extends Error {
  constructor(status, problem) {
    const slug = (problem.type || "").split("/").pop();
    super(localizeProblem(slug, status, problem.detail || `${status}`));
    this.status = status;
    this.slug = slug;
    this.detail = problem.detail;  // the API's own words (English), for logs and support
    this.problem = problem;
  }
}

export function currentSession() {
  try {
    return JSON.parse(localStorage.getItem(KEY) || "null");
  } catch {
    return null;
  }
}

function store(login) {
  const previous = currentSession() || {};
  const session = {
    access: login.access_token,
    refresh: login.refresh_token || previous.refresh,
    expiresAt: Date.parse(login.expires_at),
    role: login.role || previous.role,
    subject: login.subject_id || previous.subject,
  };
  localStorage.setItem(KEY, JSON.stringify(session));
  return session;
}

export function forget() {
  localStorage.removeItem(KEY);
}

async function request(path, { token, method = "GET", body, idempotent = false, raw = null, contentType = null } = {}) {
  const headers = {};
  if (raw === null) headers["Content-Type"] = "application/json";
  else if (contentType) headers["Content-Type"] = contentType;
  if (token) headers.Authorization = `Bearer ${token}`;
  if (idempotent) headers["Idempotency-Key"] = typeof idempotent === "string" ? idempotent : `web-${crypto.randomUUID()}`;
  const resp = await fetch(path, { method, headers, body: raw !== null ? raw : body ? JSON.stringify(body) : undefined });
  if (!resp.ok) {
    const problem = await resp.json().catch(() => ({}));
    throw new ApiError(resp.status, problem);
  }
  const type = resp.headers.get("Content-Type") || "";
  if (resp.status === 204) return null;
  return type.includes("json") ? resp.json() : resp.blob();
}

let renewing = null;

async function renew() {
  const session = currentSession();
  if (!session || !session.refresh) throw new ApiError(401, { detail: "not signed in" });
  renewing = renewing || request("/v1/auth/refresh", { method: "POST", body: { refresh_token: session.refresh } })
    .then(store)
    .catch((err) => { forget(); throw err; })
    .finally(() => { renewing = null; });
  return renewing;
}

/** Call the API as the signed-in person (or anonymously when nobody is). */
export async function api(path, options = {}) {
  let session = currentSession();
  if (session && session.expiresAt - Date.now() < 60000) session = await renew();
  try {
    return await request(path, { ...options, token: session && session.access });
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 401 || !session || err.slug === "second-factor-required") throw err;
    session = await renew();  // the token may have expired between the check and the call
    return request(path, { ...options, token: session.access });
  }
}

/** Sign in with a password (and a second-factor or recovery code when asked for one). */
export async function signIn(email, password, code = "") {
  const body = { email, password };
  const typed = code.replace(/\s/g, "");
  if (typed) body[/^[0-9]{6}$/.test(typed) ? "second_factor_code" : "recovery_code"] = code.trim();
  const login = await request("/v1/auth/login", { method: "POST", body });
  store(login);
  return login;
}

export async function signInKiosk(kioskId, secret) {
  const login = await request("/v1/auth/kiosk", { method: "POST", body: { kiosk_id: kioskId, secret } });
  store(login);
  return login;
}

export async function signOut() {
  try {
    if (currentSession()) await api("/v1/auth/logout", { method: "POST" });
  } finally {
    forget();
  }
}

/** Replace the session's access token (after setting up the second factor). */
export function adoptToken(accessToken, expiresAt) {
  store({ access_token: accessToken, expires_at: expiresAt });
}

const HOMES = {
  visitor: "/app/visits.html",
  attorney: "/app/visits.html",
  admin: "/app/admin.html",
  officer: "/app/officer.html",
  investigator: "/app/review.html",
  operator: "/app/operator.html",
  kiosk: "/app/kiosk.html",
};

export function homeFor(role) {
  return HOMES[role] || "/app/";
}

/** Pages for signed-in people call this first: back to the sign-in page when nobody is. */
export function requireSignIn(roles = null) {
  const session = currentSession();
  if (!session || (roles && !roles.includes(session.role))) {
    location.assign(`/app/?next=${encodeURIComponent(location.pathname + location.search)}`);
    return null;
  }
  return session;
}

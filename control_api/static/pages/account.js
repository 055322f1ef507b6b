// The account page (issue 13) for everyone who signs in, and the landing spot of the mailed links
// (issue 12): #confirm=TOKEN confirms the email, #reset=TOKEN chooses a new password, #forgot asks
// for a reset link. The token is in the fragment, so it never reaches a server log or a Referer
// header, and it leaves the address bar at once.
// Signed in: the email's confirmation state, the photo ID and its review state (V1), the Bar number
// (V2), contact details and language, password, two-step sign-in and the places one is signed in.
import { api, el, say, startPage, t } from "../lib/layout.js";
import { LANGUAGES, date, dateTime } from "../lib/i18n.js";

// The facility's time with the zone named (A1), without the weekday.
const when = (iso, timeZone) => dateTime(iso, timeZone, { weekday: undefined });
import { adoptToken } from "../lib/session.js";
import { qrImage } from "../lib/qr.js";

const $ = (id) => document.getElementById(id);
const MAILED = "openvisit.mailed-link";
const ROLES = ["visitor", "attorney", "admin", "officer", "investigator", "operator"];
const PHOTO_TYPES = ["image/jpeg", "image/png"];
const PHOTO_MAX_BYTES = 5 * 1024 * 1024;

// A mailed link: remembered for this tab only until acted on (a language reload keeps it).
const [action, token] = location.hash.slice(1).split("=");
let mailed = null;
if (((action === "confirm" || action === "reset") && token) || action === "forgot") {
  mailed = { action, token };
  sessionStorage.setItem(MAILED, JSON.stringify(mailed));
  history.replaceState(null, "", location.pathname);  // the token leaves the address bar
} else {
  try { mailed = JSON.parse(sessionStorage.getItem(MAILED) || "null"); } catch { mailed = null; }
}
window.addEventListener("hashchange", () => {  // another mailed link opened in this tab
  if (/^#(confirm=|reset=|forgot$)/.test(location.hash)) location.reload();
});

const { session, me } = await startPage("account", mailed ? {} : { roles: ROLES });
sessionStorage.removeItem(MAILED);
$("loading").hidden = true;

/** Run `work` with `button` disabled (a request is under way); errors go to `errorNode`. */
async function busy(button, errorNode, work) {
  if (errorNode) say(errorNode, "");
  button.disabled = true;
  try {
    return await work();
  } catch (err) {
    if (errorNode) say(errorNode, t("common:error", { message: err.message }));
    return undefined;
  } finally {
    button.disabled = false;
  }
}

// ------------------------------------------------------------------ mailed links (issue 12)

async function confirmEmail() {
  $("page-heading").textContent = t("confirm.heading");
  $("confirm").hidden = false;
  try {
    const done = await api("/v1/auth/confirm-email", { method: "POST", body: { token: mailed.token } });
    say($("confirm-status"), t("confirm.done", { email: done.email }));
  } catch (err) {
    say($("confirm-status"), err.slug === "invalid-or-expired-token" ? t("confirm.invalid")
      : t("common:error", { message: err.message }));
  }
  if (session) {
    $("confirm-link").href = "/app/account.html";
    $("confirm-link").textContent = t("confirm.account");
  }
  $("confirm-next").hidden = false;
}

function forgot() {
  $("page-heading").textContent = t("forgot.heading");
  $("forgot").hidden = false;
  $("forgot").querySelector("h2").hidden = true;
  $("forgot").addEventListener("submit", async (event) => {
    event.preventDefault();
    say($("forgot-status"), "");
    if (!$("forgot-email").checkValidity() || !$("forgot-email").value) {
      say($("forgot-error"), t("forgot.invalid"));
      return;
    }
    await busy(event.submitter || $("forgot").querySelector("button"), $("forgot-error"), async () => {
      await api("/v1/auth/password-reset", { method: "POST", body: { email: $("forgot-email").value.trim() } });
      say($("forgot-status"), t("forgot.sent"));
    });
  });
}

function reset() {
  $("page-heading").textContent = t("reset.heading");
  $("reset").hidden = false;
  $("reset").querySelector("h2").hidden = true;
  $("reset").addEventListener("submit", async (event) => {
    event.preventDefault();
    say($("reset-error"), "");
    const password = $("reset-password").value;
    if (password.length < 10) {
      say($("reset-error"), t("password.tooShort"));
      return;
    }
    if (password !== $("reset-again").value) {
      say($("reset-error"), t("password.different"));
      return;
    }
    const button = $("reset").querySelector("button");
    await busy(button, $("reset-error"), async () => {
      try {
        await api("/v1/auth/password-reset/complete", { method: "POST", body: { token: mailed.token, new_password: password } });
      } catch (err) {
        if (err.slug === "invalid-or-expired-token") throw new Error(t("reset.invalid"));
        throw err;
      }
      button.hidden = true;
      say($("reset-status"), t("reset.done"));
      $("reset-signin").hidden = false;
    });
  });
}

// ------------------------------------------------------------------ the signed-in account

const visitorish = () => me && (me.role === "visitor" || me.role === "attorney");

function renderEmail() {
  $("email-address").textContent = me.email;
  $("email-state").textContent = t(me.email_confirmed ? "email.confirmed" : "email.unconfirmed");
  $("email-state").className = `badge ${me.email_confirmed ? "ok" : "warn"}`;
  $("email-explain").hidden = me.email_confirmed;
  $("resend").hidden = me.email_confirmed || !visitorish();
}

$("resend").addEventListener("click", () => busy($("resend"), $("resend-error"), async () => {
  const done = await api("/v1/me/confirmation-email", { method: "POST" });
  say($("resend-status"), t(`email.sent.${done.status}`, { email: me.email }));
}));

// Photo ID (V1): what is on file, and how each facility that was asked decided.
let previewUrl = null;
function showImage(blob, caption) {
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = URL.createObjectURL(blob);
  $("photo-preview").src = previewUrl;
  $("photo-preview").alt = caption;
  $("photo-caption").textContent = caption;
  $("photo-figure").hidden = false;
}

async function renderPhoto() {
  $("photo-state").textContent = t(me.has_photo_id ? "photo.onFile" : "photo.none");
  $("photo-state").className = me.has_photo_id ? "" : "warn-text";
  if (me.has_photo_id) {
    const blob = await api("/v1/me/photo-id").catch(() => null);
    if (blob instanceof Blob) showImage(blob, t("photo.current"));
  }
  const [requests, facilities] = await Promise.all([api("/v1/me/access-requests"), api("/v1/facilities")]);
  const names = Object.fromEntries(facilities.map((f) => [f.id, f.name]));
  const latest = new Map();  // newest request per facility (the list comes newest first)
  for (const r of requests) if (!latest.has(r.facility_id)) latest.set(r.facility_id, r);
  const list = $("photo-reviews");
  list.replaceChildren(...[...latest.values()].map((r) => el("li", {},
    el("span", { text: names[r.facility_id] || r.facility_id }), " ",
    el("span", { class: `badge ${r.status}`, text: t(`photo.review.${r.status}`) }),
    r.reason ? el("span", { class: "reason", text: ` ${t("photo.reason", { reason: r.reason })}` }) : null)));
  list.hidden = latest.size === 0;
  if (me.has_photo_id && latest.size === 0) {
    $("photo-state").append(" ", el("a", { href: "/app/facilities.html", text: t("photo.askAccess") }));
  }
}

$("photo-file").addEventListener("change", () => {
  say($("photo-error"), "");
  say($("photo-status"), "");
  const file = $("photo-file").files[0];
  $("photo-upload").disabled = true;
  if (!file) return;
  if (!PHOTO_TYPES.includes(file.type)) {
    say($("photo-error"), t("photo.wrongType"));
    return;
  }
  if (file.size > PHOTO_MAX_BYTES) {
    say($("photo-error"), t("photo.tooBig"));
    return;
  }
  showImage(file, t("photo.preview"));
  $("photo-upload").disabled = false;
});

$("photo-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = $("photo-file").files[0];
  if (!file) {
    say($("photo-error"), t("photo.chooseFirst"));
    return;
  }
  say($("photo-status"), t("photo.uploading"));
  await busy($("photo-upload"), $("photo-error"), async () => {
    try {
      Object.assign(me, await api("/v1/me/photo-id", { method: "PUT", raw: file, contentType: file.type }));
    } catch (err) {
      say($("photo-status"), "");
      if (err.slug === "not-an-image") throw new Error(t("photo.notImage"));
      if (err.status === 413) throw new Error(t("photo.tooBig"));
      throw err;
    }
    $("photo-file").value = "";
    await renderPhoto();
    say($("photo-status"), t("photo.uploaded"));
  });
  $("photo-upload").disabled = true;  // until another file is chosen
});

// Details and language
const PROFILE_FIELDS = ["legal_name", "postal_address", "phone", "language"];
const control = (f) => (f === "language" ? $("profile-language") : $(f));

function fieldError(field, text) {
  say($(`err-${field}`), text);
  if (text) control(field).setAttribute("aria-invalid", "true");
  else control(field).removeAttribute("aria-invalid");
}

function renderProfile() {
  $("profile-role").textContent = t(`common:role.${me.role}`);
  $("profile-dob").textContent = me.date_of_birth ? date(`${me.date_of_birth}T12:00:00Z`, "UTC", { dateStyle: "long" }) : "—";
  $("legal_name").value = me.legal_name || "";
  $("postal_address").value = me.postal_address || "";
  $("phone").value = me.phone || "";
  const select = $("profile-language");
  select.replaceChildren(...Object.entries(LANGUAGES).map(([code, name]) =>
    el("option", { value: code, selected: code === (me.language || document.documentElement.lang) }, name)));
}

$("profile").addEventListener("submit", async (event) => {
  event.preventDefault();
  PROFILE_FIELDS.forEach((f) => fieldError(f, ""));
  say($("profile-status"), "");
  const typed = { legal_name: $("legal_name").value.trim(), postal_address: $("postal_address").value.trim(),
    phone: $("phone").value.trim(), language: $("profile-language").value };
  const changes = Object.fromEntries(Object.entries(typed).filter(([k, v]) => v && v !== (me[k] || "")));
  const problems = {};
  if (!typed.legal_name) problems.legal_name = t("profile.invalid.legal_name");
  if (typed.postal_address && typed.postal_address.length < 5) problems.postal_address = t("profile.invalid.postal_address");
  if (typed.phone && !/^\+?[0-9 ()-]{7,20}$/.test(typed.phone)) problems.phone = t("profile.invalid.phone");
  if (Object.keys(problems).length) {
    Object.entries(problems).forEach(([f, text]) => fieldError(f, text));
    control(PROFILE_FIELDS.find((f) => f in problems)).focus();
    return;
  }
  if (!Object.keys(changes).length) {
    say($("profile-status"), t("profile.nothing"));
    return;
  }
  await busy($("profile-save"), $("profile-error"), async () => {
    try {
      Object.assign(me, await api("/v1/me", { method: "PATCH", body: changes }));
    } catch (err) {
      const fields = ((err.problem && err.problem.errors) || []).map((e) => (e.location || [])[1]).filter((f) => PROFILE_FIELDS.includes(f));
      if (!fields.length) throw err;
      fields.forEach((f) => fieldError(f, t(`profile.invalid.${f}`)));
      control(fields[0]).focus();
      return;
    }
    if (changes.language) {  // the pages follow the account's language
      localStorage.setItem("openvisit.language", changes.language);
      location.reload();
      return;
    }
    say($("profile-status"), t("profile.saved"));
  });
});

// Password
$("password").addEventListener("submit", async (event) => {
  event.preventDefault();
  say($("password-status"), "");
  say($("password-error"), "");
  const current = $("current-password").value;
  const next = $("new-password").value;
  if (!current) return say($("password-error"), t("password.needCurrent"));
  if (next.length < 10) return say($("password-error"), t("password.tooShort"));
  if (next !== $("new-password-again").value) return say($("password-error"), t("password.different"));
  await busy($("password-save"), $("password-error"), async () => {
    try {
      await api("/v1/me/password", { method: "POST", body: { current_password: current, new_password: next } });
    } catch (err) {
      if (err.status === 403) throw new Error(t("password.wrongCurrent"));
      if (err.status === 429) throw new Error(t("password.throttled"));
      if (err.slug === "password-unchanged") throw new Error(t("password.unchanged"));
      throw err;
    }
    $("password").reset();
    say($("password-status"), t("password.changed"));
    await renderSessions();
  });
});

// Two-step sign-in (issue 12): optional for visitors and attorneys, required for staff where set.
async function renderTwoStep() {
  const state = await api("/v1/me/second-factor");
  $("tf-state").textContent = state.second_factor
    ? t("twoStep.on", { count: state.recovery_codes_left }) : t("twoStep.offState");
  $("tf-start").hidden = state.second_factor;
  $("tf-off").hidden = !state.second_factor;
  $("tf-renew").hidden = !state.second_factor;
  $("tf-setup").hidden = true;
}

function showCodes(codes) {
  $("tf-codes").replaceChildren(...codes.map((c) => el("li", {}, el("code", { text: c }))));
  $("tf-codes-box").hidden = false;
}

$("tf-start").addEventListener("click", () => busy($("tf-start"), $("tf-error"), async () => {
  const setup = await api("/v1/me/second-factor/setup", { method: "POST" });
  $("tf-qr").replaceChildren(qrImage(setup.otpauth_uri, t("twoStep.qr")));
  $("tf-link").href = setup.otpauth_uri;
  $("tf-secret").textContent = setup.secret;
  $("tf-codes-box").hidden = true;
  $("tf-setup").hidden = false;
  $("tf-start").hidden = true;
  $("tf-code").focus();
}));

$("tf-setup").addEventListener("submit", async (event) => {
  event.preventDefault();
  say($("tf-status"), "");
  await busy(event.submitter || $("tf-setup").querySelector("button"), $("tf-error"), async () => {
    let done;
    try {
      done = await api("/v1/me/second-factor/confirm", { method: "POST", body: { code: $("tf-code").value.trim() } });
    } catch (err) {
      if (err.slug === "second-factor-wrong") throw new Error(t("twoStep.wrongCode"));
      throw err;
    }
    if (done.access_token) adoptToken(done.access_token, done.expires_at);
    $("tf-setup").reset();
    await renderTwoStep();
    showCodes(done.recovery_codes);
    say($("tf-status"), t("twoStep.turnedOn"));
  });
});

$("tf-off").addEventListener("submit", async (event) => {
  event.preventDefault();
  say($("tf-status"), "");
  await busy(event.submitter || $("tf-off").querySelector("button"), $("tf-error"), async () => {
    try {
      await api("/v1/me/second-factor", { method: "DELETE",
        body: { password: $("tf-off-password").value, code: $("tf-off-code").value.trim() } });
    } catch (err) {
      if (err.status === 403) throw new Error(t("twoStep.offRefused"));
      throw err;
    }
    $("tf-off").reset();
    $("tf-codes-box").hidden = true;
    await renderTwoStep();
    say($("tf-status"), t("twoStep.turnedOff"));
  });
});

$("tf-renew").addEventListener("submit", async (event) => {
  event.preventDefault();
  say($("tf-status"), "");
  await busy(event.submitter || $("tf-renew").querySelector("button"), $("tf-error"), async () => {
    let done;
    try {
      done = await api("/v1/me/second-factor/recovery-codes", { method: "POST", body: { code: $("tf-renew-code").value.trim() } });
    } catch (err) {
      if (err.status === 403) throw new Error(t("twoStep.wrongCode"));
      throw err;
    }
    $("tf-renew").reset();
    await renderTwoStep();
    showCodes(done.recovery_codes);
    say($("tf-status"), t("twoStep.renewed"));
  });
});

// Where I am signed in
function device(ua) {
  if (!ua) return t("sessions.unknownDevice");
  const browser = /Edg\//.test(ua) ? "Edge" : /OPR\//.test(ua) ? "Opera" : /Firefox\//.test(ua) ? "Firefox"
    : /Chrome\//.test(ua) ? "Chrome" : /Safari\//.test(ua) ? "Safari" : null;
  const os = /Android/.test(ua) ? "Android" : /iPhone|iPad/.test(ua) ? "iOS" : /Windows/.test(ua) ? "Windows"
    : /Mac OS X/.test(ua) ? "macOS" : /Linux/.test(ua) ? "Linux" : null;
  return browser && os ? t("sessions.device", { browser, os }) : ua.slice(0, 60);
}

async function renderSessions() {
  const rows = await api("/v1/me/sessions");
  $("session-list").replaceChildren(...rows.map((s) => {
    const item = el("li", { class: "session" },
      el("div", {}, el("strong", { text: device(s.user_agent) }),
        s.current ? el("span", { class: "badge ok", text: t("sessions.thisDevice") }) : null),
      el("div", { class: "note", text: t("sessions.when", { since: when(s.created_at), last: when(s.refreshed_at || s.created_at) }) }),
      s.source_address ? el("div", { class: "note", text: t("sessions.from", { address: s.source_address }) }) : null);
    if (!s.current) item.append(signOutControl(s, item));
    return item;
  }));
}

/** Sign out another device, after an explicit second click (a destructive action). */
function signOutControl(s, item) {
  const box = el("div", { class: "row-actions" });
  const ask = el("button", { type: "button", text: t("sessions.signOut"),
    "aria-label": t("sessions.signOutLabel", { device: device(s.user_agent) }) });
  const sure = el("span", { class: "confirm", hidden: true },
    el("span", { text: t("sessions.sure") }), " ");
  const yes = el("button", { type: "button", class: "danger", text: t("sessions.yes") });
  const no = el("button", { type: "button", text: t("sessions.no") });
  sure.append(yes, " ", no);
  ask.addEventListener("click", () => { ask.hidden = true; sure.hidden = false; yes.focus(); });
  no.addEventListener("click", () => { sure.hidden = true; ask.hidden = false; ask.focus(); });
  yes.addEventListener("click", () => busy(yes, $("sessions-error"), async () => {
    await api(`/v1/me/sessions/${encodeURIComponent(s.id)}`, { method: "DELETE" });
    item.remove();
    say($("sessions-status"), t("sessions.signedOut", { device: device(s.user_agent) }));
  }));
  box.append(ask, sure);
  return box;
}

async function showAccount() {
  $("account").hidden = false;
  const attorney = me.role === "attorney";
  document.querySelectorAll(".visitor-only").forEach((n) => { n.hidden = !visitorish(); });
  document.querySelectorAll(".attorney-only").forEach((n) => { n.hidden = !attorney; });
  renderEmail();
  renderProfile();
  if (attorney) {
    $("bar-number").textContent = me.bar_number || "—";
    $("bar-state").textContent = me.bar_state ? t(`states.${me.bar_state}`, { defaultValue: me.bar_state }) : "—";
  }
  const jobs = [renderTwoStep(), renderSessions()];
  if (visitorish()) jobs.push(renderPhoto());
  const results = await Promise.allSettled(jobs);
  const failed = results.find((r) => r.status === "rejected");
  if (failed) say($("sessions-error"), t("common:error", { message: failed.reason.message }));
  if (location.hash.length > 1) document.getElementById(location.hash.slice(1))?.scrollIntoView();
}

if (mailed && mailed.action === "confirm") await confirmEmail();
else if (mailed && mailed.action === "reset") reset();
else if (mailed) forgot();
else if (me) await showAccount();
else say($("loading"), t("common:error", { message: t("unavailable") }));

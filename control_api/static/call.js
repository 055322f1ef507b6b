// openvisit call view: joins a visit through the signaling protocol (docs/signaling.md) with
// standard WebRTC APIs only, so it runs in Chromium, Firefox and Safari, desktop and phone.
(() => {
"use strict";

window.callState = { status: "idle", warnings: [], ended: null, error: null };

class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || `${status}`);
    this.status = status;
    this.slug = (problem.type || "").split("/").pop();
    this.problem = problem;
  }
}

// The page's sign-in (issue 12): access tokens are short-lived, so api() renews them with the
// refresh token shortly before they expire by the browser's clock, and once more when the API
// answers 401 anyway (issue 13: the server's clock is what counts, and the demo clock may have
// moved). Pages keep passing the token signInWith gave them; any token of this sign-in is taken to
// mean "the sign-in's current token".
//
// The app's one sign-in (issue 13): pages that pass `roles` to signInWith start signed in when
// the app's sign-in (lib/session.js, localStorage "openvisit.session") is one of those roles, and a
// sign-in through their own form becomes the app's sign-in, so the header (lib/layout.js) shows who
// is signed in and signs out. Each page keeps its own copy of the tokens in memory, so a kiosk tab
// keeps being the kiosk when an officer signs in in another tab of the same browser; it writes
// renewed tokens back only while the stored sign-in is still the same one.
const signIn = { tokens: new Set(), access: null, refresh: null, expiresAt: 0, renewing: null, role: null,
  subject: null, shared: false };
const SHARED = "openvisit.session";  // lib/session.js's key and format

function readShared() {
  try {
    return JSON.parse(localStorage.getItem(SHARED) || "null");
  } catch {
    return null;
  }
}

function share(previousRefresh = null) {
  if (!signIn.shared) return;
  const stored = readShared();
  if (stored && stored.refresh !== previousRefresh && stored.refresh !== signIn.refresh
      && !(stored.subject === signIn.subject && stored.role === signIn.role)) return;  // someone else's now
  localStorage.setItem(SHARED, JSON.stringify({ access: signIn.access, refresh: signIn.refresh,
    expiresAt: signIn.expiresAt, role: signIn.role, subject: signIn.subject }));
}

function remember(login) {
  const previousRefresh = signIn.refresh;
  signIn.tokens.add(login.access_token);
  signIn.access = login.access_token;
  signIn.refresh = login.refresh_token || signIn.refresh;
  signIn.expiresAt = Date.parse(login.expires_at);
  signIn.role = login.role || signIn.role;
  signIn.subject = login.subject_id || signIn.subject;
  share(previousRefresh);
}

// Adopt a stored sign-in (lib/session.js's format) as this page's.
function adopt(stored) {
  signIn.shared = true;
  signIn.tokens.add(stored.access);
  Object.assign(signIn, { access: stored.access, refresh: stored.refresh, expiresAt: stored.expiresAt,
    role: stored.role, subject: stored.subject });
}

function renew() {
  const stored = readShared();
  if (signIn.shared && stored && stored.subject === signIn.subject && stored.role === signIn.role
      && stored.refresh !== signIn.refresh && stored.expiresAt - Date.now() > 120000) {
    adopt(stored);  // another page of the app renewed this sign-in (refresh tokens are used once)
    return Promise.resolve();
  }
  signIn.renewing = signIn.renewing || rawApi("/v1/auth/refresh", { method: "POST", body: { refresh_token: signIn.refresh } })
    .then(remember).finally(() => { signIn.renewing = null; });
  return signIn.renewing;
}

const ours = (token) => Boolean(token) && signIn.tokens.has(token);

async function currentToken(token) {
  if (!ours(token)) return token;
  if (signIn.refresh && signIn.expiresAt - Date.now() < 120000) await renew();
  return signIn.access;
}

async function rawApi(path, { token, method = "GET", body, idempotent = false } = {}) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (idempotent) headers["Idempotency-Key"] = `web-${crypto.randomUUID()}`;
  const resp = await fetch(path, { method, headers, body: body ? JSON.stringify(body) : undefined });
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

async function api(path, options = {}) {
  const token = await currentToken(options.token);
  try {
    return await rawApi(path, { ...options, token });
  } catch (err) {
    const renewable = ours(options.token) && signIn.refresh && err instanceof ApiError && err.status === 401
      && err.slug !== "second-factor-required";
    if (!renewable) throw err;
    if (signIn.access === token) await renew();  // else another call renewed it meanwhile
    return rawApi(path, { ...options, token: signIn.access });
  }
}

// Strings (issue 13): on pages in the app's frame, i18next through lib/layout.js (the page's
// namespace: locales/<language>/<page>.json, with the call's strings under "call."); elsewhere the
// English given here.
let translator = null;
let locale = "en-US";

function tr(key, english, vars = {}) {
  if (translator) return translator(key, { ...vars, defaultValue: english });
  return english.replace(/{{\s*(\w+)\s*}}/g, (_, name) => (name in vars ? String(vars[name]) : ""));
}

// A1: times in the facility's time zone, with the zone named (not the browser's zone).
const zones = new Map();

async function facilityZone(facilityId, token) {
  if (!zones.has(facilityId)) {
    zones.set(facilityId, api(`/v1/facilities/${facilityId}`, { token }).then((f) => f.timezone)
      .catch(() => { zones.delete(facilityId); return undefined; }));
  }
  return zones.get(facilityId);
}

function facilityTime(iso, timeZone, { withDate = false } = {}) {
  // Explicit fields: Intl refuses timeStyle together with timeZoneName.
  const day = withDate ? { year: "numeric", month: "short", day: "numeric" } : {};
  return new Intl.DateTimeFormat(locale, { ...day, hour: "numeric", minute: "2-digit", timeZone, timeZoneName: "short" })
    .format(new Date(iso));
}

const escapeHtml = (text) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function formatMoney(cents) {
  return `$${(cents / 100).toFixed(2)}`;
}

// Money in the page's language (issue 13).
const money = (cents, currency = "USD") => new Intl.NumberFormat(locale, { style: "currency", currency }).format(cents / 100);

function show(el, text) {
  el.textContent = text;
  el.hidden = !text;
}

// Codes after which the client reconnects on its own (S5): the resume token was not taken (ask
// the API for a new join token), the server dropped us for frozen media, or a join token was used.
const RECONNECT_CODES = new Set(["bad-resume", "media-stopped", "token-used"]);
const NON_FATAL_CODES = new Set(["bad-candidate"]);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const capitalise = (text) => text.charAt(0).toLocaleUpperCase(locale) + text.slice(1);

// "12:34" (or "1:02:03"): a span of time on the countdown.
function span(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

// Why the browser could not start the camera and microphone, in plain words.
function deviceProblem(err) {
  if (err && err.name === "NotAllowedError") {
    return tr("call.noPermission", "This browser was not allowed to use the camera and microphone. Allow them (the camera icon in the address bar), then reload this page.");
  }
  if (err && (err.name === "NotFoundError" || err.name === "OverconstrainedError")) {
    return tr("call.noDevices", "No camera or microphone was found. Connect one, then reload this page.");
  }
  if (err && (err.name === "NotReadableError" || err.name === "AbortError")) {
    return tr("call.deviceBusy", "The camera or microphone is in use by another app. Close that app, then reload this page.");
  }
  return null;
}

// ui: { self, remote, banner, countdown } and, on pages that have them, the waiting room
// (waiting, waitingFor, schedule, present), videos, the toggles (controls, mute, camera, mediaState)
// and `after` (shown once the visit is over). about: { resident (the resident's name), zone }.
async function startCall(accessToken, visitId, ui, about = {}) {
  const state = window.callState;
  state.status = "joining";
  let join = await api(`/v1/visits/${visitId}/join`, { token: accessToken, method: "POST" });
  let media;
  try {
    media = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 480 } });
  } catch (err) {
    const plain = deviceProblem(err);
    if (plain) err.message = plain;
    throw err;
  }
  ui.self.srcObject = media;
  const remote = new MediaStream();
  ui.remote.srcObject = remote;

  // The server's clock (rule S2: the visit ends at its scheduled end by the server's clock, not
  // this device's): the offset between the server's time and Date.now(), from `joined`'s
  // server_time (set again on each rejoin, and corrected by the S3 warnings' seconds_left).
  let offset = 0;
  let synced = false;
  const serverNow = () => Date.now() + offset;
  let starts = Date.parse(join.visit.starts_at);
  let ends = Date.parse(join.visit.ends_at);
  const zone = about.zone;
  const other = join.participant_role === "resident"  // the kiosk: the resident waits for the visitor
    ? (join.visit.visit_type === "privileged" ? tr("call.yourAttorney", "your attorney") : tr("call.yourVisitor", "your visitor"))
    : about.resident || tr("call.theResident", "the resident");
  const present = new Map(); // side -> server time it joined (null: it was here before us)
  let mySide = null;
  let myJoin = null;

  const say = (node, text) => { if (node && node.textContent !== text) node.textContent = text; };
  const inWaitingRoom = () => present.size === 0 || serverNow() < starts;
  const drawWaiting = () => {
    state.waiting = !state.ended && inWaitingRoom();
    // Alone, or before the start (no media yet, S1): the self view is the preview, no empty black box.
    if (ui.videos) ui.videos.classList.toggle("alone", state.waiting);
    if (!ui.waiting) return;
    ui.waiting.hidden = !state.waiting;
    if (!state.waiting) return;
    const now = serverNow();
    const times = { start: facilityTime(starts, zone), end: facilityTime(ends, zone), name: other };
    say(ui.waitingFor, capitalise(present.size === 0 ? tr("call.waitingFor", "Waiting for {{name}} to join.", times)
      : tr("call.otherHereEarly", "{{name}} is here.", times)));
    say(ui.schedule, now < starts ? tr("call.startsAt", "The visit starts at {{start}} and ends at {{end}} (facility time).", times)
      : tr("call.startedAt", "The visit started at {{start}} and ends at {{end}} (facility time); joining late does not make it longer.", times));
    const lines = [];
    if (myJoin !== null) lines.push(tr("call.youJoined", "You joined at {{time}}.", { time: facilityTime(myJoin, zone) }));
    const theirs = [...present.values()][0];
    lines.push(capitalise(present.size === 0 ? tr("call.otherNotYet", "{{name}} has not joined yet.", times)
      : theirs === null ? tr("call.otherWasHere", "{{name}} was already here when you joined.", times)
      : tr("call.otherJoined", "{{name}} joined at {{time}}.", { ...times, time: facilityTime(theirs, zone) })));
    if (ui.present) {
      const items = lines.map((line) => Object.assign(document.createElement("li"), { textContent: line }));
      ui.present.replaceChildren(...items);
    }
  };
  const tick = () => {
    if (!synced) return;
    const now = serverNow();
    show(ui.countdown, now < starts ? tr("call.startsIn", "Starts in {{time}}", { time: span(starts - now) })
      : tr("call.left", "{{time}} left", { time: span(ends - now) }));
    state.secondsLeft = Math.max(0, Math.ceil((ends - now) / 1000));
    drawWaiting();
  };
  const timer = setInterval(tick, 250);
  // Media flows only from the start (S1): the other party's first frame means the server's clock
  // has reached the start, even if it jumped since `joined` (the demo and test clock can move).
  ui.remote.addEventListener("loadeddata", () => {
    if (synced && serverNow() < starts) {
      offset = starts - Date.now();
      tick();
    }
  });

  // Mute and camera: the local tracks are turned off (enabled = false: silence and black frames,
  // the connection stays up), the button says so with aria-pressed and how it looks.
  const stateLine = () => {
    const off = [];
    if (state.muted) off.push(tr("call.micOff", "Your microphone is off."));
    if (state.cameraOff) off.push(tr("call.cameraOff", "Your camera is off."));
    show(ui.mediaState || document.createElement("p"), off.join(" "));
  };
  const toggle = (button, kind, flag) => {
    if (!button) return;
    button.disabled = false;
    button.setAttribute("aria-pressed", "false");
    button.onclick = () => {
      const off = button.getAttribute("aria-pressed") !== "true";
      for (const track of media.getTracks()) if (track.kind === kind) track.enabled = !off;
      button.setAttribute("aria-pressed", String(off));
      state[flag] = off;
      stateLine();
    };
  };
  state.muted = false;
  state.cameraOff = false;
  toggle(ui.mute, "audio", "muted");
  toggle(ui.camera, "video", "cameraOff");

  let pc = null;
  let ws = null;
  let over = false; // ended, or an error after which we must not reconnect
  let resumeToken = null; // from `joined`: rejoins this visit without the API, until its end (S5)
  let attempts = 0;

  const finish = (message) => {
    over = true;
    clearInterval(timer);
    media.getTracks().forEach((t) => t.stop());
    if (pc) pc.close();
    if (ws && ws.readyState === WebSocket.OPEN) ws.close();
    // The view says why it ended, instead of the countdown, the videos and the toggles.
    for (const part of [ui.waiting, ui.videos, ui.controls, ui.mediaState, ui.help]) if (part) part.hidden = true;
    show(ui.countdown, "");
    show(ui.banner, message);
    if (ui.after) ui.after.hidden = false;
  };

  // Leaving: this party goes (the other is told, `participant_left`), the visit goes on to its
  // scheduled end (S2) and this party may rejoin until then; nothing reconnects on its own.
  if (ui.leave) {
    ui.leave.disabled = false;
    ui.leave.onclick = () => {
      if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "leave" }));
      state.status = "left";
      finish(tr("call.youLeft", "You left the visit. You can rejoin until {{end}} (facility time).",
        { end: facilityTime(ends, zone) }));
      if (ui.rejoin && serverNow() < ends) {
        ui.rejoin.href = `${location.pathname}?visit=${encodeURIComponent(visitId)}`;
        ui.rejoin.hidden = false;
      }
    };
  }

  // One connection: a new peer connection and socket, joined with `first` (a join or a resume).
  const connect = (first) => {
    const peer = new RTCPeerConnection({ iceServers: join.ice_servers });
    for (const track of media.getTracks()) peer.addTrack(track, media);
    peer.ontrack = (event) => {
      for (const old of remote.getTracks()) if (old.kind === event.track.kind) remote.removeTrack(old);
      remote.addTrack(event.track);
      ui.remote.play().catch(() => {});
    };
    pc = peer;
    window.callPc = peer;
    const socket = new WebSocket(join.signaling_url);
    ws = socket;

    socket.onmessage = async (event) => {
      const msg = JSON.parse(event.data);
      if (msg.type === "joined") {
        if (msg.resume_token) resumeToken = msg.resume_token;
        if (msg.server_time) {
          offset = Date.parse(msg.server_time) - Date.now();
          synced = true;
        }
        if (msg.starts_at) starts = Date.parse(msg.starts_at);
        if (msg.ends_at) ends = Date.parse(msg.ends_at);
        mySide = msg.side;
        if (myJoin === null) myJoin = serverNow();
        const before = new Map(present);
        present.clear();
        for (const side of msg.others || []) present.set(side, before.has(side) ? before.get(side) : null);
        state.others = [...present.keys()];
        tick();
        // Trickle ICE: send the offer at once, then each candidate as the browser finds it.
        peer.onicecandidate = (e) => {
          if (socket.readyState !== WebSocket.OPEN) return;
          socket.send(JSON.stringify(e.candidate ? { type: "candidate", candidate: e.candidate.toJSON() }
            : { type: "end-of-candidates" }));
        };
        await peer.setLocalDescription(await peer.createOffer());
        socket.send(JSON.stringify({ type: "offer", sdp: peer.localDescription.sdp }));
      } else if (msg.type === "answer") {
        await peer.setRemoteDescription({ type: "answer", sdp: msg.sdp });
        attempts = 0;
        state.status = "in_call";
        show(ui.banner, "");
      } else if (msg.type === "warning") {
        state.warnings.push(msg.seconds_left);
        // S3: the warning says how long is left by the server's clock; follow it if we drifted.
        const drift = (ends - msg.seconds_left * 1000) - serverNow();
        if (!synced || Math.abs(drift) > 2000) {
          offset += drift;
          synced = true;
        }
        show(ui.banner, msg.seconds_left >= 60
          ? tr("call.endsInMinutes", "The visit ends in {{count}} minutes.", { count: Math.round(msg.seconds_left / 60) })
          : tr("call.endsInSeconds", "The visit ends in {{count}} seconds.", { count: msg.seconds_left }));
      } else if (msg.type === "participant_joined") {
        if (msg.side !== mySide) present.set(msg.side, serverNow());
        state.others = [...present.keys()];
        show(ui.banner, "");
        tick();
      } else if (msg.type === "participant_left") {
        present.delete(msg.side);
        state.others = [...present.keys()];
        show(ui.banner, tr("call.otherLeft", "The other party left; they can rejoin until the end."));
        tick();
      } else if (msg.type === "ended") {
        state.status = "ended";
        state.ended = msg;
        const why = msg.reason === "disconnected"
          ? tr("call.disconnected", "The visit was disconnected by the facility ({{reason}}).",
            { reason: tr(`call.reasons.${msg.disconnect_reason}`, msg.disconnect_reason) })
          : msg.reason === "failed" ? tr("call.failed", "The visit ended because of a system problem; it will be credited.")
          : tr("call.endedOnTime", "The visit has ended at its scheduled end ({{end}}).", { end: facilityTime(ends, zone) });
        finish(why);
      } else if (msg.type === "error") {
        state.error = msg;
        if (msg.code === "bad-resume") resumeToken = null; // ask the API for a new join token instead
        if (RECONNECT_CODES.has(msg.code) || NON_FATAL_CODES.has(msg.code)) return; // the socket's close reconnects
        state.status = "error";
        finish(msg.code === "replaced" ? tr("call.replaced", "This visit was opened in another window or on another device.")
          : msg.code === "visit-ended" ? tr("call.ended", "The visit has ended.")
          : tr("call.couldNotJoin", "Could not join: {{message}}", { message: msg.message }));
      }
    };
    socket.onopen = () => socket.send(JSON.stringify(first));
    socket.onclose = () => {
      if (!over && socket === ws) reconnect();
    };
  };

  // S5: a dropped connection rejoins until the end, the resume token first (it works while the
  // control API is down), then a new join token from the API; backing off between tries.
  const reconnect = async () => {
    if (pc) pc.close();
    if (serverNow() >= ends) {
      finish(tr("call.ended", "The visit has ended."));
      return;
    }
    state.status = "reconnecting";
    show(ui.banner, tr("call.reconnecting", "The connection dropped; reconnecting…"));
    attempts += 1;
    await sleep(Math.min(8000, 250 * 2 ** Math.min(attempts - 1, 5)));
    if (over) return;
    if (resumeToken && attempts % 2 === 1) {
      connect({ type: "join", resume: resumeToken });
      return;
    }
    try {
      join = await api(`/v1/visits/${visitId}/join`, { token: accessToken, method: "POST" });
      connect({ type: "join", token: join.join_token });
    } catch (err) {
      reconnect(); // the API may be down too: try again (the resume token still first, if any)
    }
  };

  connect({ type: "join", token: join.join_token });
}

const $ = (id) => document.getElementById(id);

// Both pages: a sign-in form (#login) whose fields make the request body, then the visit list.
// The sign-in form, with the second step when the account has an authenticator app, and the
// one-time set-up staff must do first where two-step sign-in is required (issue 12).
function field(form, id, label, attrs) {
  let input = document.getElementById(id);
  if (input) return input;
  const wrap = document.createElement("label");
  wrap.id = `${id}-field`;
  wrap.hidden = true;
  wrap.append(`${label} `);
  input = document.createElement("input");
  input.id = id;
  Object.assign(input, attrs);
  wrap.append(input);
  form.querySelector("button[type=submit]").before(wrap);
  return input;
}

// The app's frame (lib/layout.js: header, who is signed in, language, sign-out) on pages that have
// an #app-header; drawn again after a sign-in through the page's own form.
function drawFrame(page) {
  if (!$("app-header")) return Promise.resolve();
  return import("/app/lib/layout.js").then(async (layout) => {
    await layout.startPage(page);
    translator = layout.t;
    locale = document.documentElement.lang === "es" ? "es-US" : "en-US";
  }).catch(() => {});
}

// `roles`: the roles this page is for; when the app's sign-in is one of them, the form is skipped.
// The page's name (its strings' namespace) is its file name.
async function signInWith(path, body, then, roles = null) {
  const form = $("login");
  const page = location.pathname.split("/").pop().replace(/\.html$/, "");
  const code = field(form, "second-factor", tr("signIn.code", "Authenticator code (or a recovery code)"),
    { autocomplete: "one-time-code", inputMode: "numeric", maxLength: 20 });
  const started = roles ? drawFrame(page) : Promise.resolve();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    await started;  // the page's strings
    show($("login-error"), "");
    const request = body();
    const typed = code.value.trim();
    if (typed) request[/^[0-9]{6}$/.test(typed.replace(/\s/g, "")) ? "second_factor_code" : "recovery_code"] = typed;
    try {
      const login = await rawApi(path, { method: "POST", body: request });
      signIn.shared = Boolean(roles);
      if (signIn.shared) localStorage.removeItem(SHARED);  // this sign-in replaces the stored one
      remember(login);
      form.hidden = true;
      if (login.second_factor_enrolment_required) await enrol(login.access_token);
      if (roles) await drawFrame(page);  // who is signed in, in the header
      await then(signIn.access);
    } catch (err) {
      if (err.slug === "second-factor-required") {
        $("second-factor-field").hidden = false;
        code.focus();
      }
      show($("login-error"), err.message);
    }
  });
  if (!roles) return;
  await started;  // the header has renewed the stored sign-in if it was about to expire
  code.parentElement.firstChild.textContent = `${tr("signIn.code", "Authenticator code (or a recovery code)")} `;
  const stored = readShared();
  if (!stored || !stored.refresh || !roles.includes(stored.role) || signIn.access) return;
  adopt(stored);
  form.hidden = true;
  try {
    await then(signIn.access);
  } catch (err) {
    form.hidden = false;  // the stored sign-in has ended (or does not work here): sign in on the form
    if (!(err instanceof ApiError) || err.status !== 401) show($("login-error"), err.message);
  }
}

// Staff who must use two-step sign-in set up an authenticator app once, then go on.
function enrol(token) {
  return new Promise((resolve, reject) => {
    const box = document.createElement("form");
    box.id = "enrol";
    const x = (key, english) => escapeHtml(tr(key, english));
    box.innerHTML = `<h2>${x("enrol.heading", "Set up two-step sign-in")}</h2>
      <p>${x("enrol.intro", "Staff accounts sign in with a code from an authenticator app as well as the password. "
        + "Add this account to the app with the link or the key below, then type the code it shows.")}</p>
      <p id="enrol-qr" class="qr-box"></p>
      <p><a id="enrol-link">${x("enrol.link", "Open in an authenticator app")}</a></p>
      <p>${x("enrol.key", "Key:")} <code id="enrol-secret"></code></p>
      <label for="enrol-code">${x("enrol.code", "Code from the app")}</label>
      <input id="enrol-code" autocomplete="one-time-code" inputmode="numeric" maxlength="6" required>
      <button type="submit">${x("enrol.submit", "Turn on")}</button>
      <p id="enrol-error" class="error" role="alert" hidden></p>
      <div id="enrol-done" hidden><p>${x("enrol.codes", "Keep these recovery codes somewhere safe: each signs you in once if you lose the phone.")}</p>
      <ul id="enrol-codes"></ul><button type="button" id="enrol-continue">${x("enrol.continue", "Continue")}</button></div>`;
    $("login").after(box);
    rawApi("/v1/me/second-factor/setup", { token, method: "POST" }).then((setup) => {
      $("enrol-link").href = setup.otpauth_uri;
      $("enrol-secret").textContent = setup.secret;
      // The QR code comes from the pages' module (this script is a classic one): import() loads it.
      return import("/app/lib/qr.js").then(({ qrImage }) => {
        $("enrol-qr").replaceChildren(qrImage(setup.otpauth_uri,
          tr("enrol.qr", "QR code of your two-step sign-in key: scan it with your authenticator app")));
      });
    }).catch(reject);
    box.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        const done = await rawApi("/v1/me/second-factor/confirm", { token, method: "POST", body: { code: $("enrol-code").value.trim() } });
        remember({ access_token: done.access_token, expires_at: done.expires_at });
        $("enrol-codes").replaceChildren(...done.recovery_codes.map((c) => Object.assign(document.createElement("li"), { textContent: c })));
        $("enrol-done").hidden = false;
        box.querySelector("button[type=submit]").hidden = true;
        $("enrol-continue").addEventListener("click", () => { box.hidden = true; resolve(); }, { once: true });
      } catch (err) {
        show($("enrol-error"), err.message);
      }
    });
  });
}

// Both pages: leave the list (#list) for the call view (#call) and join. The waiting room names
// the other party (the resident's name for the visitor) and shows times in the facility's zone (A1).
async function enterCall(token, visitId, before) {
  const ids = { self: "self", remote: "remote", banner: "banner", countdown: "countdown", videos: "videos",
    waiting: "waiting", waitingFor: "waiting-for", schedule: "waiting-schedule", present: "present",
    controls: "call-controls", mute: "mute", camera: "camera", leave: "leave", rejoin: "rejoin", mediaState: "media-state", after: "after-call",
    help: "call-help" };
  const ui = Object.fromEntries(Object.entries(ids).map(([key, id]) => [key, $(id)]));
  try {
    if (before) await before();
    $("list").hidden = true;
    $("call").hidden = false;
    const visit = await api(`/v1/visits/${visitId}`, { token }).catch(() => null);
    const about = {};
    if (visit) {
      about.zone = await facilityZone(visit.facility_id, token);
      if (visit.resident_name) about.resident = visit.resident_name;
    }
    await startCall(token, visitId, ui, about);
  } catch (err) {
    $("call").hidden = false;
    for (const part of [ui.waiting, ui.videos, ui.controls]) if (part) part.hidden = true;
    show(ui.banner, tr("call.couldNotJoin", "Could not join: {{message}}", { message: err.message }));
    if (ui.after) ui.after.hidden = false;
  }
}

// The current access token of this page's sign-in (renewed when due), for a raw fetch().
const freshToken = (token) => currentToken(token);

window.openvisit = { api, startCall, formatMoney, money, show, signInWith, enterCall, $, ApiError, tr, facilityZone,
  facilityTime, freshToken };
})();

// openvisit call view: joins a visit through the signaling protocol (docs/signaling.md) with
// standard WebRTC APIs only, so it runs in Chromium, Firefox and Safari, desktop and phone.
(() => {
"use strict";

window.callState = { status: "idle", warnings: [], ended: null, error: null };

async function api(path, { token, method = "GET", body, idempotent = false } = {}) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (idempotent) headers["Idempotency-Key"] = `web-${crypto.randomUUID()}`;
  const resp = await fetch(path, { method, headers, body: body ? JSON.stringify(body) : undefined });
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(data.detail || `${resp.status} ${resp.statusText}`);
  return data;
}

function formatMoney(cents) {
  return `$${(cents / 100).toFixed(2)}`;
}

function show(el, text) {
  el.textContent = text;
  el.hidden = !text;
}

async function startCall(accessToken, visitId, ui) {
  const state = window.callState;
  state.status = "joining";
  const join = await api(`/v1/visits/${visitId}/join`, { token: accessToken, method: "POST" });
  const media = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 480 } });
  ui.self.srcObject = media;
  const pc = new RTCPeerConnection({ iceServers: join.ice_servers });
  for (const track of media.getTracks()) pc.addTrack(track, media);
  const remote = new MediaStream();
  ui.remote.srcObject = remote;
  pc.ontrack = (event) => {
    remote.addTrack(event.track);
    ui.remote.play().catch(() => {});
  };
  window.callPc = pc;

  const ws = new WebSocket(join.signaling_url);
  const ends = new Date(join.visit.ends_at);
  const timer = setInterval(() => {
    const left = Math.max(0, Math.round((ends - Date.now()) / 1000));
    show(ui.countdown, `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")} left`);
  }, 500);

  const finish = (message) => {
    clearInterval(timer);
    media.getTracks().forEach((t) => t.stop());
    pc.close();
    if (ws.readyState === WebSocket.OPEN) ws.close();
    show(ui.banner, message);
  };

  ws.onmessage = async (event) => {
    const msg = JSON.parse(event.data);
    if (msg.type === "joined") {
      // Trickle ICE: send the offer at once, then each candidate as the browser finds it.
      pc.onicecandidate = (e) => {
        if (ws.readyState !== WebSocket.OPEN) return;
        ws.send(JSON.stringify(e.candidate ? { type: "candidate", candidate: e.candidate.toJSON() }
          : { type: "end-of-candidates" }));
      };
      await pc.setLocalDescription(await pc.createOffer());
      ws.send(JSON.stringify({ type: "offer", sdp: pc.localDescription.sdp }));
    } else if (msg.type === "answer") {
      await pc.setRemoteDescription({ type: "answer", sdp: msg.sdp });
      state.status = "in_call";
    } else if (msg.type === "warning") {
      state.warnings.push(msg.seconds_left);
      const minutes = msg.seconds_left >= 60 ? `${Math.round(msg.seconds_left / 60)} minutes` : `${msg.seconds_left} seconds`;
      show(ui.banner, `The visit ends in ${minutes}.`);
    } else if (msg.type === "participant_joined") {
      show(ui.banner, "");
    } else if (msg.type === "participant_left") {
      show(ui.banner, "The other party left; they can rejoin until the end.");
    } else if (msg.type === "ended") {
      state.status = "ended";
      state.ended = msg;
      const why = msg.reason === "disconnected"
        ? `The visit was disconnected by the facility (${msg.disconnect_reason}).`
        : msg.reason === "failed" ? "The visit ended because of a system problem; it will be credited."
        : "The visit has ended.";
      finish(why);
    } else if (msg.type === "error") {
      state.status = "error";
      state.error = msg;
      finish(`Could not join: ${msg.message}`);
    }
  };
  ws.onopen = () => ws.send(JSON.stringify({ type: "join", token: join.join_token }));
  ws.onclose = () => clearInterval(timer);
}

const $ = (id) => document.getElementById(id);

// Both pages: a sign-in form (#login) whose fields make the request body, then the visit list.
function signInWith(path, body, then) {
  $("login").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const login = await api(path, { method: "POST", body: body() });
      $("login").hidden = true;
      await then(login.access_token);
    } catch (err) {
      show($("login-error"), err.message);
    }
  });
}

// Both pages: leave the list (#list) for the call view (#call) and join.
async function enterCall(token, visitId, before) {
  const ui = { self: $("self"), remote: $("remote"), banner: $("banner"), countdown: $("countdown") };
  try {
    if (before) await before();
    $("list").hidden = true;
    $("call").hidden = false;
    await startCall(token, visitId, ui);
  } catch (err) {
    $("call").hidden = false;
    show(ui.banner, `Could not join: ${err.message}`);
  }
}

window.openvisit = { api, startCall, formatMoney, show, signInWith, enterCall, $ };
})();

// Officer console: the facility's live visits; watch and listen to several social visits at
// once (hidden, receive-only: docs/signaling.md "Monitors"); disconnect with a reason (S4).
// Privileged visits are listed as locked, with no media and no watch button (P1).
(() => {
"use strict";
const { api, signInWith, show, $, tr, facilityZone, facilityTime } = window.openvisit;
window.monitorState = {};  // visit id -> { status, pc } (read by the browser tests)
let token = null;
let zone;  // the facility's time zone (A1)
const REASONS = ["conduct", "facility", "technical"];

signInWith("/v1/auth/login", () => ({ email: $("email").value, password: $("password").value }), async (t) => {
  token = t;
  const me = await api("/v1/me", { token });
  zone = await facilityZone(me.facility_id, token);
  $("about").hidden = false;
  $("list").hidden = false;
  await refresh(me.facility_id);
  setInterval(() => refresh(me.facility_id).catch(() => {}), 5000);
}, ["officer", "admin"]);

async function refresh(facilityId) {
  const visits = await api(`/v1/facilities/${facilityId}/live-visits`, { token });
  const box = $("list");
  box.replaceChildren();
  if (!visits.length) box.textContent = tr("empty", "No visits are live right now.");
  for (const v of visits) {
    const row = document.createElement("div");
    row.className = v.locked ? "visit locked" : "visit";
    row.dataset.visit = v.id;
    const label = document.createElement("span");
    const vars = { resident: v.resident_name, unit: v.housing_unit, visitor: v.visitor_name,
      until: facilityTime(v.ends_at, zone) };
    label.textContent = tr("row", "{{resident}} ({{unit}}) with {{visitor}}, until {{until}}", vars) +
      (v.locked ? tr("locked", " — privileged: never monitored") : v.on_media_server ? "" : tr("notConnected", " — not connected yet"));
    row.append(label);
    if (!v.locked) {
      const watchButton = document.createElement("button");
      watchButton.textContent = tr("watch", "Watch");
      watchButton.className = "watch";
      watchButton.disabled = !v.on_media_server || Boolean(window.monitorState[v.id]);
      watchButton.addEventListener("click", () => watch(v).catch((err) => alert(err.message)));
      const reason = document.createElement("select");
      reason.setAttribute("aria-label", tr("reasonLabel", "Reason to disconnect"));
      for (const r of REASONS) reason.append(new Option(tr(`reasons.${r}`, r), r));
      const stop = document.createElement("button");
      stop.textContent = tr("disconnect", "Disconnect");
      stop.className = "disconnect";
      stop.addEventListener("click", async () => {
        const why = tr(`reasons.${reason.value}`, reason.value);
        if (!confirm(tr("confirmDisconnect", "Disconnect this visit now ({{reason}})? Both parties will see the reason.",
          { reason: why }))) return;
        await api(`/v1/visits/${v.id}/disconnect`, { token, method: "POST", body: { reason: reason.value } })
          .catch((err) => alert(err.message));
      });
      row.append(watchButton, reason, stop);
    }
    box.append(row);
  }
}

async function watch(visit) {
  const grant = await api(`/v1/visits/${visit.id}/monitor`, { token, method: "POST" });
  const tile = document.createElement("figure");
  tile.className = "tile";
  tile.dataset.visit = visit.id;
  const caption = document.createElement("figcaption");
  caption.textContent = tr("tile", "{{resident}} with {{visitor}}", { resident: visit.resident_name, visitor: visit.visitor_name });
  const visitorVideo = Object.assign(document.createElement("video"), { autoplay: true, playsInline: true });
  const residentVideo = Object.assign(document.createElement("video"), { autoplay: true, playsInline: true });
  visitorVideo.setAttribute("aria-label", tr("visitorVideo", "Visitor: {{name}}", { name: visit.visitor_name }));
  residentVideo.setAttribute("aria-label", tr("residentVideo", "Resident: {{name}}", { name: visit.resident_name }));
  visitorVideo.className = "visitor";
  residentVideo.className = "resident";
  const status = document.createElement("p");
  status.setAttribute("role", "status");
  const close = Object.assign(document.createElement("button"), { textContent: tr("stopWatching", "Stop watching") });
  tile.append(caption, visitorVideo, residentVideo, status, close);
  $("tiles").append(tile);

  const pc = new RTCPeerConnection({ iceServers: grant.ice_servers, bundlePolicy: "max-bundle" });
  const state = { status: "joining", pc };
  window.monitorState[visit.id] = state;
  // Four receive-only m-lines, in this order: visitor audio, visitor video, resident audio, resident video.
  const streams = [new MediaStream(), new MediaStream()];
  visitorVideo.srcObject = streams[0];
  residentVideo.srcObject = streams[1];
  const transceivers = ["audio", "video", "audio", "video"].map((kind) => pc.addTransceiver(kind, { direction: "recvonly" }));
  pc.ontrack = (event) => {
    const index = transceivers.indexOf(event.transceiver);
    streams[index < 2 ? 0 : 1].addTrack(event.track);
    (index < 2 ? visitorVideo : residentVideo).play().catch(() => {});
  };
  const ws = new WebSocket(grant.signaling_url);
  const end = (text) => {
    state.status = "ended";
    show(status, text);
    pc.close();
    if (ws.readyState === WebSocket.OPEN) ws.close();
    delete window.monitorState[visit.id];
    setTimeout(() => tile.remove(), 5000);
  };
  close.addEventListener("click", () => {
    if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "leave" }));
    end(tr("stopped", "Stopped watching."));
  });
  pc.onicecandidate = (e) => {
    if (ws.readyState !== WebSocket.OPEN) return;
    ws.send(JSON.stringify(e.candidate ? { type: "candidate", candidate: e.candidate.toJSON() } : { type: "end-of-candidates" }));
  };
  ws.onopen = () => ws.send(JSON.stringify({ type: "join", token: grant.join_token }));
  ws.onmessage = async (event) => {
    const msg = JSON.parse(event.data);
    if (msg.type === "joined") {
      await pc.setLocalDescription(await pc.createOffer());
      ws.send(JSON.stringify({ type: "offer", sdp: pc.localDescription.sdp }));
    } else if (msg.type === "answer") {
      await pc.setRemoteDescription({ type: "answer", sdp: msg.sdp });
      state.status = "watching";
    } else if (msg.type === "ended") {
      end(msg.reason === "disconnected"
        ? tr("disconnected", "Disconnected ({{reason}}).", { reason: tr(`reasons.${msg.disconnect_reason}`, msg.disconnect_reason) })
        : tr("ended", "The visit has ended."));
    } else if (msg.type === "error") {
      end(tr("cannotWatch", "Cannot watch: {{message}}", { message: msg.message }));
    }
  };
}
})();

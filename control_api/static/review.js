// Investigator review (R3): search a facility's recordings, play both parties in sync and
// seekable (the server answers HTTP range requests), flag moments, export a verifiable archive.
(() => {
"use strict";
const { api, signInWith, $, tr, facilityZone, facilityTime, freshToken } = window.openvisit;
window.reviewState = { status: "idle", visitId: null };
let token = null;
let facilityId = null;
let zone;  // the facility's time zone (A1)
let current = null;
const players = () => [$("visitor"), $("resident")];
const clock = (s) => `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, "0")}`;

signInWith("/v1/auth/login", () => ({ email: $("email").value, password: $("password").value }), async (t) => {
  token = t;
  facilityId = (await api("/v1/me", { token })).facility_id;
  zone = await facilityZone(facilityId, token);
  for (const id of ["about", "search", "results"]) $(id).hidden = false;
  await search();
}, ["investigator"]);

$("search").addEventListener("submit", (e) => { e.preventDefault(); search(); });

async function search() {
  const params = new URLSearchParams();
  if ($("from").value) params.set("from", new Date($("from").value).toISOString());
  if ($("to").value) params.set("to", new Date(new Date($("to").value).getTime() + 86400000).toISOString());
  const found = await api(`/v1/facilities/${facilityId}/recordings?${params}`, { token });
  const needle = $("name").value.trim().toLowerCase();
  const box = $("results");
  box.replaceChildren();
  const shown = found.filter((r) => !needle || `${r.resident_name} ${r.visitor_name}`.toLowerCase().includes(needle));
  if (!shown.length) box.textContent = tr("empty", "No recordings match.");
  for (const r of shown) {
    const row = document.createElement("div");
    row.className = "visit";
    const label = document.createElement("span");
    label.textContent = tr("row", "{{when}} — {{resident}} ({{unit}}) with {{visitor}}", { when: facilityTime(r.started_at,
      zone, { withDate: true }), resident: r.resident_name, unit: r.housing_unit, visitor: r.visitor_name })
      + (r.legal_hold ? tr("legalHold", " — legal hold") : "");
    const open = Object.assign(document.createElement("button"), { textContent: tr("review", "Review") });
    open.dataset.visit = r.visit_id;
    open.addEventListener("click", () => review(r));
    row.append(label, open);
    box.append(row);
  }
}

async function review(summary) {
  const detail = await api(`/v1/recordings/${summary.visit_id}`, { token });
  current = detail;
  window.reviewState = { status: "loading", visitId: detail.visit_id };
  $("review").hidden = false;
  $("title").textContent = tr("title2", "{{resident}} with {{visitor}}, {{when}}", { resident: summary.resident_name,
    visitor: summary.visitor_name, when: facilityTime(detail.started_at, zone, { withDate: true }) });
  // R1: a visit's recording may be several segments (a restart, a rejoin, a crash recovered).
  const segments = [...new Set(detail.files.map((f) => f.segment))];
  const pick = $("segment");
  pick.replaceChildren(...segments.map((n) => {
    const first = detail.files.find((f) => f.segment === n);
    const when = first.segment_started_at ? facilityTime(first.segment_started_at, zone) : "";
    const marks = detail.files.some((f) => f.segment === n && f.truncated) ? tr("endedEarly", " (ended early)") : "";
    return Object.assign(document.createElement("option"), { value: String(n),
      textContent: tr("segmentOption", "{{n}}: from {{when}}", { n, when }) + marks });
  }));
  $("segment-pick").hidden = segments.length < 2;
  pick.onchange = () => showSegment(Number(pick.value));
  showSegment(segments[0]);
  const note = $("recording-note");
  note.hidden = !detail.incomplete;
  note.textContent = detail.incomplete ? tr("incomplete", "This recording is incomplete: {{problems}}", {
    problems: detail.problems.map((p) => p.detail).join("; ") || tr("segmentEndedEarly", "a segment ended early") }) : "";
  const duration = (new Date(detail.ended_at) - new Date(detail.started_at)) / 1000;
  $("seek").max = String(duration);
  showFlags(detail.flags);
  window.reviewState.status = "ready";
}

function showSegment(n) {
  for (const video of players()) {
    const file = current.files.find((f) => f.party === video.id && f.segment === n && !f.damaged);
    video.src = file ? file.url : "";
  }
}

// One control for both players: they share the visit's timeline, so the same time is the same moment.
$("play").addEventListener("click", async () => {
  const [leader] = players();
  if (leader.paused) {
    await Promise.all(players().map((v) => v.play().catch(() => {})));
    $("play").textContent = tr("pause", "Pause");
  } else {
    players().forEach((v) => v.pause());
    $("play").textContent = tr("play", "Play");
  }
});
$("seek").addEventListener("input", () => seekTo(Number($("seek").value)));
function seekTo(seconds) {
  for (const v of players()) v.currentTime = seconds;
}
$("visitor").addEventListener("timeupdate", () => {
  const [leader, follower] = players();
  $("seek").value = String(leader.currentTime);
  $("position").textContent = clock(leader.currentTime);
  if (!leader.paused && Math.abs(follower.currentTime - leader.currentTime) > 0.3) follower.currentTime = leader.currentTime;
});

$("flag-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const at = players()[0].currentTime;
  await api(`/v1/recordings/${current.visit_id}/flags`, { token, method: "POST", body: { at_seconds: at, note: $("note").value } });
  $("note").value = "";
  showFlags((await api(`/v1/recordings/${current.visit_id}`, { token })).flags);
});

function showFlags(flags) {
  const list = $("flags");
  list.replaceChildren();
  for (const f of flags) {
    const item = document.createElement("li");
    const jump = Object.assign(document.createElement("button"), { type: "button", textContent: clock(f.at_seconds) });
    jump.addEventListener("click", () => seekTo(f.at_seconds));
    item.append(jump, ` ${f.note}`);
    list.append(item);
  }
}

$("export").addEventListener("click", async () => {
  const bearer = await freshToken(token);  // the sign-in's current token (renewed when due)
  const resp = await fetch(`/v1/recordings/${current.visit_id}/export`, { method: "POST", headers: { Authorization: `Bearer ${bearer}` } });
  if (!resp.ok) return alert(tr("exportFailed", "Export failed: {{status}}", { status: resp.status }));
  const link = $("download");
  link.href = URL.createObjectURL(await resp.blob());
  link.download = `visit-${current.visit_id}.zip`;
  link.hidden = false;
  window.reviewState.exported = true;
});
})();

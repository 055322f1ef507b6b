// openvisit kiosk page: sign in as the kiosk, list its next visits, check in and join.
"use strict";
const { api, signInWith, enterCall, $, tr, facilityZone, facilityTime } = window.openvisit;

signInWith("/v1/auth/kiosk", () => ({ kiosk_id: $("kiosk-id").value, secret: $("secret").value }), listVisits,
  ["kiosk"]);  // a kiosk signed in once stays signed in: no keyboard needed after that (issue 13)

async function listVisits(token) {
  const visits = await api("/v1/visits", { token });
  const zone = visits.length ? await facilityZone(visits[0].facility_id, token) : undefined;  // A1
  const box = $("visits");
  box.replaceChildren();
  for (const v of visits) {
    const row = document.createElement("div");
    row.className = "visit";
    const label = document.createElement("span");
    label.textContent = tr("row", "{{resident}} – {{time}} ({{minutes}} min)",
      { resident: v.resident_name, time: facilityTime(v.starts_at, zone), minutes: v.length_minutes });
    const button = document.createElement("button");
    button.textContent = tr("join", "Check in and join");
    button.dataset.visit = v.id;
    button.addEventListener("click", () => enterCall(token, v.id,
      () => api(`/v1/visits/${v.id}/check-in`, { token, method: "POST" })));
    row.append(label, button);
    box.append(row);
  }
  if (!visits.length) box.textContent = tr("empty", "No visits right now.");
  $("list").hidden = false;
}

// After the visit: back to this kiosk's list (the kiosk stays signed in).
$("done").addEventListener("click", () => location.reload());

// openvisit visitor page (issue 13): the call view for a visitor or attorney, in the app's frame.
// /app/visitor.html?visit=<id> (from My visits) goes straight to that visit's waiting room; without
// ?visit= it lists the upcoming visits to join. call.js does the call (docs/signaling.md).
"use strict";
(() => {
const { api, money, signInWith, enterCall, $, tr, facilityZone, facilityTime } = window.openvisit;
const wantedVisit = new URLSearchParams(location.search).get("visit");

// The app's sign-in (lib/session.js) when it is a visitor's or an attorney's; else this page's form.
signInWith("/v1/auth/login", () => ({ email: $("email").value, password: $("password").value }),
  wantedVisit ? (token) => enterCall(token, wantedVisit) : listVisits, ["visitor", "attorney"]);

async function listVisits(token) {
  const visits = await api("/v1/visits?status=scheduled", { token });
  const box = $("visits");
  box.replaceChildren();
  for (const v of visits) {
    const zone = await facilityZone(v.facility_id, token);  // A1: the facility's time, zone named
    const row = document.createElement("div");
    row.className = "visit";
    const label = document.createElement("span");
    const title = document.createElement("strong");
    title.textContent = tr("row", "{{resident}} – {{time}} ({{minutes}} min)",
      { resident: v.resident_name, time: facilityTime(v.starts_at, zone, { withDate: true }), minutes: v.length_minutes });
    const detail = document.createElement("small");
    detail.textContent = tr("rowDetail", "{{notice}} · paid {{amount}}", { notice: v.quote.privacy_notice, amount: money(v.total_cents) });
    label.append(title, document.createElement("br"), detail);
    const join = document.createElement("button");
    join.type = "button";
    join.textContent = tr("join", "Join");
    join.setAttribute("aria-label", tr("joinWith", "Join the visit with {{resident}}", { resident: v.resident_name }));
    join.dataset.visit = v.id;
    join.addEventListener("click", () => enterCall(token, v.id));
    row.append(label, join);
    box.append(row);
  }
  if (!visits.length) box.textContent = tr("empty", "No upcoming visits.");
  $("list").hidden = false;
}
})();

// openvisit visitor page: sign in, list upcoming visits, join one (call.js does the call).
"use strict";
const { api, formatMoney, signInWith, enterCall, $ } = window.openvisit;

signInWith("/v1/auth/login", () => ({ email: $("email").value, password: $("password").value }), listVisits);

// ?visit=<id> (from My visits, issue 13): straight into that visit's call with the app's sign-in
// (lib/session.js), or to the sign-in page first and back here.
const wantedVisit = new URLSearchParams(location.search).get("visit");
if (wantedVisit) {
  $("login").hidden = true;
  import("/app/lib/session.js").then(async ({ api: appApi, currentSession, requireSignIn }) => {
    if (!requireSignIn(["visitor", "attorney"])) return;
    await appApi("/v1/me");  // renews the access token when it is about to expire
    enterCall(currentSession().access, wantedVisit);
  });
}

async function listVisits(token) {
  const visits = await api("/v1/visits?status=scheduled", { token });
  const box = $("visits");
  box.replaceChildren();
  for (const v of visits) {
    const row = document.createElement("div");
    row.className = "visit";
    const label = document.createElement("span");
    const title = document.createElement("strong");
    title.textContent = `${v.resident_name} – ${new Date(v.starts_at).toLocaleString()} (${v.length_minutes} min)`;
    const detail = document.createElement("small");
    detail.textContent = `${v.quote.privacy_notice} · paid ${formatMoney(v.total_cents)}`;
    label.append(title, document.createElement("br"), detail);
    const join = document.createElement("button");
    join.textContent = "Join";
    join.dataset.visit = v.id;
    join.addEventListener("click", () => enterCall(token, v.id));
    row.append(label, join);
    box.append(row);
  }
  if (!visits.length) box.textContent = "No upcoming visits.";
  $("list").hidden = false;
}

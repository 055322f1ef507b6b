// Facilities for visitors and attorneys (issue 13): find a facility, ask it for visiting access
// (V1: needs a confirmed email and a photo ID), follow each request (pending, approved, denied with
// the reason), apply again after a denial; attorneys also ask each facility to verify their Bar
// number and see its state (V2). Dates are shown in the facility's own time zone, named (A1).
import { api, el, say, startPage, t } from "../lib/layout.js";
import { dateTime, language } from "../lib/i18n.js";

// The facility's time with the zone named (A1), without the weekday.
const when = (iso, timeZone) => dateTime(iso, timeZone, { weekday: undefined });

const $ = (id) => document.getElementById(id);
const { me } = await startPage("facilities", { roles: ["visitor", "attorney"] });
const attorney = me && me.role === "attorney";
const state = { facilities: [], requests: [], bars: [] };

/** "Central Standard Time (America/Chicago)": the zone a facility's times are shown in (A1). */
function zoneName(timeZone) {
  const part = new Intl.DateTimeFormat(language() === "es" ? "es-US" : "en-US", { timeZone, timeZoneName: "long" })
    .formatToParts(new Date()).find((p) => p.type === "timeZoneName");
  return part ? `${part.value} (${timeZone})` : timeZone;
}

const latestBy = (rows, key) => {  // rows come newest first
  const latest = new Map();
  for (const r of rows) if (!latest.has(r[key])) latest.set(r[key], r);
  return latest;
};

function renderNeeds() {
  const items = [];
  if (!me.email_confirmed) {
    items.push(el("li", {}, el("span", { text: t("needs.email") }), " ",
      el("a", { href: "/app/account.html#email", text: t("needs.emailLink") })));
  }
  if (!me.has_photo_id) {
    items.push(el("li", {}, el("span", { text: t("needs.photo") }), " ",
      el("a", { href: "/app/account.html#photo-id", text: t("needs.photoLink") })));
  }
  $("needs-list").replaceChildren(...items);
  $("needs").hidden = items.length === 0;
  return items.length === 0;
}

function badge(status) {
  return el("span", { class: `badge ${status}`, text: t(`status.${status}`) });
}

function renderMine() {
  const byId = Object.fromEntries(state.facilities.map((f) => [f.id, f]));
  $("mine-empty").hidden = state.requests.length > 0;
  $("mine-list").replaceChildren(...state.requests.map((r) => {
    const facility = byId[r.facility_id];
    const zone = facility ? facility.timezone : "UTC";
    return el("li", { class: `request ${r.status}`, "data-request": r.id },
      el("div", { class: "line" }, el("strong", { text: facility ? facility.name : r.facility_id }), badge(r.status)),
      el("div", { class: "note", text: t("mine.asked", { when: when(r.created_at, zone) }) }),
      r.decided_at ? el("div", { class: "note", text: t(`mine.decided.${r.status}`, { when: when(r.decided_at, zone) }) }) : null,
      r.status === "denied" && r.reason ? el("p", { class: "reason" }, el("strong", { text: t("reason") }), ` ${r.reason}`) : null,
      r.status === "pending" ? el("div", { class: "note", text: t("mine.pendingNext") }) : null,
      r.status === "approved" ? el("a", { href: `/app/book.html?facility=${encodeURIComponent(r.facility_id)}`, text: t("mine.book") }) : null);
  }));
  $("mine").hidden = false;
}

function accessPart(facility, ready) {
  const latest = latestBy(state.requests, "facility_id").get(facility.id);
  const part = el("div", { class: "access" });
  if (latest) part.append(el("div", { class: "line" }, el("span", { text: t("find.access") }), badge(latest.status)));
  if (latest && latest.status === "denied" && latest.reason) {
    part.append(el("p", { class: "reason" }, el("strong", { text: t("reason") }), ` ${latest.reason}`));
  }
  if (latest && latest.status === "denied") {  // V1: a denied visitor may apply again, after fixing what was wrong
    part.append(el("p", { class: "fix" }, el("span", { text: t("find.fix") }), " ",
      el("a", { href: "/app/account.html#photo-id", text: t("find.fixLink") })));
  }
  if (!latest || latest.status === "denied") {
    const label = latest ? t("find.reapply") : t("find.request");
    part.append(el("button", { type: "button", class: latest ? "request reapply" : "request", disabled: !ready,
      "aria-label": `${label}: ${facility.name}`, text: label,
      onclick: (event) => requestAccess(facility, event.currentTarget) }));
    if (!ready) part.append(el("p", { class: "note", text: t("find.notReady") }));
  }
  return part;
}

function barPart(facility) {
  const latest = latestBy(state.bars, "facility_id").get(facility.id);
  const part = el("div", { class: "bar-state" });
  part.append(el("div", { class: "line" }, el("span", { text: t("bar.label") }),
    latest ? badge(latest.status) : el("span", { class: "badge none", text: t("status.none") })));
  if (latest && latest.status === "rejected" && latest.reason) {
    part.append(el("p", { class: "reason" }, el("strong", { text: t("reason") }), ` ${latest.reason}`));
  }
  if (latest && latest.status === "verified") part.append(el("p", { class: "note", text: t("bar.verifiedNote") }));
  if (!latest || latest.status === "rejected") {
    const label = latest ? t("bar.again") : t("bar.ask");
    part.append(el("button", { type: "button", class: "bar-request", disabled: !me.email_confirmed,
      "aria-label": `${label}: ${facility.name}`, text: label,
      onclick: (event) => requestBar(facility, event.currentTarget) }));
  }
  return part;
}

function renderFacilities() {
  const ready = renderNeeds();
  const query = $("search").value.trim().toLocaleLowerCase();
  const shown = state.facilities.filter((f) => !query || f.name.toLocaleLowerCase().includes(query));
  $("facility-list").replaceChildren(...shown.map((f) => el("li", { class: "facility", "data-facility": f.id },
    el("h3", { text: f.name }),
    el("p", { class: "note", text: t("find.zone", { zone: zoneName(f.timezone) }) }),
    accessPart(f, ready),
    attorney ? barPart(f) : null)));
  $("find-count").textContent = state.facilities.length === 0 ? t("find.none")
    : shown.length === 0 ? t("find.noMatch", { query: $("search").value.trim() })
      : t("find.count", { count: shown.length });
  $("find").hidden = false;
}

async function load() {
  const [facilities, requests, bars] = await Promise.all([api("/v1/facilities"), api("/v1/me/access-requests"),
    attorney ? api("/v1/me/bar-verifications") : Promise.resolve([])]);
  Object.assign(state, { facilities, requests, bars });
  Object.assign(me, await api("/v1/me"));
  renderMine();
  renderFacilities();
}

function explain(err) {
  if (err.slug === "email-not-confirmed") return t("errors.email");
  if (err.slug === "photo-id-required") return t("errors.photo");
  if (err.slug === "already-requested") return t("errors.already");
  if (err.slug === "no-bar-number") return t("errors.noBar");
  return t("common:error", { message: err.message });
}

async function act(button, work) {
  say($("error"), "");
  say($("status"), "");
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    const text = await work();
    await load();
    say($("status"), text);
    $("status").focus();
  } catch (err) {
    say($("error"), explain(err));
    if (err.slug === "already-requested" || err.status === 422) await load().catch(() => {});
    button.disabled = false;
  } finally {
    button.removeAttribute("aria-busy");
  }
}

function requestAccess(facility, button) {
  return act(button, async () => {
    await api(`/v1/facilities/${encodeURIComponent(facility.id)}/access-requests`, { method: "POST" });
    return t("sent", { name: facility.name });
  });
}

function requestBar(facility, button) {
  return act(button, async () => {
    await api(`/v1/facilities/${encodeURIComponent(facility.id)}/bar-verifications`, { method: "POST" });
    return t("bar.sent", { name: facility.name });
  });
}

$("search").addEventListener("input", renderFacilities);
$("status").tabIndex = -1;
try {
  await load();
} catch (err) {
  say($("error"), t("common:error", { message: err.message }));
} finally {
  $("loading").hidden = true;
}

// The facility admin's console (issue 13): access requests with the photo ID (V1), Bar verifications (V2),
// bookings awaiting review (A7), the day's visits per unit, facility settings (A1-A8, M8), hours, closures,
// lengths and prices, the resident roster and its CSV import, kiosk devices and staff accounts (V3).
// Uses only the public API. Shared console helpers: lib/console.js.
import { api, el, say, startPage, t } from "../lib/layout.js";
import { dateTime, money, time, todayIn } from "../lib/i18n.js";
import {
  badge, busy, clearErrors, formParts, fromCents, markField, pairs, setUpTabs, showProblem, toCents,
} from "../lib/console.js";

/** Minutes east of UTC of `zone` at the instant `ms`. */
function offsetMinutes(ms, zone) {
  const parts = new Intl.DateTimeFormat("en-US", { timeZone: zone, hourCycle: "h23", year: "numeric", month: "2-digit",
    day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" }).formatToParts(new Date(ms));
  const get = (type) => Number(parts.find((p) => p.type === type).value);
  const asUtc = Date.UTC(get("year"), get("month") - 1, get("day"), get("hour"), get("minute"), get("second"));
  return Math.round((asUtc - ms) / 60000);
}

/** "2026-12-03T09:00" on the facility's wall clock -> an ISO instant (A1: facility time, not the browser's). */
function zonedToIso(local, zone) {
  const [day, clock] = local.split("T");
  const [y, m, d] = day.split("-").map(Number);
  const [h, mi] = clock.split(":").map(Number);
  const naive = Date.UTC(y, m - 1, d, h, mi);
  let guess = naive - offsetMinutes(naive, zone) * 60000;
  guess = naive - offsetMinutes(guess, zone) * 60000;
  return new Date(guess).toISOString();
}


// ------------------------------------------------------------------ the page

const $ = (id) => document.getElementById(id);
const WEEKDAYS = [0, 1, 2, 3, 4, 5, 6];
// M8: per-minute caps by size tier, cents (mirrors control_api/domain/rates.py; the API checks again).
const CAPS = { prison: 25, jail_1000_plus: 19, jail_350_999: 19, jail_100_349: 21, jail_50_99: 25, jail_under_50: 44 };

const { session, me } = await startPage("admin", { roles: ["admin", "operator"] });
// The operator may open a facility's console from the operator console (?facility=<id>).
const facilityId = new URLSearchParams(location.search).get("facility") || (me && me.facility_id);
const base = `/v1/facilities/${facilityId}`;
let facility = null;
let units = [];
let people = new Map();  // visitor id -> applicant (from access requests), to name bookers and attorneys
const loaded = new Set();

const unitName = (id) => (units.find((u) => u.id === id) || {}).name || "—";
const zone = () => facility.timezone;
const when = (iso) => dateTime(iso, zone());

async function start() {
  if (!facilityId) {
    say($("page-status"), "");
    say($("page-error"), t("noFacility"));
    return;
  }
  try {
    [facility, units] = await Promise.all([api(base), api(`${base}/housing-units`)]);
  } catch (err) {
    say($("page-status"), "");
    say($("page-error"), t("common:error", { message: err.message }));
    return;
  }
  say($("facility-line"), t("facilityLine", { name: facility.name, zone: facility.timezone }));
  say($("page-status"), "");
  setUpTabs($("tabs"), (name) => {
    if (!loaded.has(name)) {
      loaded.add(name);
      SECTIONS[name]();
    }
  });
  if (!loaded.has("requests")) countRequests();
}

async function countRequests() {
  try {
    const pending = await api(`${base}/access-requests?status=pending`);
    say($("count-requests"), pending.length ? t("tabs.waiting", { count: pending.length }) : "");
  } catch { /* the count is a convenience */ }
}

function unitOptions(select, { whole = false } = {}) {
  select.replaceChildren(...(whole ? [el("option", { value: "", text: t("closures.whole") })] : []),
    ...units.map((u) => el("option", { value: u.id, text: u.name })));
}

// ------------------------------------------------------------------ requests (V1, V2, A7)

async function loadRequests() {
  const [all, bars, reviews] = await Promise.all([
    api(`${base}/access-requests`),
    api(`${base}/bar-verifications?status=pending`),
    session.role === "admin" ? api(`/v1/visits?facility_id=${facilityId}&status=pending_review`) : Promise.resolve([]),
  ]);
  people = new Map(all.filter((a) => a.applicant).map((a) => [a.visitor_id, a.applicant]));
  const pending = all.filter((a) => a.status === "pending");
  say($("count-requests"), pending.length ? t("tabs.waiting", { count: pending.length }) : "");
  $("access-list").replaceChildren(...pending.map(accessCard));
  $("access-empty").hidden = pending.length > 0;
  $("bar-list").replaceChildren(...bars.map(barCard));
  $("bar-empty").hidden = bars.length > 0;
  say($("review-mode-note"), t(facility.review_mode === "manual" ? "review.manual" : "review.auto"));
  $("review-list").replaceChildren(...reviews.map(reviewCard));
  $("review-empty").hidden = reviews.length > 0;
}

/** A decision form: approve, or say why not (the reason is required for the negative choice). */
function decisionForm({ id, yes, no, reasonLabel, onDecide }) {
  const reasonId = `${id}-reason`;
  const alert = el("p", { class: "error", role: "alert", hidden: true });
  const status = el("p", { class: "ok", role: "status" });
  const reason = el("textarea", { id: reasonId, rows: "2", maxlength: "500" });
  const yesButton = el("button", { type: "button", class: "approve", text: yes });
  const noButton = el("button", { type: "button", class: "danger", text: no });
  const form = el("form", { class: "decision", novalidate: true },
    el("div", { class: "field" }, el("label", { for: reasonId, text: reasonLabel }), reason),
    el("div", { class: "actions" }, yesButton, noButton), alert, status);
  form.addEventListener("submit", (event) => event.preventDefault());
  let decided = false;
  const decide = async (positive, button) => {
    say(alert, "");
    if (!positive && !reason.value.trim()) {
      say(alert, t("reasonNeeded"));
      reason.setAttribute("aria-invalid", "true");
      reason.focus();
      return;
    }
    reason.removeAttribute("aria-invalid");
    await busy(button, async () => {
      try {
        say(status, await onDecide(positive, reason.value.trim()));
        decided = true;
      } catch (err) {
        say(alert, err.message);
      }
    });
    if (decided) {  // a decision is final: the form stays as a record of it
      for (const control of [yesButton, noButton, reason]) control.disabled = true;
    }
  };
  yesButton.addEventListener("click", () => decide(true, yesButton));
  noButton.addEventListener("click", () => decide(false, noButton));
  return form;
}

function accessCard(request) {
  const a = request.applicant || {};
  const photo = el("figure", { class: "photo-id" });
  if (a.has_photo_id) {
    const img = el("img", { alt: t("access.photoAlt", { name: a.legal_name }) });
    photo.append(el("div", { class: "photo-frame" }, img), el("figcaption", { text: t("access.photo") }));
    api(`${base}/access-requests/${request.id}/photo-id`).then((blob) => {
      img.src = URL.createObjectURL(blob);
    }).catch((err) => {
      img.remove();
      photo.prepend(el("p", { class: "error", text: t("access.photoFailed", { message: err.message }) }));
    });
  } else {
    photo.append(el("p", { class: "error", text: t("access.noPhoto") }));
  }
  const headingId = `access-${request.id}`;
  return el("article", { class: "card request", "aria-labelledby": headingId, "data-request": request.id },
    el("h3", { id: headingId, text: a.legal_name || request.visitor_name || request.visitor_id }),
    el("div", { class: "request-body" }, photo, el("div", {},
      pairs([[t("access.role"), t(`common:role.${a.role}`)], [t("access.email"), a.email],
        [t("access.born"), a.date_of_birth], [t("access.address"), a.postal_address], [t("access.phone"), a.phone],
        [t("access.bar"), a.bar_number ? `${a.bar_number} (${a.bar_state})` : null],
        [t("access.asked"), when(request.created_at)]]),
      decisionForm({ id: `decide-${request.id}`, yes: t("access.approve"), no: t("access.deny"),
        reasonLabel: t("access.reason"), onDecide: async (approve, reason) => {
          const body = approve ? { decision: "approve" } : { decision: "deny", reason };
          if (approve && reason) body.reason = reason;
          await api(`${base}/access-requests/${request.id}/decision`, { method: "POST", body });
          countRequests();
          return t(approve ? "access.approved" : "access.denied", { name: a.legal_name });
        } }))));
}

function barCard(v) {
  const who = people.get(v.attorney_id);
  const headingId = `bar-${v.id}`;
  return el("article", { class: "card request", "aria-labelledby": headingId },
    el("h3", { id: headingId, text: who ? who.legal_name : t("bar.attorney") }),
    pairs([[t("bar.number"), v.bar_number], [t("bar.state"), v.bar_state], [t("access.email"), who && who.email],
      [t("access.asked"), when(v.created_at)]]),
    decisionForm({ id: `bar-decide-${v.id}`, yes: t("bar.verify"), no: t("bar.reject"), reasonLabel: t("bar.reason"),
      onDecide: async (verify, reason) => {
        const body = verify ? { decision: "verify" } : { decision: "reject", reason };
        await api(`${base}/bar-verifications/${v.id}/decision`, { method: "POST", body });
        return t(verify ? "bar.verified" : "bar.rejected");
      } }));
}

function reviewCard(visit) {
  const who = people.get(visit.booker_id);
  const headingId = `review-${visit.id}`;
  return el("article", { class: "card request", "aria-labelledby": headingId },
    el("h3", { id: headingId, text: t("review.title", { resident: visit.resident_name || visit.resident_id,
      when: when(visit.starts_at) }) }),
    pairs([[t("review.visitor"), who ? who.legal_name : visit.booker_id], [t("visit.type"), t(`visit.types.${visit.visit_type}`)],
      [t("visit.length"), t("visit.minutes", { count: visit.length_minutes })], [t("visit.unit"), unitName(visit.housing_unit_id)],
      [t("visit.paid"), money(visit.total_cents)]]),
    decisionForm({ id: `review-decide-${visit.id}`, yes: t("review.approve"), no: t("review.reject"),
      reasonLabel: t("review.reason"), onDecide: async (approve, reason) => {
        const body = approve ? { decision: "approve" } : { decision: "reject", reason };
        const result = await api(`/v1/visits/${visit.id}/review`, { method: "POST", body });
        return approve ? t("review.approved") : t("review.rejected", { credit: money(result.credited_cents || 0) });
      } }));
}

// ------------------------------------------------------------------ the day's visits per unit

async function loadToday() {
  if (!$("day").value) $("day").value = todayIn(zone());
  const day = $("day").value;
  say($("today-status"), t("common:loading"));
  try {
    const visits = await api(`/v1/visits?facility_id=${facilityId}&from=${day}&to=${day}&limit=500`);
    const live = visits.filter((v) => ["scheduled", "in_progress", "pending_review"].includes(v.status));
    say($("today-status"), t("today.summary", { count: live.length, day: date(day) }));
    $("today-units").replaceChildren(...units.map((u) => unitDay(u, visits.filter((v) => v.housing_unit_id === u.id))));
  } catch (err) {
    say($("today-status"), t("common:error", { message: err.message }));
  }
}

function date(day) {
  const [y, m, d] = day.split("-").map(Number);
  return new Intl.DateTimeFormat(document.documentElement.lang === "es" ? "es-US" : "en-US",
    { dateStyle: "full", timeZone: "UTC" }).format(new Date(Date.UTC(y, m - 1, d, 12)));
}

function unitDay(unit, visits) {
  const inUse = visits.filter((v) => v.status === "in_progress").length;
  const headingId = `day-unit-${unit.id}`;
  const section = el("section", { class: "card", "aria-labelledby": headingId },
    el("h3", { id: headingId, text: unit.name }),
    el("p", { class: "note", text: t("today.occupancy", { used: inUse, count: unit.kiosk_count }) }));
  if (!visits.length) {
    section.append(el("p", { class: "empty", text: t("today.none") }));
    return section;
  }
  const rows = visits.map((v) => {
    const actions = el("td", {});
    if (["scheduled", "pending_review"].includes(v.status)) actions.append(cancelControl(v));
    return el("tr", {},
      el("td", { text: `${time(v.starts_at, zone())}–${time(v.ends_at, zone())}` }),
      el("td", { text: v.resident_name || v.resident_id }),
      el("td", { text: t(`visit.types.${v.visit_type}`) }),
      el("td", {}, badge(t(`visit.status.${v.status}`, { defaultValue: v.status }), v.status)),
      actions);
  });
  section.append(el("div", { class: "table-wrap", tabindex: "0" }, el("table", { class: "grid-table" },
    el("caption", { class: "visually-hidden", text: t("today.caption", { unit: unit.name }) }),
    el("thead", {}, el("tr", {}, ...["today.time", "today.resident", "visit.type", "today.state"].map((k) =>
      el("th", { scope: "col", text: `${t(k)} ${k === "today.time" ? `(${shortZone()})` : ""}`.trim() })),
    el("th", { scope: "col" }, el("span", { class: "visually-hidden", text: t("today.actions") })))),
    el("tbody", {}, ...rows))));
  return section;
}

function shortZone() {
  const parts = new Intl.DateTimeFormat("en-US", { timeZone: zone(), timeZoneName: "short" }).formatToParts(new Date());
  return (parts.find((p) => p.type === "timeZoneName") || {}).value || zone();
}

/** Cancel a visit: a first click asks for the reason and a confirmation (the visitor is credited, M3b). */
function cancelControl(visit) {
  const wrap = el("div", { class: "cancel" });
  const open = el("button", { type: "button", class: "secondary", text: t("today.cancel"),
    "aria-expanded": "false" });
  const reasonId = `cancel-${visit.id}`;
  const reason = el("input", { id: reasonId, maxlength: "500" });
  const confirm = el("button", { type: "button", class: "danger", text: t("today.confirmCancel") });
  const alert = el("p", { class: "error", role: "alert", hidden: true });
  const box = el("div", { class: "confirm", hidden: true },
    el("p", { text: t("today.cancelWarning") }),
    el("label", { for: reasonId, text: t("today.cancelReason") }), reason, confirm, alert);
  open.addEventListener("click", () => {
    box.hidden = !box.hidden;
    open.setAttribute("aria-expanded", String(!box.hidden));
    if (!box.hidden) reason.focus();
  });
  confirm.addEventListener("click", () => busy(confirm, async () => {
    if (!reason.value.trim()) {
      say(alert, t("reasonNeeded"));
      return;
    }
    try {
      const result = await api(`/v1/visits/${visit.id}/cancel`, { method: "POST", body: { reason: reason.value.trim() } });
      wrap.replaceChildren(el("p", { role: "status", text: t("today.cancelled", { credit: money(result.credited_cents || 0) }) }));
    } catch (err) {
      say(alert, err.message);
    }
  }));
  wrap.append(open, box);
  return wrap;
}

// ------------------------------------------------------------------ settings (A1-A8, M8)

const SETTINGS = { "s-name": "name", "s-timezone": "timezone", "s-horizon": "booking_horizon_days",
  "s-lead": "min_lead_minutes", "s-notice": "cancellation_notice_hours", "s-weekly": "weekly_visit_limit",
  "s-review": "review_mode", "s-retention": "retention_days", "s-billing": "billing_mode" };
const NUMBERS = new Set(["booking_horizon_days", "min_lead_minutes", "cancellation_notice_hours", "weekly_visit_limit",
  "retention_days"]);

function fillSettings() {
  for (const [id, name] of Object.entries(SETTINGS)) $(id).value = facility[name];
  say($("s-tier"), t("settings.tierValue", { tier: t(`tiers.${facility.size_tier}`), cap: money(CAPS[facility.size_tier] || 0) }));
}

function loadSettings() {
  fillSettings();
}

$("settings-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  clearErrors(form);
  const body = {};
  for (const [id, name] of Object.entries(SETTINGS)) {
    const raw = $(id).value.trim();
    const value = NUMBERS.has(name) ? (raw === "" ? null : Number(raw)) : raw;
    if (value !== facility[name]) body[name] = value;
  }
  if (!Object.keys(body).length) {
    say(formParts(form).status, t("settings.unchanged"));
    return;
  }
  busy(form.querySelector("button[type=submit]"), async () => {
    try {
      facility = await api(base, { method: "PATCH", body });
      fillSettings();
      say($("facility-line"), t("facilityLine", { name: facility.name, zone: facility.timezone }));
      say(formParts(form).status, t("settings.saved"));
      loaded.delete("hours");
    } catch (err) {
      const fields = { "invalid-booking-window": ["booking_horizon_days", "min_lead_minutes"],
        "rate-above-cap": ["billing_mode"] }[err.slug] || [];
      showProblem(form, err, fields);
    }
  });
});

// ------------------------------------------------------------------ units, hours, closures, prices, fees

async function loadHours() {
  const [windows, closures, options, fees] = await Promise.all([
    Promise.all(units.map((u) => api(`${base}/housing-units/${u.id}/windows`))),
    api(`${base}/closures`), api(`${base}/session-options`), api(`${base}/fees`)]);
  $("units").replaceChildren(...units.map((u, i) => unitCard(u, windows[i])));
  unitOptions($("closure-unit"), { whole: true });
  showClosures(closures);
  showOptions(options);
  $("fees").replaceChildren(...(fees.length ? fees.map((f) => el("li", { text: f.rate_basis_points
    ? t("fees.rate", { name: f.name, rate: (f.rate_basis_points / 100).toLocaleString(document.documentElement.lang) })
    : t("fees.amount", { name: f.name, amount: money(f.amount_cents) }) })) : [el("li", { class: "empty", text: t("fees.none") })]));
}

function weekdayName(d) {
  // 0 = Monday (the API's numbering); 2024-01-01 was a Monday.
  return new Intl.DateTimeFormat(document.documentElement.lang === "es" ? "es-US" : "en-US", { weekday: "long", timeZone: "UTC" })
    .format(new Date(Date.UTC(2024, 0, 1 + d)));
}

function windowRow(unitId, w, index) {
  const id = (part) => `w-${unitId}-${index}-${part}`;
  const day = el("select", { id: id("day"), name: "weekday" },
    ...WEEKDAYS.map((d) => el("option", { value: String(d), selected: d === w.weekday, text: weekdayName(d) })));
  const startInput = el("input", { id: id("start"), name: "start", type: "time", value: w.start, required: true });
  const endInput = el("input", { id: id("end"), name: "end", type: "time", value: w.end === "24:00" ? "00:00" : w.end,
    required: true });
  const remove = el("button", { type: "button", class: "secondary", text: t("units.removeWindow"),
    "aria-label": t("units.removeWindowLabel", { n: index + 1 }) });
  const row = el("tr", { class: "window-row" },
    el("td", {}, el("label", { for: id("day"), class: "visually-hidden", text: t("units.weekdayOf", { n: index + 1 }) }), day),
    el("td", {}, el("label", { for: id("start"), class: "visually-hidden", text: t("units.startOf", { n: index + 1 }) }), startInput),
    el("td", {}, el("label", { for: id("end"), class: "visually-hidden", text: t("units.endOf", { n: index + 1 }) }), endInput),
    el("td", {}, remove));
  remove.addEventListener("click", () => {
    const body = row.parentElement;
    row.remove();
    (body.querySelector("select, input, button") || body.closest("form").querySelector(".add-window")).focus();
  });
  return row;
}

function unitCard(unit, windows) {
  const headingId = `unit-${unit.id}`;
  const kioskId = `kiosks-${unit.id}`;
  const kioskInput = el("input", { id: kioskId, name: "kiosk_count", type: "number", min: "0", max: "500",
    value: String(unit.kiosk_count), inputmode: "numeric" });
  const kioskForm = el("form", { class: "inline-form", novalidate: true },
    el("div", { class: "field" }, el("label", { for: kioskId, text: t("units.kiosksOf", { unit: unit.name }) }), kioskInput,
      el("p", { class: "field-error", "data-field": "kiosk_count", hidden: true })),
    el("button", { type: "submit", text: t("units.saveKiosks") }),
    el("p", { class: "error", role: "alert", hidden: true }), el("p", { class: "ok", role: "status" }));
  kioskForm.addEventListener("submit", (event) => {
    event.preventDefault();
    clearErrors(kioskForm);
    busy(kioskForm.querySelector("button"), async () => {
      try {
        const updated = await api(`${base}/housing-units/${unit.id}`, { method: "PATCH",
          body: { kiosk_count: kioskInput.value === "" ? null : Number(kioskInput.value) } });
        Object.assign(unit, updated);
        say(formParts(kioskForm).status, t("units.kiosksSaved"));
      } catch (err) {
        showProblem(kioskForm, err);
      }
    });
  });
  let counter = windows.length;
  const rows = el("tbody", {}, ...windows.map((w, i) => windowRow(unit.id, w, i)));
  const add = el("button", { type: "button", class: "secondary add-window", text: t("units.addWindow") });
  add.addEventListener("click", () => {
    const last = rows.lastElementChild;
    const weekday = last ? Math.min(6, Number(last.querySelector("select").value) + 1) : 0;
    const row = windowRow(unit.id, { weekday, start: "09:00", end: "17:00" }, counter++);
    rows.append(row);
    row.querySelector("select").focus();
  });
  const hoursForm = el("form", { class: "hours-form", novalidate: true, "data-unit": unit.name },
    el("div", { class: "table-wrap", tabindex: "0" }, el("table", { class: "grid-table editor" },
      el("caption", { class: "visually-hidden", text: t("units.hoursOf", { unit: unit.name }) }),
      el("thead", {}, el("tr", {}, el("th", { scope: "col", text: t("units.weekday") }),
        el("th", { scope: "col", text: t("units.start") }), el("th", { scope: "col", text: t("units.end") }),
        el("th", { scope: "col" }, el("span", { class: "visually-hidden", text: t("units.actions") })))),
      rows)),
    el("p", { class: "empty", text: t("units.noHours") }),
    el("div", { class: "actions" }, add, el("button", { type: "submit", text: t("units.saveHours") })),
    el("p", { class: "error", role: "alert", hidden: true }), el("p", { class: "ok", role: "status" }));
  const emptyNote = hoursForm.querySelector(".empty");
  const refreshEmpty = () => { emptyNote.hidden = rows.children.length > 0; };
  new MutationObserver(refreshEmpty).observe(rows, { childList: true });
  refreshEmpty();
  hoursForm.addEventListener("submit", (event) => {
    event.preventDefault();
    clearErrors(hoursForm);
    const list = [...rows.children].map((row) => {
      const end = row.querySelector("[name=end]").value;
      return { weekday: Number(row.querySelector("[name=weekday]").value), start: row.querySelector("[name=start]").value,
        end: end === "00:00" ? "24:00" : end };
    });
    busy(hoursForm.querySelector("button[type=submit]"), async () => {
      try {
        const saved = await api(`${base}/housing-units/${unit.id}/windows`, { method: "PUT", body: { windows: list } });
        rows.replaceChildren(...saved.map((w, i) => windowRow(unit.id, w, i)));
        counter = saved.length;
        say(formParts(hoursForm).status, t("units.hoursSaved", { unit: unit.name }));
      } catch (err) {
        const problems = err.problem && Array.isArray(err.problem.problems) ? err.problem.problems : null;
        say(formParts(hoursForm).alert, problems ? problems.join(" · ") : err.message);
      }
    });
  });
  return el("section", { class: "card unit", "aria-labelledby": headingId },
    el("h3", { id: headingId, text: unit.name }), kioskForm,
    el("h4", { text: t("units.hours") }), hoursForm);
}

$("unit-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  clearErrors(form);
  busy(form.querySelector("button"), async () => {
    try {
      const unit = await api(`${base}/housing-units`, { method: "POST", body: { name: $("unit-name").value.trim(),
        kiosk_count: Number($("unit-kiosks").value || 0) } });
      units = await api(`${base}/housing-units`);
      form.reset();
      say(formParts(form).status, t("units.added", { unit: unit.name }));
      await loadHours();
      for (const name of ["residents", "kiosks", "today"]) loaded.delete(name);
    } catch (err) {
      showProblem(form, err, err.slug === "unit-exists" ? ["name"] : []);
    }
  });
});

function showClosures(closures) {
  $("closures-empty").hidden = closures.length > 0;
  $("closures").replaceChildren(...closures.map((c) => {
    const remove = el("button", { type: "button", class: "secondary", text: t("closures.remove"),
      "aria-label": t("closures.removeLabel", { reason: c.reason }) });
    const item = el("div", { class: "card row" },
      el("div", {}, el("strong", { text: c.reason }),
        el("p", { text: t("closures.span", { where: c.housing_unit_id ? unitName(c.housing_unit_id) : t("closures.whole"),
          from: when(c.starts_at), to: when(c.ends_at) }) })), remove);
    remove.addEventListener("click", () => {
      if (!confirm(t("closures.confirmRemove", { reason: c.reason }))) return;
      busy(remove, async () => {
        try {
          await api(`${base}/closures/${c.id}`, { method: "DELETE" });
          showClosures(await api(`${base}/closures`));
          $("closure-start").focus();
        } catch (err) {
          say(formParts($("closure-form")).alert, err.message);
        }
      });
    });
    return item;
  }));
}

$("closure-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  clearErrors(form);
  const missing = ["closure-start", "closure-end", "closure-reason"].filter((id) => !$(id).value.trim());
  if (missing.length) {
    for (const id of missing) markField(form, $(id).name, t("required"));
    say(formParts(form).alert, t("fillRequired"));
    return;
  }
  const body = { starts_at: zonedToIso($("closure-start").value, zone()), ends_at: zonedToIso($("closure-end").value, zone()),
    reason: $("closure-reason").value.trim() };
  if ($("closure-unit").value) body.housing_unit_id = $("closure-unit").value;
  busy(form.querySelector("button[type=submit]"), async () => {
    try {
      await api(`${base}/closures`, { method: "POST", body });
      form.reset();
      say(formParts(form).status, t("closures.added"));
      showClosures(await api(`${base}/closures`));
    } catch (err) {
      showProblem(form, err, err.message.includes("starts_at") ? ["ends_at"] : []);
    }
  });
});

let optionCounter = 0;

function optionRow(o) {
  const n = optionCounter++;
  const id = (part) => `opt-${n}-${part}`;
  const label = (part, key) => el("label", { for: id(part), class: "visually-hidden", text: t(key, { n: n + 1 }) });
  const type = el("select", { id: id("type"), name: "visit_type" },
    ...["social", "privileged"].map((v) => el("option", { value: v, selected: v === o.visit_type, text: t(`visit.types.${v}`) })));
  const length = el("input", { id: id("length"), name: "length_minutes", type: "number", min: "5", max: "240",
    value: String(o.length_minutes), inputmode: "numeric", required: true });
  const price = el("input", { id: id("price"), name: "price", type: "number", min: "0", step: "0.01",
    value: fromCents(o.price_cents), inputmode: "decimal" });
  const perMinute = el("input", { id: id("pm"), name: "per_minute", type: "number", min: "0", step: "0.01",
    value: fromCents(o.per_minute_cents), inputmode: "decimal", "aria-describedby": id("cap") });
  const cap = el("p", { id: id("cap"), class: "field-error", role: "status", hidden: true });
  const check = () => {  // M8, checked as the admin types (the API checks again on save)
    const cents = toCents(perMinute.value);
    const limit = CAPS[facility.size_tier];
    const over = facility.billing_mode === "per_minute" && type.value === "social" && cents !== null && cents > limit;
    say(cap, over ? t("options.overCap", { cap: money(limit) }) : "");
    if (over) perMinute.setAttribute("aria-invalid", "true");
    else perMinute.removeAttribute("aria-invalid");
  };
  perMinute.addEventListener("input", check);
  type.addEventListener("change", check);
  const remove = el("button", { type: "button", class: "secondary", text: t("options.remove"),
    "aria-label": t("options.removeLabel", { n: n + 1 }) });
  const row = el("tr", { class: "option-row" },
    el("td", {}, label("type", "options.typeOf"), type), el("td", {}, label("length", "options.lengthOf"), length),
    el("td", {}, label("price", "options.priceOf"), price),
    el("td", {}, label("pm", "options.perMinuteOf"), perMinute, cap), el("td", {}, remove));
  remove.addEventListener("click", () => {
    row.remove();
    $("option-add").focus();
  });
  check();
  return row;
}

function showOptions(options) {
  const note = facility.billing_mode === "per_minute"
    ? t("options.perMinuteMode", { cap: money(CAPS[facility.size_tier] || 0), tier: t(`tiers.${facility.size_tier}`) })
    : t("options.perVisitMode");
  say($("options-mode"), note);
  $("options-rows").replaceChildren(...options.map(optionRow));
}

$("option-add").addEventListener("click", () => {
  const row = optionRow({ visit_type: "social", length_minutes: 30, price_cents: 0, per_minute_cents: 0 });
  $("options-rows").append(row);
  row.querySelector("select").focus();
});

$("options-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  clearErrors(form);
  const options = [...$("options-rows").children].map((row) => ({
    visit_type: row.querySelector("[name=visit_type]").value,
    length_minutes: Number(row.querySelector("[name=length_minutes]").value),
    price_cents: toCents(row.querySelector("[name=price]").value) ?? 0,
    per_minute_cents: toCents(row.querySelector("[name=per_minute]").value) ?? 0,
  }));
  busy(form.querySelector("button[type=submit]"), async () => {
    try {
      showOptions(await api(`${base}/session-options`, { method: "PUT", body: { options } }));
      say(formParts(form).status, t("options.saved"));
    } catch (err) {
      const errors = err.problem && Array.isArray(err.problem.errors) ? err.problem.errors : [];
      const rows = [...$("options-rows").children];
      for (const e of errors) {  // ["body", "options", <row>, <field>]
        const [, , index, name] = e.location || [];
        const row = rows[Number(index)];
        const input = row && row.querySelector(`[name=${{ price_cents: "price", per_minute_cents: "per_minute" }[name] || name}]`);
        if (input) input.setAttribute("aria-invalid", "true");
      }
      say(formParts(form).alert, errors.length
        ? errors.map((e) => t("options.rowProblem", { n: Number(e.location[2]) + 1, message: e.message })).join(" · ")
        : err.message);
    }
  });
});

// ------------------------------------------------------------------ residents

async function loadResidents() {
  unitOptions($("r-unit"));
  const q = $("resident-q").value.trim();
  say($("residents-status"), t("common:loading"));
  try {
    const list = await api(`${base}/residents${q ? `?q=${encodeURIComponent(q)}` : ""}`);
    say($("residents-status"), list.length ? t("residents.count", { count: list.length })
      : t(q ? "residents.noMatch" : "residents.empty"));
    $("residents-rows").replaceChildren(...list.map(residentRow));
  } catch (err) {
    say($("residents-status"), t("common:error", { message: err.message }));
  }
}

function residentRow(r) {
  const toggle = el("button", { type: "button", class: "secondary",
    text: r.active ? t("residents.deactivate") : t("residents.reactivate"),
    "aria-label": t(r.active ? "residents.deactivateLabel" : "residents.reactivateLabel", { name: r.full_name }) });
  toggle.addEventListener("click", () => {
    if (r.active && !confirm(t("residents.confirmDeactivate", { name: r.full_name }))) return;
    busy(toggle, async () => {
      try {
        const updated = await api(`${base}/residents/${r.id}`, { method: "PATCH", body: { active: !r.active } });
        const row = residentRow(updated);
        toggle.closest("tr").replaceWith(row);
        row.querySelector("button").focus();
      } catch (err) {
        say($("residents-status"), err.message);
      }
    });
  });
  return el("tr", {}, el("td", { text: r.booking_number }), el("td", { text: r.full_name }),
    el("td", { text: unitName(r.housing_unit_id) }),
    el("td", {}, badge(t(r.active ? "residents.active" : "residents.inactive"), r.active ? "ok" : "off")),
    el("td", {}, toggle));
}

$("resident-search").addEventListener("submit", (event) => {
  event.preventDefault();
  loadResidents();
});

$("import-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  clearErrors(form);
  $("import-report").hidden = true;
  const file = $("import-file").files[0];
  if (!file) {
    say(formParts(form).alert, t("import.chooseFile"));
    $("import-file").focus();
    return;
  }
  busy(form.querySelector("button[type=submit]"), async () => {
    try {
      const result = await api(`${base}/residents/import`, { method: "POST", raw: file, contentType: "text/csv" });
      say(formParts(form).status, t("import.done", { created: result.created, updated: result.updated }));
      form.reset();
      loadResidents();
    } catch (err) {
      say(formParts(form).alert, err.message);
      const problems = err.problem && Array.isArray(err.problem.problems) ? err.problem.problems : [];
      if (problems.length) {
        $("import-rows").replaceChildren(...problems.map((p) => el("tr", {}, el("td", { text: String(p.line) }),
          el("td", {}, el("ul", { class: "plain" }, ...p.errors.map((e) => el("li", { text: e })))))));
        $("import-report").hidden = false;
      }
    }
  });
});

$("resident-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  clearErrors(form);
  busy(form.querySelector("button[type=submit]"), async () => {
    try {
      const r = await api(`${base}/residents`, { method: "POST", body: { booking_number: $("r-number").value.trim(),
        full_name: $("r-name").value.trim(), housing_unit_id: $("r-unit").value } });
      form.reset();
      say(formParts(form).status, t("residents.added", { name: r.full_name }));
      loadResidents();
    } catch (err) {
      showProblem(form, err, err.status === 409 ? ["booking_number"] : []);
    }
  });
});

// ------------------------------------------------------------------ kiosks

async function loadKiosks() {
  unitOptions($("k-unit"));
  try {
    const kiosks = await api(`${base}/kiosks`);
    say($("kiosks-status"), kiosks.length ? "" : t("kiosks.empty"));
    $("kiosk-rows").replaceChildren(...kiosks.map(kioskRow));
  } catch (err) {
    say($("kiosks-status"), t("common:error", { message: err.message }));
  }
}

function kioskRow(k) {
  const toggle = el("button", { type: "button", class: k.active ? "danger" : "secondary",
    text: t(k.active ? "kiosks.disable" : "kiosks.enable"),
    "aria-label": t(k.active ? "kiosks.disableLabel" : "kiosks.enableLabel", { name: k.name }) });
  toggle.addEventListener("click", () => {
    if (k.active && !confirm(t("kiosks.confirmDisable", { name: k.name }))) return;
    busy(toggle, async () => {
      try {
        const updated = await api(`${base}/kiosks/${k.id}`, { method: "PATCH", body: { active: !k.active } });
        const row = kioskRow(updated);
        toggle.closest("tr").replaceWith(row);
        row.querySelector("button:not(.rotate)").focus();
        say($("kiosks-status"), t(updated.active ? "kiosks.enabled" : "kiosks.disabled", { name: k.name }));
      } catch (err) {
        say($("kiosks-status"), err.message);
      }
    });
  });
  const rotate = el("button", { type: "button", class: "secondary rotate", text: t("kiosks.rotate"),
    "aria-label": t("kiosks.rotateLabel", { name: k.name }) });
  rotate.addEventListener("click", () => {
    if (!confirm(t("kiosks.confirmRotate", { name: k.name }))) return;
    busy(rotate, async () => {
      try {
        showSecret(await api(`${base}/kiosks/${k.id}/secret`, { method: "POST" }));
      } catch (err) {
        say($("kiosks-status"), err.message);
      }
    });
  });
  return el("tr", { "data-kiosk": k.id }, el("td", { text: k.name }), el("td", { text: unitName(k.housing_unit_id) }),
    el("td", {}, badge(t(k.active ? "kiosks.active" : "kiosks.inactive"), k.active ? "ok" : "off")),
    el("td", { class: "col-id" }, el("code", { text: k.id })),
    el("td", {}, el("div", { class: "actions" }, rotate, toggle)));
}

/** The kiosk's id and secret, once (after registering or rotating): never stored or listed again. */
function showSecret(kiosk) {
  say($("kiosk-secret-for"), t("kiosks.secretFor", { name: kiosk.name }));
  $("kiosk-new-id").textContent = kiosk.id;
  $("kiosk-new-secret").textContent = kiosk.secret;
  $("kiosk-secret").hidden = false;
  $("kiosk-secret").focus();
}

$("kiosk-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  clearErrors(form);
  busy(form.querySelector("button[type=submit]"), async () => {
    try {
      const kiosk = await api(`${base}/kiosks`, { method: "POST", body: { housing_unit_id: $("k-unit").value,
        name: $("k-name").value.trim() } });
      form.reset();
      unitOptions($("k-unit"));
      await loadKiosks();
      showSecret(kiosk);
    } catch (err) {
      showProblem(form, err);
    }
  });
});

$("kiosk-secret-done").addEventListener("click", () => {
  $("kiosk-new-secret").textContent = "";
  $("kiosk-new-id").textContent = "";
  $("kiosk-secret").hidden = true;
  $("k-name").focus();
});

// ------------------------------------------------------------------ staff (V3)

async function loadStaff() {
  const staff = await api(`${base}/staff`);
  $("staff-rows").replaceChildren(...staff.map((s) => el("tr", {}, el("td", { text: s.legal_name }),
    el("td", { text: s.email }), el("td", { text: t(`common:role.${s.role}`) }),
    el("td", {}, badge(t(s.active ? "staff.active" : "staff.inactive"), s.active ? "ok" : "off")))));
}

$("staff-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  clearErrors(form);
  const body = { legal_name: $("st-name").value.trim(), email: $("st-email").value.trim(), role: $("st-role").value,
    password: $("st-password").value };
  busy(form.querySelector("button[type=submit]"), async () => {
    try {
      const s = await api(`${base}/staff`, { method: "POST", body });
      form.reset();
      say(formParts(form).status, t("staff.added", { name: s.legal_name, role: t(`common:role.${s.role}`) }));
      await loadStaff();
    } catch (err) {
      showProblem(form, err, err.slug === "email-taken" ? ["email"] : []);
    }
  });
});

$("day-form").addEventListener("submit", (event) => {
  event.preventDefault();
  loadToday();
});

const guard = (load) => () => load().catch((err) => say($("page-error"), t("common:error", { message: err.message })));
const SECTIONS = { requests: guard(loadRequests), today: guard(loadToday), settings: guard(async () => loadSettings()),
  hours: guard(loadHours), residents: guard(loadResidents), kiosks: guard(loadKiosks), staff: guard(loadStaff) };

await start();

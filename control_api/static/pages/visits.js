// My visits, the visitor's home (issue 13): upcoming and past visits in the facility's time with
// the zone named (A1), status and outcome (S6), the price paid and how (M9); join while the join
// window is open (S1); cancel after being told whether a credit will be given and why (M3, M4);
// move to another bookable time until the facility's cancellation notice before the start (A6, M3a,
// B2-B5), told first whether moving is still allowed and until when.
import { api, el, say, startPage, t } from "../lib/layout.js";
import { addDays, dayLabel, zoneName } from "../lib/calendar.js";
import { language, money, time } from "../lib/i18n.js";

const $ = (id) => document.getElementById(id);
const LOBBY_MINUTES = 10;  // S1: participants may join from ten minutes before the start
const OPEN = new Set(["pending_review", "scheduled", "in_progress"]);
const locale = () => (language() === "es" ? "es-US" : "en-US");

await startPage("visits", { roles: ["visitor", "attorney"] });

let facilities = new Map();
let clockOffset = 0;  // server time minus browser time, from the API's answer (the demo clock can move)
const serverNow = () => Date.now() + clockOffset;

/** A date and time in the facility's zone, with the zone named (A1). */
function when(iso, zone) {
  return new Intl.DateTimeFormat(locale(), { weekday: "short", year: "numeric", month: "short", day: "numeric", hour: "numeric",
    minute: "2-digit", timeZone: zone, timeZoneName: "short" }).format(new Date(iso));
}

function outcome(v) {
  const base = t(`status.${v.status}`, { defaultValue: v.status });
  if (v.status === "cancelled" && v.cancelled_by) return `${base} – ${t(`cancelledBy.${v.cancelled_by}`)}`;
  if (v.status === "disconnected" && v.disconnect_reason) return `${base} – ${t(`disconnect.${v.disconnect_reason}`, { defaultValue: v.disconnect_reason })}`;
  if (v.status === "rejected" && v.review_reason) return `${base} – ${v.review_reason}`;
  return base;
}

function paid(v) {
  const parts = [t("paid.total", { amount: money(v.total_cents) })];
  if (v.card_charged_cents) parts.push(t("paid.card", { amount: money(v.card_charged_cents) }));
  if (v.credit_used_cents) parts.push(t("paid.credit", { amount: money(v.credit_used_cents) }));
  return parts.join(" · ");
}

function card(v, upcoming) {
  const f = facilities.get(v.facility_id) || { name: "", timezone: "UTC" };
  const start = Date.parse(v.starts_at);
  const end = Date.parse(v.ends_at);
  const now = serverNow();
  const joinable = ["scheduled", "in_progress"].includes(v.status) && now >= start - LOBBY_MINUTES * 60000 && now < end;
  const cancellable = ["pending_review", "scheduled"].includes(v.status) && now < start;
  const actions = el("div", { class: "actions" });
  if (joinable) {
    actions.append(el("a", { class: "button primary", href: `/app/visitor.html?visit=${encodeURIComponent(v.id)}`,
      "data-join": v.id, text: t("join") }));
  } else if (upcoming && v.status === "scheduled") {
    actions.append(el("span", { class: "hint", text: t("joinOpens", { minutes: LOBBY_MINUTES }) }));
  }
  if (upcoming) actions.append(el("a", { href: "/app/check.html", text: t("check") }));
  if (cancellable) moveAction(v, f, now, actions);
  if (cancellable) {
    actions.append(el("button", { type: "button", class: "danger-outline", "data-cancel": v.id,
      "aria-label": t("cancelFor", { name: v.resident_name, when: when(v.starts_at, f.timezone) }),
      text: t("cancel.open"), onclick: () => openCancel(v, f) }));
  }
  return el("li", { class: `visit-card status-${v.status}`, "data-visit": v.id },
    el("h3", {}, el("span", { text: v.resident_name || "" }), el("span", { class: `badge ${v.status}`, text: outcome(v) })),
    el("p", { class: "when", text: t("when", { when: when(v.starts_at, f.timezone), minutes: v.length_minutes }) }),
    el("p", { class: "meta", text: `${f.name} · ${t(`type.${v.visit_type}`)}` }),
    el("p", { class: "meta", text: paid(v) }),
    v.visit_type === "privileged" ? el("p", { class: "meta privileged", text: t("privileged") }) : null,
    actions);
}

/** The Move button while the booker may still move the visit (A6, M3a), else why not, on the card itself. */
function moveAction(v, f, now, actions) {
  const notice = f.cancellation_notice_hours;
  if (notice === undefined) return;
  const deadline = Date.parse(v.starts_at) - notice * 3600000;
  if (now <= deadline) {
    actions.append(el("button", { type: "button", "data-move": v.id,
      "aria-label": t("move.openFor", { name: v.resident_name, when: when(v.starts_at, f.timezone) }),
      text: t("move.open"), onclick: () => openMove(v, f) }));
  } else {
    actions.append(el("span", { class: "hint move-closed", "data-move-closed": v.id,
      text: t("move.closedHint", { hours: notice, deadline: when(new Date(deadline).toISOString(), f.timezone) }) }));
  }
}

async function load() {
  say($("load-error"), "");
  try {
    const [visits, list] = await Promise.all([api("/v1/visits?limit=500"), api("/v1/facilities")]);
    facilities = new Map(list.map((f) => [f.id, f]));
    const maybeUpcoming = visits.filter((v) => OPEN.has(v.status));
    if (maybeUpcoming.length) {
      // The server's clock decides what is upcoming and when joining opens, not this device's.
      const preview = await api(`/v1/visits/${maybeUpcoming[0].id}/cancellation`).catch(() => null);
      if (preview) clockOffset = Date.parse(preview.as_of) - Date.now();
    }
    const now = serverNow();
    const upcoming = visits.filter((v) => OPEN.has(v.status) && Date.parse(v.ends_at) > now);
    const past = visits.filter((v) => !upcoming.includes(v)).reverse();
    $("upcoming").replaceChildren(...upcoming.map((v) => card(v, true)));
    $("past").replaceChildren(...past.map((v) => card(v, false)));
    $("upcoming-empty").hidden = upcoming.length > 0;
    $("past-empty").hidden = past.length > 0;
    $("upcoming-section").hidden = false;
    $("past-section").hidden = false;
  } catch (err) {
    say($("load-error"), t("common:error", { message: err.message }));
  } finally {
    say($("loading"), "");
  }
}

// ------------------------------------------------------------------ cancel (M3, M4)

const dialog = $("cancel-dialog");
let cancelling = null;

async function openCancel(v, f) {
  cancelling = { visit: v, facility: f, key: `web-cancel-${crypto.randomUUID()}`, opener: document.activeElement };
  say($("cancel-visit"), t("cancel.visit", { name: v.resident_name, when: when(v.starts_at, f.timezone), minutes: v.length_minutes }));
  say($("cancel-error"), "");
  $("cancel-reason").value = "";
  $("cancel-credit").hidden = true;
  $("cancel-loading").hidden = false;
  $("cancel-confirm").disabled = true;
  dialog.showModal();
  try {
    const p = await api(`/v1/visits/${v.id}/cancellation`);
    clockOffset = Date.parse(p.as_of) - Date.now();
    explainCredit(p, f);
    $("cancel-confirm").disabled = !p.cancellable;
  } catch (err) {
    say($("cancel-error"), t("common:error", { message: err.message }));
  } finally {
    $("cancel-loading").hidden = true;
  }
}

function explainCredit(p, f) {
  const box = $("cancel-credit");
  box.classList.toggle("yes", p.credit_cents > 0);
  box.classList.toggle("no", p.credit_cents === 0);
  const deadline = when(p.credit_deadline, f.timezone);
  let title;
  let why;
  if (!p.cancellable) {
    title = t("cancel.notCancellable");
    why = t(`cancel.why.${p.reason}`);
  } else if (p.credit_cents > 0) {
    title = t("cancel.creditYes", { amount: money(p.credit_cents) });
    why = t("cancel.why.notice_given", { hours: p.notice_hours, deadline });
  } else if (p.reason === "short_notice") {
    title = t("cancel.creditNo");
    why = t("cancel.why.short_notice", { hours: p.notice_hours, deadline });
  } else {
    title = t("cancel.creditNone");
    why = t("cancel.why.free");
  }
  say($("cancel-credit-title"), title);
  say($("cancel-credit-why"), why);
  say($("cancel-fees"), p.cancellable && p.credit_cents > 0 && p.fees_cents > 0 ? t("cancel.fees", { amount: money(p.fees_cents) }) : "");
  box.hidden = false;
}

function closeCancel() {
  dialog.close();
  if (cancelling && cancelling.opener && document.contains(cancelling.opener)) cancelling.opener.focus();
}

$("cancel-keep").addEventListener("click", closeCancel);

$("cancel-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  say($("cancel-error"), "");
  const reason = $("cancel-reason").value.trim();
  if (!reason) {
    say($("cancel-error"), t("cancel.reasonMissing"));
    $("cancel-reason").focus();
    return;
  }
  const button = $("cancel-confirm");
  button.disabled = true;
  try {
    const done = await api(`/v1/visits/${cancelling.visit.id}/cancel`, { method: "POST", idempotent: cancelling.key, body: { reason } });
    dialog.close();
    say($("notice"), done.credited_cents ? t("cancel.doneCredit", { amount: money(done.credited_cents), rule: done.credit_rule })
      : t("cancel.doneNoCredit"));
    if (done.credited_cents) $("notice").append(" ", el("a", { href: "/app/billing.html", text: t("cancel.seeBilling") }));
    await load();
    $("notice").scrollIntoView({ block: "center" });
  } catch (err) {
    if (err.status) cancelling.key = `web-cancel-${crypto.randomUUID()}`;
    say($("cancel-error"), t("common:error", { message: err.message }));
  } finally {
    button.disabled = false;
  }
});

// ------------------------------------------------------------------ move (A6, A7, B2-B5)

const moveDialog = $("move-dialog");
let moving = null;

async function openMove(v, f) {
  moving = { visit: v, facility: f, key: `web-move-${crypto.randomUUID()}`, opener: document.activeElement,
    today: null, horizon: 0, noticeHours: 0, weekStart: null, chosen: null };
  say($("move-visit"), t("move.visit", { name: v.resident_name, when: when(v.starts_at, f.timezone), minutes: v.length_minutes }));
  say($("move-error"), "");
  $("move-answer").hidden = true;
  $("move-picker").hidden = true;
  $("move-confirm").hidden = true;
  say($("move-loading"), t("common:loading"));
  moveDialog.showModal();
  await loadMoveWeek();
}

/** One week of times the visit could move to (the server's answer also says whether it may move at all). */
async function loadMoveWeek() {
  const m = moving;
  const query = m.weekStart ? `?${new URLSearchParams({ from: m.weekStart, to: addDays(m.weekStart, 6) })}` : "";
  $("move-week").replaceChildren();
  $("move-day").hidden = true;
  choose(null);
  if (m.weekStart) say($("move-slots-status"), t("common:loading"));
  let o;
  try {
    o = await api(`/v1/visits/${m.visit.id}/move-options${query}`);
  } catch (err) {
    say($("move-loading"), "");
    say($("move-slots-status"), "");
    say($("move-error"), t("common:error", { message: err.message }));
    return;
  }
  clockOffset = Date.parse(o.as_of) - Date.now();
  say($("move-loading"), "");
  if (!o.movable) {
    explainRefusal(o);
    return;
  }
  if (!m.weekStart) {
    m.today = o.first;
    m.horizon = o.booking_horizon_days;
  }
  m.noticeHours = o.move_deadline ? o.notice_hours : 0;
  m.weekStart = o.first;
  showPicker(o);
}

function explainRefusal(o) {
  const zone = moving.facility.timezone;
  const deadline = o.move_deadline ? when(o.move_deadline, zone) : "";
  const key = o.reason === "no_access" && o.visit_type === "privileged" ? "no_access_privileged" : o.reason;
  say($("move-answer-title"), t("move.notMovable"));
  say($("move-answer-why"), t(`move.why.${key}`, { hours: o.notice_hours, deadline, defaultValue: o.detail }));
  $("move-answer").hidden = false;
  $("move-picker").hidden = true;
  $("move-confirm").hidden = true;
  $("move-keep").textContent = t("move.close");
}

function showPicker(o) {
  const m = moving;
  const zone = m.facility.timezone;
  say($("move-deadline"), o.move_deadline ? t("move.deadline", { deadline: when(o.move_deadline, zone) }) : "");
  $("move-review").hidden = !o.review_after_move;
  say($("move-zone"), t("move.zone", { zone: zoneName(zone), id: zone }));
  const last = addDays(m.weekStart, 6);
  say($("move-week-label"), t("move.week", { from: dayLabel(m.weekStart), to: dayLabel(last) }));
  $("move-prev").disabled = m.weekStart <= m.today;
  $("move-next").disabled = addDays(m.weekStart, 7) > addDays(m.today, m.horizon);
  const byDay = new Map();
  for (let i = 0; i < 7; i += 1) byDay.set(addDays(m.weekStart, i), []);
  for (const s of o.slots) {
    const day = s.local_start.slice(0, 10);
    if (byDay.has(day)) byDay.get(day).push(s);
  }
  say($("move-slots-status"), o.slots.length ? "" : t("move.none"));
  const buttons = [];
  for (const [day, slots] of byDay) {
    const button = el("button", { type: "button", class: "day", "data-day": day, disabled: !slots.length, "aria-pressed": "false",
      onclick: () => showMoveDay(day, slots, button, buttons) },
    el("span", { class: "day-name", text: dayLabel(day) }),
    el("span", { class: "day-count", text: slots.length ? t("move.count", { count: slots.length }) : t("move.full") }));
    buttons.push(button);
  }
  $("move-week").replaceChildren(...buttons);
  $("move-keep").textContent = t("move.keep");
  $("move-answer").hidden = true;
  $("move-picker").hidden = false;
  $("move-confirm").hidden = false;
  const first = buttons.find((b) => !b.disabled);
  if (first) showMoveDay(first.dataset.day, byDay.get(first.dataset.day), first, buttons);
}

function showMoveDay(day, slots, button, buttons) {
  const zone = moving.facility.timezone;
  for (const b of buttons) b.setAttribute("aria-pressed", b === button ? "true" : "false");
  say($("move-day-label"), t("move.dayTimes", { day: dayLabel(day, "long"), zone: zoneName(zone) }));
  $("move-times").replaceChildren(...slots.map((s) => el("button", { type: "button", class: "slot", "data-start": s.starts_at,
    "aria-pressed": "false", onclick: () => choose(s) }, time(s.starts_at, zone))));
  $("move-day").hidden = false;
  choose(null);
}

function choose(slot) {
  moving.chosen = slot;
  for (const b of $("move-times").querySelectorAll(".slot")) {
    b.setAttribute("aria-pressed", slot && b.dataset.start === slot.starts_at ? "true" : "false");
  }
  say($("move-chosen"), slot ? t("move.chosen", { when: when(slot.starts_at, moving.facility.timezone) }) : "");
  // A time inside the notice can be neither moved again nor cancelled with credit (A6, M3a): say so first.
  const short = slot && moving.noticeHours && Date.parse(slot.starts_at) - moving.noticeHours * 3600000 < serverNow();
  say($("move-short"), short ? t("move.chosenShort", { hours: moving.noticeHours }) : "");
  $("move-confirm").disabled = !slot;
}

$("move-prev").addEventListener("click", () => { moving.weekStart = addDays(moving.weekStart, -7); loadMoveWeek(); });
$("move-next").addEventListener("click", () => { moving.weekStart = addDays(moving.weekStart, 7); loadMoveWeek(); });

function closeMove() {
  moveDialog.close();
  if (moving && moving.opener && document.contains(moving.opener)) moving.opener.focus();
}

$("move-keep").addEventListener("click", closeMove);

$("move-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  say($("move-error"), "");
  const m = moving;
  if (!m.chosen) {
    say($("move-error"), t("move.pick"));
    return;
  }
  const button = $("move-confirm");
  button.disabled = true;
  try {
    const done = await api(`/v1/visits/${m.visit.id}/move`, { method: "POST", idempotent: m.key, body: { starts_at: m.chosen.starts_at } });
    moveDialog.close();
    const text = t("move.done", { name: done.resident_name || m.visit.resident_name, when: when(done.starts_at, m.facility.timezone) });
    say($("notice"), done.status === "pending_review" ? `${text} ${t("move.doneReview")}` : text);
    await load();
    $("notice").scrollIntoView({ block: "center" });
  } catch (err) {
    if (err.status) m.key = `web-move-${crypto.randomUUID()}`;  // answered: the next try is a new attempt
    say($("move-error"), t("move.failed", { message: err.message }));
    if (err.status === 409 || err.status === 422) await loadMoveWeek();  // the time may have gone; show what is left
    else button.disabled = false;
  }
});

await load();

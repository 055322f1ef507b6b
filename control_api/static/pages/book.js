// Book a visit (issue 13): a facility that approved me (V1), the resident by booking number, the
// bookable slots on a week calendar in the FACILITY's time zone with the zone named (A1), each
// length with its price (A3), a quote with every fee and tax itemised, the credit applied and the
// privacy notice before paying (B6, P1), then payment: credit first (M5), the rest by card through
// the test-mode tokeniser (M1), with an Idempotency-Key.
import { api, el, say, startPage, t } from "../lib/layout.js";
import { addDays, dayLabel, zoneName } from "../lib/calendar.js";
import { dateTime, money, time, todayIn } from "../lib/i18n.js";
import { CardError, EXAMPLE_NUMBER, formatNumber, tokenise } from "./test_card.js";

const $ = (id) => document.getElementById(id);
const { session } = await startPage("book", { roles: ["visitor", "attorney"] });

const state = {
  facilities: [],  // approved facilities (FacilityOut)
  facility: null,
  resident: null,
  visitType: "social",
  options: [],  // session options of the chosen type
  length: null,
  weekStart: null,  // "YYYY-MM-DD", facility-local
  slots: [],
  slot: null,
  quote: null,
  due: 0,
  key: null,  // the Idempotency-Key of this payment attempt (kept across a network failure)
};

const typeName = (type) => t(`type.${type}`);

// ------------------------------------------------------------------ step 1: facility and resident

async function load() {
  const [requests, facilities] = await Promise.all([api("/v1/me/access-requests"), api("/v1/facilities")]);
  const approved = new Set(requests.filter((r) => r.status === "approved").map((r) => r.facility_id));
  state.facilities = facilities.filter((f) => approved.has(f.id));
  say($("loading"), "");
  if (!state.facilities.length) {
    $("no-access").hidden = false;
    return;
  }
  const wanted = new URLSearchParams(location.search).get("facility");
  $("facility").replaceChildren(...state.facilities.map((f) => el("option", { value: f.id, selected: f.id === wanted }, f.name)));
  if (session.role === "attorney") {
    $("type-field").hidden = false;
    await explainPrivilege();
    $("facility").addEventListener("change", explainPrivilege);
  }
  $("find").hidden = false;
}

async function explainPrivilege() {
  // V2: privileged visits only where this facility verified the attorney's Bar number.
  const verifications = await api("/v1/me/bar-verifications").catch(() => []);
  const mine = verifications.find((v) => v.facility_id === $("facility").value);
  const verified = mine && mine.status === "verified";
  $("type-privileged").disabled = !verified;
  if (!verified && $("type-privileged").checked) $("type-social").checked = true;
  say($("type-help"), verified ? t("find.verified") : t("find.notVerified"));
}

$("find").addEventListener("submit", async (event) => {
  event.preventDefault();
  say($("find-error"), "");
  const number = $("booking-number").value.trim();
  if (!number) {
    say($("find-error"), t("find.missing"));
    $("booking-number").focus();
    return;
  }
  const button = event.submitter || $("find").querySelector("button[type=submit]");
  button.disabled = true;
  try {
    state.facility = state.facilities.find((f) => f.id === $("facility").value);
    state.visitType = document.querySelector("input[name=visit-type]:checked").value;
    const fid = state.facility.id;
    state.resident = await api(`/v1/facilities/${fid}/residents/lookup?booking_number=${encodeURIComponent(number)}`);
    const options = await api(`/v1/facilities/${fid}/session-options`);
    state.options = options.filter((o) => o.visit_type === state.visitType);
    if (!state.options.length) {
      say($("find-error"), t("find.noLengths", { type: typeName(state.visitType) }));
      return;
    }
    state.length = state.options[0].length_minutes;
    state.weekStart = todayIn(state.facility.timezone);
    showSlotsSection();
  } catch (err) {
    say($("find-error"), err.status === 404 ? t("find.notFound", { number }) : err.message);
  } finally {
    button.disabled = false;
  }
});

// ------------------------------------------------------------------ step 2: length and week calendar

function optionPrice(o) {
  return state.facility.billing_mode === "per_minute" ? o.per_minute_cents * o.length_minutes : o.price_cents;
}

function showSlotsSection() {
  $("quote-section").hidden = true;
  $("done").hidden = true;
  const r = state.resident;
  $("resident-line").replaceChildren(el("strong", { text: r.full_name }),
    ` · ${t("slots.bookingNumber", { number: r.booking_number })} · ${state.facility.name} · ${typeName(state.visitType)}`);
  $("length-options").replaceChildren(...state.options.map((o) => {
    const id = `length-${o.length_minutes}`;
    const price = state.facility.billing_mode === "per_minute"
      ? t("slots.perMinute", { price: money(optionPrice(o)), rate: money(o.per_minute_cents) }) : money(optionPrice(o));
    return el("label", { class: "choice length", for: id },
      el("input", { type: "radio", name: "length", id, value: o.length_minutes, checked: o.length_minutes === state.length,
        onchange: () => { state.length = o.length_minutes; loadWeek(); } }),
      el("span", { text: t("slots.minutes", { count: o.length_minutes }) }), " ", el("span", { class: "price", text: price }));
  }));
  say($("zone-line"), t("slots.zone", { zone: zoneName(state.facility.timezone), id: state.facility.timezone }));
  $("slots-section").hidden = false;
  loadWeek();
  $("slots-heading").scrollIntoView({ block: "start" });
}

$("prev-week").addEventListener("click", () => { state.weekStart = addDays(state.weekStart, -7); loadWeek(); });
$("next-week").addEventListener("click", () => { state.weekStart = addDays(state.weekStart, 7); loadWeek(); });

async function loadWeek() {
  const today = todayIn(state.facility.timezone);
  if (state.weekStart < today) state.weekStart = today;
  const last = addDays(state.weekStart, 6);
  const horizonEnd = addDays(today, state.facility.booking_horizon_days);
  $("prev-week").disabled = state.weekStart <= today;
  $("next-week").disabled = addDays(state.weekStart, 7) > horizonEnd;
  say($("week-label"), t("slots.week", { from: dayLabel(state.weekStart), to: dayLabel(last) }));
  $("week").replaceChildren();
  $("day-slots").hidden = true;
  say($("slots-status"), t("common:loading"));
  try {
    const q = new URLSearchParams({ from: state.weekStart, to: last, length_minutes: state.length, visit_type: state.visitType });
    const answer = await api(`/v1/residents/${state.resident.id}/availability?${q}`);
    state.slots = answer.slots;
  } catch (err) {
    say($("slots-status"), t("common:error", { message: err.message }));
    return;
  }
  const byDay = new Map();
  for (let i = 0; i < 7; i += 1) byDay.set(addDays(state.weekStart, i), []);
  for (const s of state.slots) {
    const day = s.local_start.slice(0, 10);
    if (byDay.has(day)) byDay.get(day).push(s);
  }
  say($("slots-status"), state.slots.length ? "" : t("slots.none"));
  const buttons = [];
  for (const [day, slots] of byDay) {
    const button = el("button", { type: "button", class: "day", "data-day": day, disabled: !slots.length, "aria-pressed": "false",
      onclick: () => showDay(day, slots, button, buttons) },
    el("span", { class: "day-name", text: dayLabel(day) }),
    el("span", { class: "day-count", text: slots.length ? t("slots.count", { count: slots.length }) : t("slots.full") }));
    buttons.push(button);
    $("week").append(button);
  }
  const first = buttons.find((b) => !b.disabled);
  if (first) first.click();
}

function markSlot(chosen) {
  for (const b of $("times").querySelectorAll(".slot")) b.setAttribute("aria-pressed", b === chosen ? "true" : "false");
}

function showDay(day, slots, button, buttons) {
  for (const b of buttons) b.setAttribute("aria-pressed", b === button ? "true" : "false");
  say($("day-label"), t("slots.dayTimes", { day: dayLabel(day, "long"), zone: zoneName(state.facility.timezone) }));
  $("times").replaceChildren(...slots.map((s) => el("button", { type: "button", class: "slot", "data-start": s.starts_at,
    "aria-pressed": "false", onclick: (event) => { markSlot(event.currentTarget); pickSlot(s); } },
  time(s.starts_at, state.facility.timezone))));
  $("day-slots").hidden = false;
}

// ------------------------------------------------------------------ step 3: quote (B6) and payment

function privacyNotice(box, visitType) {
  // B6, P1: said before paying and again on the confirmation.
  const privileged = visitType === "privileged";
  box.classList.toggle("privileged", privileged);
  box.replaceChildren(el("strong", { text: t(privileged ? "privacy.privilegedTitle" : "privacy.socialTitle") }), " ",
    el("span", { text: t(privileged ? "privacy.privileged" : "privacy.social") }));
}

async function pickSlot(slot) {
  state.slot = slot;
  state.key = `web-book-${crypto.randomUUID()}`;
  const zone = state.facility.timezone;
  say($("quote-when"), t("quote.when", { name: state.resident.full_name, when: dateTime(slot.starts_at, zone),
    minutes: state.length, type: typeName(state.visitType) }));
  $("quote-body").hidden = true;
  $("quote-section").hidden = false;
  say($("pay-error"), "");
  say($("quote-status"), t("common:loading"));
  try {
    const answer = await api("/v1/quotes", { method: "POST", body: { resident_id: state.resident.id, starts_at: slot.starts_at,
      length_minutes: state.length, visit_type: state.visitType } });
    showQuote(answer);
  } catch (err) {
    say($("quote-status"), t("common:error", { message: err.message }));
  }
  $("quote-heading").scrollIntoView({ block: "start" });
}

function showQuote(answer) {
  const q = answer.quote;
  state.quote = answer;
  say($("quote-status"), "");
  $("quote-lines").replaceChildren(...q.lines.map((line) => el("tr", { class: `line ${line.kind}` },
    el("th", { scope: "row" }, line.kind === "price" ? t("quote.priceLine", { type: typeName(q.visit_type), minutes: q.length_minutes })
      : line.name),
    el("td", { text: money(line.amount_cents) }))));
  say($("quote-total"), money(q.total_cents));
  const credit = Math.min(answer.credit_available_cents, q.total_cents);
  state.due = q.total_cents - credit;
  $("credit-row").hidden = credit === 0;
  say($("quote-credit"), `−${money(credit)}`);
  say($("quote-due"), money(state.due));
  say($("per-minute-note"), q.billing_mode === "per_minute" ? t("quote.perMinute", { rate: money(q.per_minute_cents) }) : "");
  $("fees-note").hidden = q.fees_cents === 0;
  privacyNotice($("privacy"), q.visit_type);
  $("not-bookable").hidden = answer.bookable;
  $("problems").replaceChildren(...answer.problems.map((p) => el("li", { text: p.detail })));
  $("pay").hidden = !answer.bookable;
  $("card-fields").hidden = state.due === 0;
  $("no-card").textContent = q.total_cents === 0 ? t("card.free") : t("card.none");
  $("no-card").hidden = state.due !== 0;
  say($("pay-button"), state.due ? t("card.pay", { amount: money(state.due) }) : t("card.book"));
  $("quote-body").hidden = false;
}

$("change-time").addEventListener("click", () => {
  $("quote-section").hidden = true;
  $("times").querySelector("button")?.focus();
});

$("card-number").addEventListener("input", (event) => {
  const input = event.target;
  const formatted = formatNumber(input.value);
  if (formatted !== input.value) input.value = formatted;
});
$("card-number").placeholder = EXAMPLE_NUMBER;

function fieldError(field, text) {
  const input = $(`card-${field}`);
  const box = $(`card-${field}-error`);
  say(box, text);
  if (text) input.setAttribute("aria-invalid", "true");
  else input.removeAttribute("aria-invalid");
}

$("pay").addEventListener("submit", async (event) => {
  event.preventDefault();
  say($("pay-error"), "");
  for (const f of ["number", "expiry", "cvc"]) fieldError(f, "");
  let card = null;
  if (state.due > 0) {
    try {
      card = await tokenise({ number: $("card-number").value, expiry: $("card-expiry").value, cvc: $("card-cvc").value });
    } catch (err) {
      if (!(err instanceof CardError)) throw err;
      fieldError(err.field, t(`card.errors.${err.field}.${err.code}`));
      $(`card-${err.field}`).focus();
      return;
    }
  }
  const button = $("pay-button");
  button.disabled = true;
  say($("quote-status"), t("card.paying"));
  try {
    const visit = await api("/v1/visits", { method: "POST", idempotent: state.key, body: {
      resident_id: state.resident.id, starts_at: state.slot.starts_at, length_minutes: state.length, visit_type: state.visitType,
      payment: { card_token: card ? card.token : null, use_credit: true } } });
    say($("quote-status"), "");
    showDone(visit, card);
  } catch (err) {
    say($("quote-status"), "");
    if (err.status) state.key = `web-book-${crypto.randomUUID()}`;  // answered: the next try is a new attempt
    say($("pay-error"), explain(err));
  } finally {
    button.disabled = false;
  }
});

function explain(err) {
  if (err.slug === "payment-declined") {
    const code = err.problem.decline_code;
    const known = ["card_declined", "insufficient_funds", "expired_card", "processing_error"].includes(code);
    return `${t("card.declined")} ${t(known ? `card.decline.${code}` : "card.decline.other")}`;
  }
  if (err.status === 409) return t("card.taken", { detail: err.message });
  if (!err.status) return t("card.network");
  return t("common:error", { message: err.message });
}

function showDone(visit, card) {
  const zone = state.facility.timezone;
  const rows = [
    [t("done.who"), `${visit.resident_name || state.resident.full_name} · ${state.facility.name}`],
    [t("done.when"), dateTime(visit.starts_at, zone)],
    [t("done.length"), t("slots.minutes", { count: visit.length_minutes })],
    [t("done.type"), typeName(visit.visit_type)],
    [t("done.status"), t(`done.statuses.${visit.status}`, { defaultValue: visit.status })],
    [t("done.total"), money(visit.total_cents)],
    [t("done.credit"), money(visit.credit_used_cents || 0)],
    [t("done.card"), card && visit.card_charged_cents ? t("done.cardLine", { amount: money(visit.card_charged_cents),
      brand: t(`card.brands.${card.brand}`), last4: card.last4 }) : money(visit.card_charged_cents || 0)],
  ];
  $("done-details").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
  privacyNotice($("done-privacy"), visit.visit_type);
  $("done").dataset.visit = visit.id;
  for (const id of ["find", "slots-section", "quote-section"]) $(id).hidden = true;
  $("done").hidden = false;
  $("done").focus();
}

await load();

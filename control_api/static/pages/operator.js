// The operator's console (issue 13): credit requests with overdue ones first (M6) and deciding them
// (Idempotency-Key), facilities, fees (M7), finding and cancelling visits, and the audit chain's state.
// Uses only the public API. Shared console helpers: lib/console.js.
import { api, el, say, startPage, t } from "../lib/layout.js";
import { dateTime, money, todayIn } from "../lib/i18n.js";
import {
  badge, busy, clearErrors, formParts, fromCents, pairs, setUpTabs, showProblem, toCents,
} from "../lib/console.js";


// ------------------------------------------------------------------ the page

const $ = (id) => document.getElementById(id);
const TIERS = ["prison", "jail_1000_plus", "jail_350_999", "jail_100_349", "jail_50_99", "jail_under_50"];

await startPage("operator", { roles: ["operator"] });
let facilities = [];
// The server's clock (the demo clock may be moved; the browser's would show the wrong day).
const serverNow = await api("/v1/test-clock").then((c) => new Date(c.now)).catch(() => new Date());
const byId = (id) => facilities.find((f) => f.id === id);
const loaded = new Set();

async function loadFacilities() {
  facilities = await api("/v1/facilities");
  for (const select of [$("fees-facility"), $("visits-facility")]) {
    const chosen = select.value;
    select.replaceChildren(...facilities.map((f) => el("option", { value: f.id, selected: f.id === chosen, text: f.name })));
  }
}

async function start() {
  try {
    await loadFacilities();
  } catch (err) {
    say($("page-status"), "");
    say($("page-error"), t("common:error", { message: err.message }));
    return;
  }
  say($("page-status"), "");
  $("f-tier").replaceChildren(...TIERS.map((tier) => el("option", { value: tier, text: t(`tiers.${tier}`) })));
  $("zones").replaceChildren(...(Intl.supportedValuesOf ? Intl.supportedValuesOf("timeZone") : [])
    .filter((z) => z.startsWith("America/") || z.startsWith("Pacific/")).map((z) => el("option", { value: z })));
  setUpTabs($("tabs"), (name) => {
    if (!loaded.has(name)) {
      loaded.add(name);
      SECTIONS[name]().catch((err) => say($("page-error"), t("common:error", { message: err.message })));
    }
  });
  if (!loaded.has("credits")) countOverdue();
}

async function countOverdue() {
  try {
    const overdue = await api("/v1/credit-requests?overdue=true");
    say($("count-overdue"), overdue.length ? t("tabs.overdue", { count: overdue.length }) : "");
  } catch { /* a convenience */ }
}

// ------------------------------------------------------------------ credit requests (M6)

async function loadCredits() {
  const status = $("credit-status").value;
  say($("credits-status"), t("common:loading"));
  const list = await api(`/v1/credit-requests${status ? `?status=${status}` : ""}`);
  // Overdue first (M6), then by deadline.
  list.sort((a, b) => (b.overdue - a.overdue) || a.decide_by.localeCompare(b.decide_by));
  const visits = await Promise.all(list.map((r) => api(`/v1/visits/${r.visit_id}`).catch(() => null)));
  const overdue = list.filter((r) => r.overdue).length;
  say($("credits-status"), list.length ? t("credits.count", { count: list.length, overdue }) : t(`credits.empty.${status || "all"}`));
  $("credit-list").replaceChildren(...list.map((r, i) => creditCard(r, visits[i])));
  countOverdue();
}

function creditCard(r, visit) {
  const facility = visit && byId(visit.facility_id);
  const zone = facility ? facility.timezone : "UTC";
  const headingId = `credit-${r.id}`;
  const state = r.overdue ? badge(t("credits.overdue"), "overdue") : badge(t(`credits.status.${r.status}`), r.status);
  const card = el("article", { class: `card request${r.overdue ? " overdue" : ""}`, "aria-labelledby": headingId,
    "data-credit": r.id },
    el("h3", { id: headingId }, visit ? t("credits.title", { facility: facility ? facility.name : visit.facility_id,
      resident: visit.resident_name || visit.resident_id, when: dateTime(visit.starts_at, zone) }) : r.visit_id, " ", state),
    el("blockquote", { class: "quote", text: r.description }),
    pairs([[t("credits.filed"), dateTime(r.filed_at, zone)], [t("credits.decideBy"), dateTime(r.decide_by, zone)],
      [t("credits.visitState"), visit && t(`visit.status.${visit.status}`, { defaultValue: visit.status })],
      [t("credits.connected"), visit && visit.connected_seconds !== null && visit.connected_seconds !== undefined
        ? t("credits.minutes", { count: Math.round(visit.connected_seconds / 60) }) : null],
      [t("credits.why"), visit && (visit.disconnect_reason || visit.ended_reason)],
      [t("credits.paid"), visit && money(visit.total_cents)],
      [t("credits.decided"), r.decided_at && dateTime(r.decided_at, zone)], [t("credits.note"), r.decision_note],
      [t("credits.credited"), r.credited_cents !== null && r.credited_cents !== undefined ? money(r.credited_cents) : null]]));
  if (r.status === "open") card.append(decisionForm(r, visit, state));
  return card;
}

function decisionForm(r, visit, state) {
  const key = `web-credit-${r.id}-${crypto.randomUUID()}`;  // one key per decision: a retry cannot credit twice
  const noteId = `note-${r.id}`;
  const note = el("textarea", { id: noteId, rows: "2", maxlength: "500" });
  const alert = el("p", { class: "error", role: "alert", hidden: true });
  const status = el("p", { class: "ok", role: "status" });
  const approve = el("button", { type: "button", class: "approve",
    text: visit ? t("credits.approveAmount", { amount: money(visit.price_cents) }) : t("credits.approve") });
  const deny = el("button", { type: "button", class: "danger", text: t("credits.deny") });
  const form = el("form", { class: "decision", novalidate: true },
    el("div", { class: "field" }, el("label", { for: noteId, text: t("credits.noteLabel") }), note),
    el("div", { class: "actions" }, approve, deny), alert, status);
  form.addEventListener("submit", (event) => event.preventDefault());
  let decided = false;
  const decide = async (yes, button) => {
    say(alert, "");
    if (!yes && !note.value.trim()) {
      say(alert, t("credits.noteNeeded"));
      note.setAttribute("aria-invalid", "true");
      note.focus();
      return;
    }
    note.removeAttribute("aria-invalid");
    const body = { decision: yes ? "approve" : "deny" };
    if (note.value.trim()) body.note = note.value.trim();
    await busy(button, async () => {
      try {
        const done = await api(`/v1/credit-requests/${r.id}/decision`, { method: "POST", body, idempotent: key });
        say(status, yes ? t("credits.approvedNow", { amount: money(done.credited_cents || 0) }) : t("credits.deniedNow"));
        decided = true;
        const outcome = yes ? "approved" : "denied";  // the heading's badge follows the decision
        state.replaceWith(badge(t(`credits.status.${outcome}`), outcome));
        countOverdue();
      } catch (err) {
        say(alert, err.message);
      }
    });
    if (decided) for (const control of [approve, deny, note]) control.disabled = true;
  };
  approve.addEventListener("click", () => decide(true, approve));
  deny.addEventListener("click", () => decide(false, deny));
  return form;
}

$("credit-filter").addEventListener("submit", (event) => {
  event.preventDefault();
  loadCredits().catch((err) => say($("credits-status"), t("common:error", { message: err.message })));
});

// ------------------------------------------------------------------ facilities

async function showFacilities() {
  await loadFacilities();
  $("facilities-empty").hidden = facilities.length > 0;
  $("facility-rows").replaceChildren(...facilities.map((f) => el("tr", {},
    el("td", { text: f.name }), el("td", { text: f.timezone }), el("td", { text: t(`billing.${f.billing_mode}`) }),
    el("td", { text: t(`tiers.${f.size_tier}`) }), el("td", { text: t(`review.${f.review_mode}`) }),
    el("td", {}, el("a", { href: `/app/admin.html?facility=${encodeURIComponent(f.id)}`,
      text: t("facilities.open"), "aria-label": t("facilities.openLabel", { name: f.name }) })))));
}

$("facility-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  clearErrors(form);
  const body = { name: $("f-name").value.trim(), timezone: $("f-timezone").value.trim(),
    billing_mode: $("f-billing").value, size_tier: $("f-tier").value };
  busy(form.querySelector("button[type=submit]"), async () => {
    try {
      const f = await api("/v1/facilities", { method: "POST", body });
      form.reset();
      say(formParts(form).status, t("facilities.added", { name: f.name }));
      await showFacilities();
    } catch (err) {
      showProblem(form, err);
    }
  });
});

// ------------------------------------------------------------------ fees (M7)

let feeCounter = 0;

function feeRow(f) {
  const n = feeCounter++;
  const id = (part) => `fee-${n}-${part}`;
  const label = (part, key) => el("label", { for: id(part), class: "visually-hidden", text: t(key, { n: n + 1 }) });
  const remove = el("button", { type: "button", class: "secondary", text: t("fees.remove"),
    "aria-label": t("fees.removeLabel", { n: n + 1 }) });
  const row = el("tr", { class: "fee-row" },
    el("td", {}, label("name", "fees.nameOf"), el("input", { id: id("name"), name: "name", value: f.name, maxlength: "100", required: true })),
    el("td", {}, label("kind", "fees.kindOf"), el("select", { id: id("kind"), name: "kind" },
      ...["fee", "tax"].map((k) => el("option", { value: k, selected: k === f.kind, text: t(`fees.kinds.${k}`) })))),
    el("td", {}, label("amount", "fees.amountOf"), el("input", { id: id("amount"), name: "amount", type: "number", min: "0",
      step: "0.01", inputmode: "decimal", value: fromCents(f.amount_cents) })),
    el("td", {}, label("rate", "fees.rateOf"), el("input", { id: id("rate"), name: "rate", type: "number", min: "0", max: "100",
      step: "0.01", inputmode: "decimal", value: (f.rate_basis_points / 100).toFixed(2) })),
    el("td", {}, remove));
  remove.addEventListener("click", () => {
    row.remove();
    $("fees-empty").hidden = $("fee-rows").children.length > 0;
    $("fee-add").focus();
  });
  return row;
}

async function loadFees() {
  if (!$("fees-facility").value) {
    say(formParts($("fees-form")).alert, t("fees.noFacility"));
    return;
  }
  const fees = await api(`/v1/facilities/${$("fees-facility").value}/fees`);
  $("fee-rows").replaceChildren(...fees.map(feeRow));
  $("fees-empty").hidden = fees.length > 0;
}

$("fees-facility").addEventListener("change", () => {
  clearErrors($("fees-form"));
  loadFees().catch((err) => say(formParts($("fees-form")).alert, err.message));
});

$("fee-add").addEventListener("click", () => {
  const row = feeRow({ name: "", kind: "fee", amount_cents: 0, rate_basis_points: 0 });
  $("fee-rows").append(row);
  $("fees-empty").hidden = true;
  row.querySelector("input").focus();
});

$("fees-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  clearErrors(form);
  const fees = [...$("fee-rows").children].map((row) => ({
    name: row.querySelector("[name=name]").value.trim(), kind: row.querySelector("[name=kind]").value,
    amount_cents: toCents(row.querySelector("[name=amount]").value) ?? 0,
    rate_basis_points: toCents(row.querySelector("[name=rate]").value) ?? 0,
  }));
  busy(form.querySelector("button[type=submit]"), async () => {
    try {
      const saved = await api(`/v1/facilities/${$("fees-facility").value}/fees`, { method: "PUT", body: { fees } });
      $("fee-rows").replaceChildren(...saved.map(feeRow));
      $("fees-empty").hidden = saved.length > 0;
      say(formParts(form).status, t("fees.saved"));
    } catch (err) {
      const errors = err.problem && Array.isArray(err.problem.errors) ? err.problem.errors : [];
      say(formParts(form).alert, errors.length
        ? errors.map((e) => t("fees.rowProblem", { n: Number(e.location[2]) + 1, message: e.message })).join(" · ")
        : err.message);
    }
  });
});

// ------------------------------------------------------------------ visits: find and cancel

async function loadVisits() {
  const facility = byId($("visits-facility").value);
  if (!facility) {
    say($("visits-status"), t("visits.noFacility"));
    return;
  }
  if (!$("visits-day").value) $("visits-day").value = todayIn(facility.timezone, serverNow);
  const day = $("visits-day").value;
  say($("visits-status"), t("common:loading"));
  const visits = await api(`/v1/visits?facility_id=${facility.id}&from=${day}&to=${day}&limit=500`);
  say($("visits-status"), visits.length ? t("visits.count", { count: visits.length, name: facility.name })
    : t("visits.none", { name: facility.name }));
  $("visits-table").hidden = visits.length === 0;
  $("visit-rows").replaceChildren(...visits.map((v) => {
    const actions = el("td", {});
    if (["scheduled", "pending_review"].includes(v.status)) actions.append(cancelControl(v));
    return el("tr", { "data-visit": v.id },
      el("td", { text: dateTime(v.starts_at, facility.timezone, { weekday: undefined, year: undefined,
        month: undefined, day: undefined, timeZoneName: "short" }) }),
      el("td", { text: v.resident_name || v.resident_id }), el("td", { text: t(`visit.types.${v.visit_type}`) }),
      el("td", {}, badge(t(`visit.status.${v.status}`, { defaultValue: v.status }), v.status)),
      el("td", { text: money(v.total_cents) }), actions);
  }));
}

/** Cancel a visit: the first click asks for the reason and a confirmation (the visitor is credited, M3b). */
function cancelControl(visit) {
  const wrap = el("div", { class: "cancel" });
  const open = el("button", { type: "button", class: "secondary", text: t("visits.cancel"), "aria-expanded": "false" });
  const reasonId = `cancel-${visit.id}`;
  const reason = el("input", { id: reasonId, maxlength: "500" });
  const confirm = el("button", { type: "button", class: "danger", text: t("visits.confirmCancel") });
  const alert = el("p", { class: "error", role: "alert", hidden: true });
  const box = el("div", { class: "confirm", hidden: true }, el("p", { text: t("visits.cancelWarning") }),
    el("label", { for: reasonId, text: t("visits.cancelReason") }), reason, confirm, alert);
  open.addEventListener("click", () => {
    box.hidden = !box.hidden;
    open.setAttribute("aria-expanded", String(!box.hidden));
    if (!box.hidden) reason.focus();
  });
  confirm.addEventListener("click", () => busy(confirm, async () => {
    if (!reason.value.trim()) {
      say(alert, t("visits.reasonNeeded"));
      return;
    }
    try {
      const result = await api(`/v1/visits/${visit.id}/cancel`, { method: "POST", body: { reason: reason.value.trim() } });
      wrap.replaceChildren(el("p", { role: "status", text: t("visits.cancelled", { credit: money(result.credited_cents || 0) }) }));
    } catch (err) {
      say(alert, err.message);
    }
  }));
  wrap.append(open, box);
  return wrap;
}

$("visits-form").addEventListener("submit", (event) => {
  event.preventDefault();
  loadVisits().catch((err) => say($("visits-status"), t("common:error", { message: err.message })));
});

$("visits-facility").addEventListener("change", () => { $("visits-day").value = ""; });

// ------------------------------------------------------------------ the audit chain

async function loadAudit() {
  const box = $("audit-state");
  box.replaceChildren(el("p", { text: t("audit.checking") }));
  box.classList.remove("intact", "broken");
  try {
    const state = await api("/v1/audit/verify");
    box.classList.add(state.ok ? "intact" : "broken");
    box.replaceChildren(
      el("h3", { id: "audit-verdict" }, badge(t(state.ok ? "audit.intact" : "audit.broken"), state.ok ? "intact" : "broken"), " ",
        t(!state.ok ? "audit.brokenText" : state.entries ? "audit.intactText" : "audit.emptyText", { count: state.entries })),
      pairs([[t("audit.entries"), String(state.entries)],
        [t("audit.head"), el("span", { class: "hash", text: state.head_hash })],
        [t("audit.problem"), state.problem], [t("audit.badSeq"), state.bad_seq === null ? null : String(state.bad_seq)],
        [t("audit.checkedAt"), dateTime(state.checked_at, "UTC")]]));
  } catch (err) {
    box.replaceChildren(el("p", { class: "error", role: "alert", text: t("common:error", { message: err.message }) }));
  }
}

$("audit-check").addEventListener("click", () => busy($("audit-check"), loadAudit));

const SECTIONS = { credits: loadCredits, facilities: showFacilities, fees: loadFees, visits: loadVisits, audit: loadAudit };

await start();

// My visits, the visitor's home (issue 13): upcoming and past visits in the facility's time with
// the zone named (A1), status and outcome (S6), the price paid and how (M9); join while the join
// window is open (S1); cancel after being told whether a credit will be given and why (M3, M4).
import { api, el, say, startPage, t } from "../lib/layout.js";
import { language, money } from "../lib/i18n.js";

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

await load();

// Billing (issue 13): the balance and each credit lot with its expiry (M5), the statement with
// every charge, credit and expiry and the rule behind it (M9) as a table and a CSV download, and
// credit requests for a system problem with their status and decision deadline (M6).
import { api, el, say, startPage, t } from "../lib/layout.js";
import { language, money } from "../lib/i18n.js";

const $ = (id) => document.getElementById(id);
const locale = () => (language() === "es" ? "es-US" : "en-US");

await startPage("billing", { roles: ["visitor", "attorney"] });

let visits = new Map();  // id -> visit
let facilities = new Map();  // id -> facility
let statement = [];

/** A time in the zone of the visit's facility when there is one (A1), else this device's; the zone is named. */
function when(iso, visitId = null, dateOnly = false) {
  const v = visitId ? visits.get(visitId) : null;
  const zone = v && facilities.get(v.facility_id) ? facilities.get(v.facility_id).timezone : undefined;
  const opts = dateOnly ? { year: "numeric", month: "short", day: "numeric", timeZone: zone }
    : { year: "numeric", month: "short", day: "numeric", hour: "numeric", minute: "2-digit", timeZone: zone, timeZoneName: "short" };
  return new Intl.DateTimeFormat(locale(), opts).format(new Date(iso));
}

function visitLabel(visitId) {
  const v = visits.get(visitId);
  if (!v) return "";
  return t("visitLabel", { name: v.resident_name, when: when(v.starts_at, v.id) });
}

const signed = (cents) => (cents > 0 ? `+${money(cents)}` : cents < 0 ? `−${money(-cents)}` : money(0));
const capital = (text) => text.charAt(0).toLocaleUpperCase(language()) + text.slice(1);
const ruleText = (rule) => t(`rules.${rule}`, { defaultValue: "" });

function cell(label, content, cls = null) {
  return el("td", { "data-label": label, class: cls }, content);
}

function describe(line) {
  const what = t(`kinds.${line.kind}`, { defaultValue: line.description });
  const why = ruleText(line.rule);
  return [what + (why ? ` – ${why}` : ""), line.visit_id ? visitLabel(line.visit_id) : ""].filter(Boolean).join(". ");
}

function showBalance(balance) {
  say($("balance"), money(balance.available_cents));
  $("lots-empty").hidden = balance.lots.length > 0;
  $("lots-wrap").hidden = balance.lots.length === 0;
  $("lots").tBodies[0].replaceChildren(...balance.lots.map((lot) => el("tr", {},
    cell(t("lots.issued"), when(lot.issued_at, lot.visit_id)),
    cell(t("lots.why"), [capital(ruleText(lot.rule) || lot.rule), lot.visit_id ? visitLabel(lot.visit_id) : ""].filter(Boolean).join(". ")),
    cell(t("lots.amount"), money(lot.amount_cents), "num"),
    cell(t("lots.remaining"), money(lot.remaining_cents), "num"),
    cell(t("lots.expires"), when(lot.expires_at, lot.visit_id), "expires"))));
  $("balance-section").hidden = false;
}

function showStatement(lines) {
  statement = lines;
  $("statement-empty").hidden = lines.length > 0;
  $("statement-wrap").hidden = lines.length === 0;
  $("download").disabled = lines.length === 0;
  $("statement").tBodies[0].replaceChildren(...[...lines].reverse().map((line) => el("tr", { "data-kind": line.kind },
    cell(t("statement.date"), when(line.at, line.visit_id)),
    cell(t("statement.description"), describe(line)),
    cell(t("statement.rule"), line.rule),
    cell(t("statement.amount"), signed(line.amount_cents), "num"),
    cell(t("statement.card"), line.card_cents ? money(line.card_cents) : "–", "num"),
    cell(t("statement.credit"), line.credit_cents ? signed(line.credit_cents) : "–", "num"))));
  $("statement-section").hidden = false;
}

// M9 as a file: one line per statement line, amounts in dollars with a dot, times in UTC (ISO 8601).
function csv() {
  const quote = (value) => {
    const text = String(value ?? "");
    return /[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
  };
  const dollars = (cents) => (cents / 100).toFixed(2);
  const header = ["date_utc", "kind", "rule", "description", "visit_id", "resident", "amount_usd", "card_usd", "credit_usd"];
  const rows = statement.map((l) => [l.at, l.kind, l.rule, l.description, l.visit_id || "",
    (visits.get(l.visit_id) || {}).resident_name || "", dollars(l.amount_cents), dollars(l.card_cents), dollars(l.credit_cents)]);
  return [header, ...rows].map((r) => r.map(quote).join(",")).join("\r\n") + "\r\n";
}

$("download").addEventListener("click", () => {
  const blob = new Blob([csv()], { type: "text/csv;charset=utf-8" });
  const url = URL.createObjectURL(blob);
  const link = el("a", { href: url, download: `openvisit-statement-${new Date().toISOString().slice(0, 10)}.csv` });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
});

function showRequests(requests, now) {
  $("requests-empty").hidden = requests.length > 0;
  $("requests").replaceChildren(...requests.map((r) => {
    const status = r.status === "open" && r.overdue ? t("requests.statuses.overdue") : t(`requests.statuses.${r.status}`);
    return el("li", { class: `request ${r.status}`, "data-request": r.id },
      el("p", { class: "request-head" }, el("strong", { text: visitLabel(r.visit_id) || t("requests.unknownVisit") }),
        el("span", { class: `badge ${r.overdue && r.status === "open" ? "overdue" : r.status}`, text: status })),
      el("p", { text: `“${r.description}”` }),
      el("p", { class: "meta", text: t("requests.filed", { when: when(r.filed_at, r.visit_id) }) }),
      r.status === "open" ? el("p", { class: "meta", text: t("requests.decideBy", { when: when(r.decide_by, r.visit_id) }) })
        : el("p", { class: "meta", text: t("requests.decided", { when: when(r.decided_at, r.visit_id) }) }),
      r.decision_note ? el("p", { class: "meta", text: t("requests.note", { note: r.decision_note }) }) : null);
  }));
  // M6: for one's own visit once its start has passed; one open request per visit.
  const open = new Set(requests.filter((r) => r.status === "open").map((r) => r.visit_id));
  const eligible = [...visits.values()].filter((v) => Date.parse(v.starts_at) <= now && !open.has(v.id)
    && !["cancelled", "rejected", "pending_review"].includes(v.status)).reverse();
  $("request-visit").replaceChildren(...eligible.map((v) => el("option", { value: v.id, text: visitLabel(v.id) })));
  $("request-none").hidden = eligible.length > 0;
  $("request-fields").hidden = eligible.length === 0;
  $("requests-section").hidden = false;
}

async function load() {
  try {
    const [balance, lines, requests, list, places] = await Promise.all([api("/v1/me/balance"), api("/v1/me/statement"),
      api("/v1/credit-requests"), api("/v1/visits?limit=500"), api("/v1/facilities")]);
    visits = new Map(list.map((v) => [v.id, v]));
    facilities = new Map(places.map((f) => [f.id, f]));
    let now = Date.now();
    if (list.length) {  // the server's clock, not this device's (the demo clock can move)
      const preview = await api(`/v1/visits/${list[0].id}/cancellation`).catch(() => null);
      if (preview) now = Date.parse(preview.as_of);
    }
    showBalance(balance);
    showStatement(lines);
    showRequests(requests, now);
  } catch (err) {
    say($("load-error"), t("common:error", { message: err.message }));
  } finally {
    say($("loading"), "");
  }
}

$("request-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  say($("request-error"), "");
  say($("request-done"), "");
  const description = $("request-description").value.trim();
  if (!description) {
    say($("request-error"), t("requests.missing"));
    $("request-description").focus();
    return;
  }
  const button = $("request-submit");
  button.disabled = true;
  try {
    const r = await api("/v1/credit-requests", { method: "POST", body: { visit_id: $("request-visit").value, description } });
    $("request-description").value = "";
    await load();
    say($("request-done"), t("requests.sent", { when: when(r.decide_by, r.visit_id) }));
  } catch (err) {
    say($("request-error"), t("common:error", { message: err.message }));
  } finally {
    button.disabled = false;
  }
});

await load();

// Sign up as a visitor or attorney (issue 13): legal name, postal address, date of birth, email,
// phone, password, and for attorneys the Bar number and its state (V2). POST /v1/accounts answers
// 202 whether or not the address already has an account (issue 12), so the page always says
// "check your email" and what happens next (confirm, photo ID, access request: V1).
import { api, el, say, startPage, t } from "../lib/layout.js";
import { LANGUAGES, language } from "../lib/i18n.js";
import { ApiError, homeFor } from "../lib/session.js";

const $ = (id) => document.getElementById(id);
const FIELDS = ["role", "legal_name", "postal_address", "date_of_birth", "email", "phone", "password",
  "password_again", "bar_number", "bar_state", "language"];
// US states, DC and territories whose courts admit attorneys (the API takes the two-letter code).
export const STATES = ["AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "DC", "FL", "GA", "HI", "ID", "IL", "IN",
  "IA", "KS", "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY", "NC",
  "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA", "WV", "WI", "WY", "AS", "GU",
  "MP", "PR", "VI"];

const { session, me } = await startPage("signup");
if (session) {
  say($("already"), t("already", { name: me ? me.legal_name : t(`common:role.${session.role}`) }));
  $("already").append(" ", el("a", { href: homeFor(session.role), text: t("goHome") }));
  $("signup").hidden = true;
}

$("bar_state").append(el("option", { value: "", text: t("bar.choose") }),
  ...STATES.map((code) => el("option", { value: code, text: t(`states.${code}`) })));
for (const [code, name] of Object.entries(LANGUAGES)) {
  $("signup-language").append(el("option", { value: code, selected: code === language() }, name));
}
const today = new Date().toISOString().slice(0, 10);
$("date_of_birth").max = today;

const role = () => document.querySelector("input[name=role]:checked").value;
function showBar() {
  const attorney = role() === "attorney";
  $("bar-fields").hidden = !attorney;
  $("bar_number").required = attorney;
  $("bar_state").required = attorney;
}
document.querySelectorAll("input[name=role]").forEach((r) => r.addEventListener("change", showBar));
showBar();

function control(field) {
  return field === "language" ? $("signup-language") : field === "role" ? $("role-field") : $(field);
}

function fieldError(field, text) {
  const node = $(`err-${field}`);
  if (!node) return false;
  say(node, text);
  const input = control(field);
  if (text) input.setAttribute("aria-invalid", "true");
  else input.removeAttribute("aria-invalid");
  return true;
}

function clearErrors() {
  FIELDS.forEach((f) => fieldError(f, ""));
  say($("signup-error"), "");
}

/** What the person typed, checked here first so most mistakes never need a round trip. */
function collect() {
  const v = (id) => $(id).value.trim();
  const body = { role: role(), legal_name: v("legal_name"), postal_address: v("postal_address"),
    date_of_birth: v("date_of_birth"), email: v("email"), phone: v("phone"), password: $("password").value,
    language: $("signup-language").value };
  if (body.role === "attorney") Object.assign(body, { bar_number: v("bar_number"), bar_state: v("bar_state") });
  const problems = {};
  for (const f of ["legal_name", "postal_address", "date_of_birth", "email", "phone", "password"]) {
    if (!body[f]) problems[f] = t(`missing.${f}`);
  }
  if (body.postal_address && body.postal_address.length < 5) problems.postal_address = t("invalid.postal_address");
  if (body.email && !$("email").checkValidity()) problems.email = t("invalid.email");
  if (body.phone && !/^\+?[0-9 ()-]{7,20}$/.test(body.phone)) problems.phone = t("invalid.phone");
  if (body.date_of_birth && (body.date_of_birth >= today || body.date_of_birth < "1900-01-01")) {
    problems.date_of_birth = t("invalid.date_of_birth");
  }
  if (body.password && body.password.length < 10) problems.password = t("invalid.password");
  if (!$("password_again").value) problems.password_again = t("missing.password_again");
  else if ($("password_again").value !== body.password) problems.password_again = t("invalid.password_again");
  if (body.role === "attorney") {
    if (!body.bar_number) problems.bar_number = t("missing.bar_number");
    else if (!/^[A-Za-z0-9-]{3,32}$/.test(body.bar_number)) problems.bar_number = t("invalid.bar_number");
    if (!body.bar_state) problems.bar_state = t("missing.bar_state");
  }
  return { body, problems };
}

function showProblems(problems) {
  const fields = Object.keys(problems);
  fields.forEach((f) => fieldError(f, problems[f]));
  say($("signup-error"), t("fix", { count: fields.length }));
  control(FIELDS.find((f) => f in problems)).focus();
}

/** The API's 422 problem lists each wrong field (location ["body", field]); other problems go above the button. */
function showServerProblem(err) {
  const problems = {};
  const general = [];
  for (const e of (err.problem && err.problem.errors) || []) {
    const field = (e.location || [])[1];
    if (field && FIELDS.includes(field)) problems[field] = t(`invalid.${field}`, { defaultValue: e.message });
    else general.push(e.message);
  }
  if (Object.keys(problems).length) {
    showProblems(problems);
    if (general.length) say($("signup-error"), `${$("signup-error").textContent} ${general.join(" ")}`);
  } else {
    say($("signup-error"), err.status === 429 ? t("throttled") : t("common:error", { message: err.message }));
  }
}

$("signup").addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors();
  const { body, problems } = collect();
  if (Object.keys(problems).length) {
    showProblems(problems);
    return;
  }
  const button = $("signup-submit");
  button.disabled = true;
  button.textContent = t("sending");
  try {
    const done = await api("/v1/accounts", { method: "POST", body });
    $("signup").hidden = true;
    say($("sent-to"), t("sent.to", { email: done.email }));
    $("sent").hidden = false;
    $("sent").focus();
    localStorage.setItem("openvisit.language", body.language);
  } catch (err) {
    if (err instanceof ApiError) showServerProblem(err);
    else say($("signup-error"), t("common:error", { message: err.message }));
  } finally {
    button.disabled = false;
    button.textContent = t("submit");
  }
});

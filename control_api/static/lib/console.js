// Back-office console helpers shared by the facility admin's and the operator's consoles (issue 13):
// WAI-ARIA tabs, and API problems shown on forms (422 validation errors next to their fields).
// `t("fixFields")` comes from the page's own namespace.
import { el, say, t } from "./layout.js";

/** WAI-ARIA tabs: arrow keys, Home and End move between tabs; the chosen tab is kept in the URL hash. */
export function setUpTabs(tablist, onShow) {
  const tabs = [...tablist.querySelectorAll("[role=tab]")];
  const panelOf = (tab) => document.getElementById(tab.getAttribute("aria-controls"));
  const show = (tab, focus = false) => {
    for (const other of tabs) {
      const selected = other === tab;
      other.setAttribute("aria-selected", String(selected));
      other.tabIndex = selected ? 0 : -1;
      panelOf(other).hidden = !selected;
    }
    if (focus) tab.focus();
    history.replaceState(null, "", `#${tab.id.replace(/^tab-/, "")}`);
    onShow(tab.id.replace(/^tab-/, ""));
  };
  tablist.addEventListener("click", (event) => {
    const tab = event.target.closest("[role=tab]");
    if (tab) show(tab);
  });
  tablist.addEventListener("keydown", (event) => {
    const index = tabs.indexOf(document.activeElement);
    if (index < 0) return;
    const next = { ArrowRight: index + 1, ArrowLeft: index - 1, Home: 0, End: tabs.length - 1 }[event.key];
    if (next === undefined) return;
    event.preventDefault();
    show(tabs[(next + tabs.length) % tabs.length], true);
  });
  const wanted = tabs.find((tab) => tab.id === `tab-${location.hash.slice(1)}`) || tabs[0];
  tablist.hidden = false;
  show(wanted);
  return { show: (name) => show(tabs.find((tab) => tab.id === `tab-${name}`)) };
}

/** The form's alert and status paragraphs (the first `.error` / `.ok` directly inside it). */
export function formParts(form) {
  return { alert: form.querySelector(":scope > .error"), status: form.querySelector(":scope > .ok") };
}

export function fieldError(form, name) {
  return form.querySelector(`[data-field="${name}"]`) || form.querySelector(`#err-${CSS.escape(name)}`);
}

export function clearErrors(form) {
  form.querySelectorAll(".field-error").forEach((p) => say(p, ""));
  form.querySelectorAll("[aria-invalid]").forEach((input) => input.removeAttribute("aria-invalid"));
  const { alert, status } = formParts(form);
  if (alert) say(alert, "");
  if (status) say(status, "");
}

export function markField(form, name, message) {
  const target = fieldError(form, name);
  if (!target) return false;
  say(target, message);
  const input = form.querySelector(`[name="${name}"]`);
  if (input) input.setAttribute("aria-invalid", "true");
  return true;
}

/**
 * Show an API error on a form: request validation errors next to their fields (the 422's
 * `errors[].location`), rule problems in the form's alert, plus next to `fields` when given.
 */
export function showProblem(form, err, fields = []) {
  const { alert } = formParts(form);
  const errors = err && err.problem && Array.isArray(err.problem.errors) ? err.problem.errors : [];
  let placed = 0;
  for (const e of errors) {
    const path = (e.location || []).slice(1);
    const name = path.find((p) => Number.isNaN(Number(p))) || path[0];
    if (name && markField(form, name, e.message)) placed += 1;
  }
  for (const name of fields) markField(form, name, err.message);
  const message = placed && placed === errors.length ? t("fixFields", { message: err.message }) : err.message;
  if (alert) say(alert, message || t("common:error", { message: String(err) }));
  return message;
}

/** Run `work` with the form's submit button disabled, showing errors on the form. */
export async function busy(button, work) {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    return await work();
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

/** Dollars typed in a field -> cents (null when not a number). */
export function toCents(value) {
  const n = Number(String(value).replace(",", "."));
  return value === "" || Number.isNaN(n) ? null : Math.round(n * 100);
}

export const fromCents = (cents) => (cents / 100).toFixed(2);

/** A small definition list from [label, value] pairs (values may be nodes). */
export function pairs(rows) {
  const dl = el("dl", { class: "pairs" });
  for (const [label, value] of rows) {
    if (value === null || value === undefined || value === "") continue;
    dl.append(el("dt", { text: label }), el("dd", {}, value));
  }
  return dl;
}

/** A status badge (text, never colour alone). */
export function badge(text, kind = "") {
  return el("span", { class: `badge ${kind}`.trim(), text });
}

// Languages (issue 13): every string on a page comes from locales/<language>/<namespace>.json
// through i18next; dates, times and money are formatted for the language with the browser's Intl.
// Markup names its strings: data-i18n="key" (text), data-i18n-attr="placeholder:key,aria-label:key".
// Each page has its own namespace (its file name) besides "common", so pages grow independently.
import i18next from "../vendor/i18next/i18next.js";
import { api, currentSession, setProblemLocalizer } from "./session.js";

export const LANGUAGES = { en: "English", es: "Español" };
const LANG_KEY = "openvisit.language";

export function chosenLanguage() {
  const stored = localStorage.getItem(LANG_KEY);
  if (stored && stored in LANGUAGES) return stored;
  return (navigator.language || "en").toLowerCase().startsWith("es") ? "es" : "en";
}

async function load(lang, ns) {
  const resp = await fetch(`/app/locales/${lang}/${ns}.json`);
  return resp.ok ? resp.json() : {};
}

/** Load the language's strings for `page` and translate the document. */
export async function initI18n(page, language = null) {
  const lng = language || chosenLanguage();
  const namespaces = page === "common" ? ["common"] : ["common", page];
  const resources = { [lng]: {} };
  await Promise.all(namespaces.map(async (ns) => { resources[lng][ns] = await load(lng, ns); }));
  if (lng !== "en") {  // English fills any string not yet translated
    resources.en = {};
    await Promise.all(namespaces.map(async (ns) => { resources.en[ns] = await load("en", ns); }));
  }
  await i18next.init({ lng, fallbackLng: "en", ns: namespaces, defaultNS: namespaces.at(-1), fallbackNS: "common",
    resources, interpolation: { escapeValue: false }, returnNull: false });
  document.documentElement.lang = lng;
  translate(document);
  setProblemLocalizer(problemText);
  return lng;
}

export const t = (key, options) => i18next.t(key, options);

/** A problem in the page's language: the language's sentence for its type when there is one,
 * else the API's own detail (English carries the most precise words, with numbers and rules). */
function problemText(slug, status, detail) {
  const own = language() !== "en" && slug ? i18next.getResource(language(), "common", `problems.${slug}`) : null;
  return typeof own === "string" ? own : detail;
}
export const language = () => i18next.language || "en";

export function translate(root) {
  root.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  root.querySelectorAll("[data-i18n-attr]").forEach((el) => {
    for (const pair of el.dataset.i18nAttr.split(",")) {
      const [attr, key] = pair.split(":").map((s) => s.trim());
      el.setAttribute(attr, t(key));
    }
  });
  const title = document.querySelector("title[data-i18n]");
  if (title) document.title = t(title.dataset.i18n);
}

/** Switch language: remembered in this browser and, when signed in, on the account. */
export async function setLanguage(lang) {
  localStorage.setItem(LANG_KEY, lang);
  const session = currentSession();
  if (session && session.role !== "kiosk") {
    await api("/v1/me", { method: "PATCH", body: { language: lang } }).catch(() => {});
  }
  location.reload();
}

/** Adopt the account's remembered language (called once the account is known). */
export function adoptAccountLanguage(me) {
  if (me && me.language && me.language !== localStorage.getItem(LANG_KEY)) {
    localStorage.setItem(LANG_KEY, me.language);
    if (me.language !== language()) location.reload();
  }
}

const locale = () => (language() === "es" ? "es-US" : "en-US");

export function money(cents, currency = "USD") {
  return new Intl.NumberFormat(locale(), { style: "currency", currency }).format(cents / 100);
}

/** A date and time in the facility's zone, with the zone named (A1: facility time, not the browser's). */
export function dateTime(iso, timeZone, options = {}) {
  // Explicit fields: Intl refuses dateStyle/timeStyle together with timeZoneName.
  return new Intl.DateTimeFormat(locale(), { weekday: "short", year: "numeric", month: "short", day: "numeric",
    hour: "numeric", minute: "2-digit", timeZone, timeZoneName: "short", ...options }).format(new Date(iso));
}

export function date(iso, timeZone, options = {}) {
  return new Intl.DateTimeFormat(locale(), { dateStyle: "full", timeZone, ...options }).format(new Date(iso));
}

/** Today's date (YYYY-MM-DD) in `timeZone` (the facility's day, not the browser's; A1). */
export function todayIn(timeZone, now = new Date()) {
  return new Intl.DateTimeFormat("en-CA", { timeZone, year: "numeric", month: "2-digit", day: "2-digit" }).format(now);
}

export function time(iso, timeZone) {
  return new Intl.DateTimeFormat(locale(), { timeStyle: "short", timeZone }).format(new Date(iso));
}

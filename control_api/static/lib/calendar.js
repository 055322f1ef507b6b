// Facility-local calendar days (A1) for the week calendars of booking and moving a visit (issue 13):
// days are "YYYY-MM-DD" strings in the FACILITY's zone, labelled in the page's language, and the
// zone is named in full so nobody reads a time in their own zone.
import { language } from "./i18n.js";

const locale = () => (language() === "es" ? "es-US" : "en-US");

/** The local date `n` days after `ymd` (noon UTC keeps DST and zone offsets out of the sum). */
export function addDays(ymd, n) {
  const d = new Date(`${ymd}T12:00:00Z`);
  d.setUTCDate(d.getUTCDate() + n);
  return d.toISOString().slice(0, 10);
}

/** "Mon, Mar 9" (short) or "Monday, March 9, 2031" (long) for a local date. */
export function dayLabel(ymd, style = "short") {
  const opts = style === "long" ? { weekday: "long", month: "long", day: "numeric", year: "numeric" }
    : { weekday: "short", month: "short", day: "numeric" };
  return new Intl.DateTimeFormat(locale(), { ...opts, timeZone: "UTC" }).format(new Date(`${ymd}T12:00:00Z`));
}

/** The zone's long name in the page's language ("Central Standard Time"), or its id. */
export function zoneName(zone) {
  const part = new Intl.DateTimeFormat(locale(), { timeZone: zone, timeZoneName: "long" }).formatToParts(new Date())
    .find((p) => p.type === "timeZoneName");
  return part ? part.value : zone;
}

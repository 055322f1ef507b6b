// The page every unknown /app/* address answers, with status 404 (issue 13): the app's frame,
// the address asked for, and the way back (to the person's own home when signed in).
import { startPage, t } from "../lib/layout.js";
import { homeFor } from "../lib/session.js";

const { session } = await startPage("notfound");
document.getElementById("asked-path").textContent = location.pathname;
if (session) {
  const home = document.getElementById("home");
  home.href = homeFor(session.role);
  home.textContent = t("myHome");
}

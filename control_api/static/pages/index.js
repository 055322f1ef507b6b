// The landing page: one sign-in for every role, which then lands each on its own home (issue 13);
// staff who must use two-step sign-in set it up here first (issue 12).
import { api, el, say, startPage, t } from "../lib/layout.js";
import { adoptToken, currentSession, homeFor, signIn } from "../lib/session.js";
import { qrImage } from "../lib/qr.js";

const $ = (id) => document.getElementById(id);
const next = new URLSearchParams(location.search).get("next");
const destination = (role) => (next && next.startsWith("/app/") ? next : homeFor(role));

const { session, me } = await startPage("index");
if (session) {
  $("login").hidden = true;
  $("signed-in").hidden = false;
  say($("welcome"), t("welcomeBack", { name: me ? me.legal_name : session.role }));
  $("home-link").href = homeFor(session.role);
}

$("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  say($("login-error"), "");
  if (!$("email").value || !$("password").value) {
    say($("login-error"), t("signIn.missing"));
    return;
  }
  try {
    const login = await signIn($("email").value.trim(), $("password").value, $("code").value);
    if (login.second_factor_enrolment_required) {
      $("login").hidden = true;
      await enrol();
    }
    location.assign(destination(currentSession().role));
  } catch (err) {
    if (err.slug === "second-factor-required") {
      $("code-field").hidden = false;
      $("code").focus();
      say($("login-error"), t("signIn.needCode"));
      return;
    }
    say($("login-error"), err.status === 429 ? t("signIn.throttled", { seconds: err.problem.retry_after_seconds })
      : err.status === 401 ? t(err.slug === "second-factor-wrong" ? "signIn.wrongCode" : "signIn.wrong") : err.message);
  }
});

async function enrol() {
  const form = $("enrol");
  form.hidden = false;
  const setup = await api("/v1/me/second-factor/setup", { method: "POST" });
  $("enrol-qr").replaceChildren(qrImage(setup.otpauth_uri, t("enrol.qr")));
  $("enrol-link").href = setup.otpauth_uri;
  $("enrol-secret").textContent = setup.secret;
  $("enrol-code").focus();
  return new Promise((resolve) => {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      say($("enrol-error"), "");
      try {
        const done = await api("/v1/me/second-factor/confirm", { method: "POST", body: { code: $("enrol-code").value.trim() } });
        adoptToken(done.access_token, done.expires_at);
        $("enrol-codes").replaceChildren(...done.recovery_codes.map((c) => el("li", { text: c })));
        $("enrol-done").hidden = false;
        form.querySelector("button[type=submit]").hidden = true;
        $("enrol-continue").addEventListener("click", resolve, { once: true });
        $("enrol-continue").focus();
      } catch (err) {
        say($("enrol-error"), err.message);
      }
    });
  });
}

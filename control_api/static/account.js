// Account links from mail (issue 12): #confirm=TOKEN confirms the email, #reset=TOKEN chooses
// a new password, #forgot asks for a reset link. The token is in the fragment, so it never
// reaches a server log or a Referer header.
(() => {
"use strict";
const { api, show, $ } = window.openvisit;

const [action, token] = location.hash.slice(1).split("=");
history.replaceState(null, "", location.pathname);  // the token leaves the address bar
window.addEventListener("hashchange", () => location.reload());  // another mailed link opened in this tab

async function confirmEmail() {
  $("confirm").hidden = false;
  try {
    const done = await api("/v1/auth/confirm-email", { method: "POST", body: { token } });
    $("confirm-status").textContent = `Thank you: ${done.email} is confirmed. You can now ask a facility for visiting access.`;
  } catch (err) {
    $("confirm-status").textContent = err.message;
  }
}

function forgot() {
  $("forgot").hidden = false;
  $("forgot").addEventListener("submit", async (event) => {
    event.preventDefault();
    show($("forgot-error"), "");
    try {
      const done = await api("/v1/auth/password-reset", { method: "POST", body: { email: $("forgot-email").value } });
      show($("forgot-status"), done.detail);
    } catch (err) {
      show($("forgot-error"), err.message);
    }
  });
}

function reset() {
  $("reset").hidden = false;
  $("reset").addEventListener("submit", async (event) => {
    event.preventDefault();
    show($("reset-error"), "");
    if ($("reset-password").value !== $("reset-again").value) {
      show($("reset-error"), "The two passwords are not the same.");
      return;
    }
    try {
      await api("/v1/auth/password-reset/complete", { method: "POST", body: { token, new_password: $("reset-password").value } });
      $("reset").querySelector("button").hidden = true;
      show($("reset-status"), "Your password is changed. Sign in with it now.");
      $("reset-signin").hidden = false;
    } catch (err) {
      show($("reset-error"), err.message);
    }
  });
}

if (action === "confirm" && token) confirmEmail();
else if (action === "reset" && token) reset();
else forgot();
})();

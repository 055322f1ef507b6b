// The frame every page shares (issue 13): a skip link, the header with the role's navigation,
// who is signed in, the language switch and sign-out. Pages call startPage() first.
import { adoptAccountLanguage, initI18n, LANGUAGES, language, setLanguage, t, translate } from "./i18n.js";
import { api, currentSession, requireSignIn, signOut } from "./session.js";

// Each role's pages, in navigation order (key: the common namespace's nav.* string).
export const NAV = {
  visitor: [["visits", "/app/visits.html"], ["book", "/app/book.html"], ["facilities", "/app/facilities.html"],
    ["billing", "/app/billing.html"], ["account", "/app/account.html"], ["check", "/app/check.html"]],
  admin: [["admin", "/app/admin.html"], ["officer", "/app/officer.html"], ["account", "/app/account.html"]],
  officer: [["officer", "/app/officer.html"], ["account", "/app/account.html"]],
  investigator: [["review", "/app/review.html"], ["account", "/app/account.html"]],
  operator: [["operator", "/app/operator.html"], ["account", "/app/account.html"]],
  kiosk: [],
};
NAV.attorney = NAV.visitor;

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

function header(session, me) {
  const bar = document.getElementById("app-header");
  if (!bar) return;
  bar.replaceChildren();
  const brand = el("a", { class: "brand", href: "/app/" }, "openvisit");
  const nav = el("nav", { "aria-label": t("common:nav.label") });
  const list = el("ul");
  for (const [key, href] of (session ? NAV[session.role] || [] : [])) {
    const current = location.pathname === href ? "page" : null;
    list.append(el("li", {}, el("a", { href, "aria-current": current, text: t(`common:nav.${key}`) })));
  }
  nav.append(list);
  const select = el("select", { id: "language", "aria-label": t("common:language") });
  for (const [code, name] of Object.entries(LANGUAGES)) {
    select.append(el("option", { value: code, selected: code === language() }, name));
  }
  select.addEventListener("change", () => setLanguage(select.value));
  const who = el("div", { class: "who" });
  if (session) {
    const text = session.role === "kiosk" ? t("common:signedInKiosk")
      : t("common:signedInAs", { name: me ? me.legal_name : t(`common:role.${session.role}`),
        role: t(`common:role.${session.role}`) });
    who.append(el("span", { text }),
      el("button", { type: "button", class: "link", text: t("common:signOut"), onclick: async () => {
        await signOut();
        location.assign("/app/");
      } }));
  }
  bar.append(brand, nav, who, select);
}

/**
 * Start a page: translate it, make sure the right person is signed in (when `roles` is given),
 * draw the header. Returns { session, me } (me: the account, null for kiosks and anonymous pages).
 */
export async function startPage(page, { roles = null } = {}) {
  const session = roles ? requireSignIn(roles) : currentSession();
  await initI18n(page);
  if (roles && !session) return new Promise(() => {});  // on the way to the sign-in page
  let me = null;
  if (session && session.role !== "kiosk") {
    me = await api("/v1/me").catch(() => null);
    adoptAccountLanguage(me);
  }
  header(session, me);
  return { session, me };
}

/** Show a message in a status or alert element (empty text hides it). */
export function say(node, text) {
  node.textContent = text || "";
  node.hidden = !text;
}

export { api, t, translate };

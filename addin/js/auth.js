// Signing in: the existing session, else Office single sign-on inside Outlook, else (a
// plain browser in development) the development sign-in form, else Microsoft web sign-in.

import { api, ApiError, hasRoute, setCsrfToken } from "./api.js";
import { officeReady, ssoToken } from "./host.js";
import { el, showMessage, busy } from "./ui.js";

async function currentUser() {
  try {
    return await api.get("/api/me");
  } catch (error) {
    if (error instanceof ApiError && error.unauthorized) return null;
    throw error;
  }
}

function signedIn(reply) {
  setCsrfToken(reply.csrf_token);
  return api.get("/api/me");
}

// Resolves with GET /api/me once someone is signed in. `card` is where the sign-in
// form goes when one is needed; it is hidden again afterwards.
export async function ensureSignedIn(card) {
  const me = await currentUser();
  if (me) return me;
  card.hidden = false;
  card.replaceChildren(el("h2", {}, "Sign in"), el("p", { class: "loading" }, "Signing you in…"));
  const ready = await officeReady();
  const user = ready.office ? await officeSignIn(card) : await browserSignIn(card);
  card.hidden = true;
  card.replaceChildren();
  return user;
}

function officeSignIn(card) {
  return new Promise((resolve) => {
    const region = el("div", { class: "message", hidden: true });
    const button = el("button", { type: "button", class: "primary" }, "Sign in");
    const attempt = async () => {
      const { token, reason } = await ssoToken();
      if (!token) throw new Error(reason);
      const reply = await api.post("/api/auth/microsoft/token", { token });
      resolve(await signedIn(reply));
    };
    button.addEventListener("click", () => busy(button, attempt, region));
    card.replaceChildren(
      el("h2", {}, "Sign in"),
      el("p", {}, "calsync uses your Microsoft 365 account from Outlook."),
      region,
      el("div", { class: "actions" }, button),
    );
    busy(button, attempt, region);
  });
}

async function browserSignIn(card) {
  if (await hasRoute("/api/auth/dev")) return devSignIn(card);
  card.replaceChildren(
    el("h2", {}, "Sign in"),
    el("p", {}, "Open calsync from the connector sidebar in Outlook, or sign in with your Microsoft work account."),
    el("div", { class: "actions" },
      el("a", { class: "button primary", href: "/api/auth/microsoft/login" }, "Sign in with Microsoft")),
  );
  return new Promise(() => {}); // the link leaves the page
}

function devSignIn(card) {
  return new Promise((resolve) => {
    const region = el("div", { class: "message", hidden: true });
    const email = el("input", { id: "dev-email", name: "email", type: "email", autocomplete: "email", required: true });
    const name = el("input", { id: "dev-name", name: "name", type: "text", autocomplete: "name" });
    const submit = el("button", { type: "submit", class: "primary" }, "Sign in");
    const form = el("form", { class: "dev-signin", novalidate: true },
      el("div", { class: "field" }, el("label", { for: "dev-email" }, "Email"), email),
      el("div", { class: "field" }, el("label", { for: "dev-name" }, "Name (optional)"), name),
      region,
      el("div", { class: "actions" }, submit));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      busy(submit, async () => {
        if (!email.value.trim()) {
          email.setAttribute("aria-invalid", "true");
          throw new Error("Enter your email address to sign in.");
        }
        const body = { email: email.value.trim() };
        if (name.value.trim()) body.name = name.value.trim();
        const reply = await api.post("/api/auth/dev", body);
        resolve(await signedIn(reply));
      }, region);
    });
    card.replaceChildren(
      el("h2", {}, "Development sign-in"),
      el("p", { class: "muted" }, "Outlook is not around, so this development server lets you sign in with any email address. Colleagues with the same email domain share an organization."),
      form,
    );
    email.focus();
  });
}

export async function signOut() {
  await api.post("/api/auth/signout");
  setCsrfToken(null);
}

export function sessionExpiredMessage(region) {
  showMessage(region, "Your session has ended. Reload the page to sign in again.", "error");
}

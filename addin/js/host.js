// Everything that touches office.js, with a fallback for a plain browser tab
// (development, or office.js could not load from Microsoft's CDN).

const OFFICE_WAIT_MS = 5000;

let readyPromise = null;

function delay(ms) { return new Promise((resolve) => setTimeout(resolve, ms)); }

function pageLoaded() {
  // office.js is an async script: the window "load" event fires once it loaded or failed.
  if (document.readyState === "complete") return Promise.resolve();
  return new Promise((resolve) => window.addEventListener("load", resolve, { once: true }));
}

// Resolves to { office: true, host, item } inside Outlook, { office: false } elsewhere.
export function officeReady() {
  if (!readyPromise) {
    readyPromise = (async () => {
      await Promise.race([pageLoaded(), delay(OFFICE_WAIT_MS)]);
      const Office = window.Office;
      if (!Office || typeof Office.onReady !== "function") return { office: false };
      try {
        const info = await Promise.race([Office.onReady(), delay(OFFICE_WAIT_MS).then(() => null)]);
        if (!info || !info.host) return { office: false };
        return { office: true, host: info.host };
      } catch {
        return { office: false };
      }
    })();
  }
  return readyPromise;
}

// A token for our API from Office single sign-on, or null with the reason.
export async function ssoToken() {
  const Office = window.Office;
  if (!Office || !Office.auth || typeof Office.auth.getAccessToken !== "function") {
    return { token: null, reason: "This version of Outlook cannot sign you in to calsync automatically." };
  }
  try {
    const token = await Office.auth.getAccessToken({
      allowSignInPrompt: true,
      allowConsentPrompt: true,
      forMSGraphAccess: false,
    });
    return { token, reason: null };
  } catch (error) {
    const code = error && error.code;
    const reasons = {
      13001: "Sign in to Office first, then open calsync again.",
      13002: "Signing in was cancelled. Select Sign in to try again.",
      13003: "calsync needs a work or school account. Sign in to Outlook with one, then try again.",
      13006: "Office could not sign you in just now. Close and reopen the sidebar, then try again.",
      13012: "This version of Outlook cannot sign you in to calsync automatically.",
    };
    return {
      token: null,
      reason: reasons[code] || "Office could not sign you in to calsync. Close and reopen the sidebar, then try again.",
    };
  }
}

// Opens `url` in a new browser tab: Office's own way inside Outlook, window.open elsewhere.
export async function openInBrowser(url) {
  const ready = await officeReady();
  const Office = window.Office;
  if (ready.office && Office.context && Office.context.ui &&
      typeof Office.context.ui.openBrowserWindow === "function") {
    Office.context.ui.openBrowserWindow(url);
    return true;
  }
  return window.open(url, "_blank", "noopener") !== null;
}

// The open Outlook item (email or event): { kind, id } or null outside Outlook.
export async function currentItem() {
  const ready = await officeReady();
  if (!ready.office) return null;
  const mailbox = window.Office.context && window.Office.context.mailbox;
  const item = mailbox && mailbox.item;
  if (!item) return null;
  const kind = item.itemType === "appointment" ? "event" : "email";
  let id = item.itemId || null;
  if (!id && typeof item.getItemIdAsync === "function") {
    id = await new Promise((resolve) => {
      item.getItemIdAsync((result) => resolve(result.status === "succeeded" ? result.value : null));
    });
  }
  if (id && typeof mailbox.convertToRestId === "function") {
    try {
      id = mailbox.convertToRestId(id, window.Office.MailboxEnums.RestVersion.v2_0);
    } catch { /* keep the EWS id */ }
  }
  return { kind, id, subject: typeof item.subject === "string" ? item.subject : null };
}

// The connector sidebar (Outlook task pane): who is signed in, the calendar connection,
// the last sync, the open event's sync state, and the way to the Automatic sync page.

import { api, errorText } from "./api.js";
import { ensureSignedIn, signOut } from "./auth.js";
import { currentItem, officeReady, openInBrowser } from "./host.js";
import { $, $$, el, connectionSign, menuButton, runBadge, showMessage, when, RUN_KIND } from "./ui.js";
import { runSummary } from "./runs.js";

const message = $("#message");

async function openPage(link) {
  const ready = await officeReady();
  const target = new URL(link.getAttribute("href"), location.href);
  if (!ready.office) {
    window.open(target.href, "_blank", "noopener");
    return;
  }
  let url = target.href;
  if (link.dataset.open === "autosync") {
    // The new tab does not share the task pane's cookies: a one-time link signs it in.
    try {
      url = (await api.post("/api/auth/signin-link")).url;
    } catch (error) {
      showMessage(message, error.message, "error");
      return;
    }
  }
  await openInBrowser(url);
}

function wireLinks() {
  let office = null; // unknown until office.js answered (or failed to load)
  officeReady().then((ready) => { office = ready.office; });
  for (const link of $$("a[data-open]")) {
    link.addEventListener("click", (event) => {
      // Outside Office the link opens the page itself (a normal link, new tab).
      if (office === false) return;
      event.preventDefault();
      openPage(link);
    });
  }
  menuButton($("#menu-button"), $("#main-menu"));
  const toggle = $("#other-tools-button");
  toggle.addEventListener("click", () => {
    const open = toggle.getAttribute("aria-expanded") !== "true";
    toggle.setAttribute("aria-expanded", String(open));
    $("#other-tools").hidden = !open;
  });
}

function renderUser(me) {
  $("#user-name").textContent = me.name || me.email;
  const parts = [me.email];
  if (me.organization && me.organization.name) parts.push(me.organization.name);
  if (me.is_admin) parts.push("Administrator");
  $("#user-detail").textContent = parts.join(" · ");
  const signout = $("#menu-signout");
  signout.hidden = false;
  signout.addEventListener("click", async () => {
    try { await signOut(); location.reload(); } catch (error) { showMessage(message, error.message, "error"); }
  });
}

async function renderConnection() {
  const state = $("#calendar-state");
  const detail = $("#calendar-detail");
  state.classList.remove("loading");
  try {
    const info = await api.get("/api/connections");
    const cal = info.calendar;
    state.replaceChildren(connectionSign(cal, { none: "Not connected" }));
    if (cal && cal.status === "connected") {
      detail.textContent = [cal.provider_label, cal.account].filter(Boolean).join(" · ");
    } else if (cal) {
      detail.textContent = cal.status_message || "Open Automatic sync and connect your calendar again.";
    } else {
      detail.textContent = "Open Automatic sync to connect your calendar.";
    }
    const crm = info.crm_connection;
    if (!crm || crm.status !== "connected") {
      detail.append(el("br"), crm ? (crm.status_message || "Your CRM connection needs attention.")
        : "Your CRM credentials are not entered yet.");
    }
  } catch (error) {
    state.replaceChildren(errorText(error, "the connection status"));
  }
}

async function renderLastSync() {
  const box = $("#last-sync");
  box.classList.remove("loading");
  try {
    const runs = await api.get("/api/runs?limit=5");
    const run = (runs || []).find((r) => r.kind === "sync") || (runs || [])[0];
    if (!run) { box.textContent = "No sync has run yet."; return; }
    box.replaceChildren(
      el("div", { class: "row" }, runBadge(run.status),
        el("span", { class: "small muted" }, `${RUN_KIND[run.kind] || run.kind} · ${when(run.finished_at || run.started_at || run.created_at)}`)),
      el("p", { class: "small" }, runSummary(run)));
  } catch (error) {
    box.textContent = errorText(error, "sync history");
  }
}

async function renderItem() {
  const box = $("#item-state");
  box.classList.remove("loading");
  let item = await currentItem();
  const devItem = new URLSearchParams(location.search).get("item_id");
  if (!item && devItem) item = { kind: "event", id: devItem };
  if (!item) { box.textContent = "Open an event in Outlook to see whether it is synced with your CRM."; return; }
  if (item.kind !== "event") { box.textContent = "Open a calendar event to see whether it is synced with your CRM."; return; }
  if (!item.id) { box.textContent = "Save the event first; calsync syncs it once it is saved."; return; }
  try {
    const status = await api.get(`/api/events/status?item_id=${encodeURIComponent(item.id)}`);
    if (status.synced) {
      const record = status.crm_url
        ? el("a", { href: status.crm_url, target: "_blank", rel: "noopener", id: "crm-record-link" }, status.crm_record_id || "Open the CRM record")
        : el("span", {}, status.crm_record_id || "a CRM record");
      box.replaceChildren(
        el("span", { class: "status-sign ok" }, el("span", { class: "dot", "aria-hidden": "true" }), "Synced"),
        el("p", { class: "small" }, "This event is synced to CRM record ", record, "."),
        status.last_run ? el("p", { class: "small muted" }, `Your last sync: ${when(status.last_run.finished_at || status.last_run.started_at || status.last_run.created_at)}`) : null);
    } else {
      box.replaceChildren(
        el("span", { class: "status-sign warn" }, el("span", { class: "dot", "aria-hidden": "true" }), "Not synced"),
        el("p", { class: "small" }, status.reason || "This event has not been synced yet."));
    }
  } catch (error) {
    box.textContent = errorText(error, "the event's sync state");
  }
}

async function main() {
  wireLinks();
  try {
    const me = await ensureSignedIn($("#signin"));
    $("#content").hidden = false;
    renderUser(me);
    await Promise.all([renderConnection(), renderLastSync(), renderItem()]);
    document.body.dataset.ready = "true";
  } catch (error) {
    showMessage(message, error.message, "error");
  }
}

main();

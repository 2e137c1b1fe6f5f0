// The "Automatic sync" page: Connections > Calendar / CRM, Sync settings > Calendar.

import { api, ApiError, errorText, notAvailable } from "./api.js";
import { ensureSignedIn } from "./auth.js";
import { $, el, busy, clearMessage, confirmDialog, connectionSign, menuButton, plural,
  showFieldErrors, showMessage, tabs, when } from "./ui.js";
import { followJob, progressBar, runHistory, runResult } from "./runs.js";
import { settingsForm } from "./settings-form.js";

const state = { me: null, info: null, presets: null, busy: false, settings: null };
const pageMessage = $("#message");
const calMessage = $("#calendar-message");
const syncMessage = $("#sync-message");

// ---------- Connections > Calendar ----------

function providers() { return (state.info && state.info.calendar_providers) || []; }
function provider(key) { return providers().find((p) => p.key === key) || null; }

function providerHint() {
  const p = provider($("#provider").value);
  $("#provider-hint").textContent = !p ? ""
    : p.method === "oauth"
      ? `You will go to ${p.label} to grant calsync access, then come back to this page.`
      : "You will enter your calendar server's address, your user name and your password.";
}

async function loadConnections() {
  try {
    state.info = await api.get("/api/connections");
  } catch (error) {
    state.info = null;
    showMessage(calMessage, errorText(error, "connecting a calendar"), error.routeMissing ? "warning" : "error");
    $("#provider-form").hidden = true;
    $("#crm-form").hidden = true;
    showMessage($("#crm-message"), errorText(error, "entering CRM credentials"), error.routeMissing ? "warning" : "error");
    return;
  }
  renderCalendar();
  renderCustomUrl();
  renderCrm();
  if (state.form) state.form.setTwoWay(twoWayCapable());
}

function renderCalendar() {
  const cal = state.info.calendar;
  $("#calendar-sign").replaceChildren(connectionSign(cal, { none: "Not connected" }));
  $("#calendar-account").textContent = cal
    ? [cal.provider_label, cal.account].filter(Boolean).join(" · ") : "Choose your calendar provider and select Connect.";
  const select = $("#provider");
  const chosen = select.value || (cal && cal.provider);
  select.replaceChildren(...providers().map((p) => el("option", { value: p.key }, p.label)));
  if (chosen && provider(chosen)) select.value = chosen;
  if (!providers().length) {
    showMessage(calMessage, "No calendar provider is set up on this server. Ask your administrator.", "warning");
  }
  providerHint();
  const healthy = cal && cal.status === "connected";
  $("#provider-form").hidden = healthy;
  if (cal && !healthy) {
    showMessage(calMessage, cal.status_message || "Your calendar connection needs attention: connect it again.", "warning");
  }
  $("#sync-block").hidden = !cal;
  $("#auto-sync").checked = Boolean(cal && cal.auto_sync_enabled);
  $("#sync-now").disabled = state.busy || !healthy;
}

async function startConnect(event) {
  event.preventDefault();
  clearMessage(calMessage);
  const p = provider($("#provider").value);
  if (!p) { showMessage(calMessage, "Choose your calendar provider first.", "error"); return; }
  if (p.method === "oauth") {
    await busy($("#connect-button"), async () => {
      const reply = await api.post("/api/connections/calendar/oauth", { provider: p.key });
      location.assign(reply.authorize_url);
    }, calMessage);
    return;
  }
  await openManualForm(p);
}

async function openManualForm(p) {
  const form = $("#manual-form");
  resetCalendarChoice();
  if (state.presets === null) {
    try { state.presets = await api.get("/api/connections/calendar/caldav/presets"); } catch { state.presets = []; }
  }
  const preset = (state.presets || []).find((x) => x.key === p.key);
  const server = $("#caldav-server");
  if (preset && preset.server_url && !server.value) server.value = preset.server_url;
  $("#caldav-server-hint").textContent = (preset && preset.hint)
    || "The address of your CalDAV server, for example https://caldav.example.com/.";
  $("#manual-title").textContent = `Enter your ${p.label} details`;
  form.hidden = false;
  (server.value ? $("#caldav-user") : server).focus();
}

function resetCalendarChoice() {
  $("#caldav-calendar-field").hidden = true;
  $("#caldav-calendar").replaceChildren();
}

function manualValues() {
  const form = $("#manual-form");
  const values = {
    server_url: $("#caldav-server").value.trim(),
    username: $("#caldav-user").value.trim(),
    password: $("#caldav-password").value,
  };
  const missing = {};
  if (!values.server_url) missing.server_url = "Enter your calendar server's address.";
  if (!values.username) missing.username = "Enter your user name.";
  if (!values.password) missing.password = "Enter your password.";
  showFieldErrors(form, missing);
  if (Object.keys(missing).length) throw new Error(Object.values(missing).join(" "));
  return values;
}

async function submitManual(event) {
  event.preventDefault();
  const form = $("#manual-form");
  const button = $("#manual-connect");
  clearMessage(calMessage);
  await busy(button, async () => {
    const values = manualValues();
    let calendarUrl = $("#caldav-calendar-field").hidden ? null : $("#caldav-calendar").value;
    try {
      if (!calendarUrl) {
        showMessage(calMessage, "Looking for your calendars…", "info");
        const found = await api.post("/api/connections/calendar/caldav/discover", values);
        const calendars = (found && found.calendars) || [];
        if (!calendars.length) {
          throw new Error("No calendar was found for this account on this server. Check the server URL, or create a calendar first.");
        }
        if (calendars.length > 1) {
          $("#caldav-calendar").replaceChildren(...calendars.map((c) => el("option", { value: c.url }, c.name || c.url)));
          $("#caldav-calendar-field").hidden = false;
          showMessage(calMessage, `${plural(calendars.length, "calendar")} found. Choose the one to sync, then select Connect.`, "info");
          $("#caldav-calendar").focus();
          return;
        }
        calendarUrl = calendars[0].url;
      }
      await api.post("/api/connections/calendar/caldav", { ...values, calendar_url: calendarUrl });
    } catch (error) {
      showFieldErrors(form, error.fields || {});
      throw new Error(errorText(error, "connecting a calendar server"));
    }
    $("#caldav-password").value = "";
    form.hidden = true;
    resetCalendarChoice();
    showMessage(calMessage, "Connected. Select Sync calendar now to start syncing.", "success");
    await loadConnections();
    $("#sync-now").focus();
  }, calMessage);
}

// ---------- Custom URL ----------

function renderCustomUrl() {
  const crm = state.info.crm_info || {};
  const block = $("#custom-url-block");
  block.hidden = !crm.needs_url;
  if (!crm.needs_url) return;
  const check = $("#custom-url-check");
  const input = $("#custom-url");
  input.value = crm.url || "";
  if (!state.customUrlTouched) check.checked = Boolean(crm.url);
  $("#custom-url-field").hidden = !check.checked;
  const admin = state.me.is_admin;
  input.readOnly = !admin;
  $("#custom-url-save").hidden = !admin;
  $("#custom-url-hint").textContent = admin
    ? `${crm.label || "Your CRM"} needs its own address; it applies to everyone in your organization. If you are unsure, leave it blank.`
    : `Your administrator sets ${crm.label || "your CRM"}'s address. If you are unsure, leave it blank.`;
}

async function saveCustomUrl(event) {
  event.preventDefault();
  const region = $("#custom-url-message");
  await busy($("#custom-url-save"), async () => {
    const url = $("#custom-url").value.trim();
    try {
      await api.patch("/api/organization", { crm_url: url || null });
    } catch (error) {
      showFieldErrors($("#custom-url-field"), error.fields || {});
      throw error;
    }
    showFieldErrors($("#custom-url-field"), {});
    showMessage(region, "Custom URL saved.", "success");
    await loadConnections();
  }, region);
}

// ---------- Sync now, cleanup, reset ----------

function setBusy(value) {
  state.busy = value;
  const cal = state.info && state.info.calendar;
  $("#sync-now").disabled = value || !(cal && cal.status === "connected");
  // aria-disabled, not disabled: a disabled button drops keyboard focus to <body> while the
  // action it started (and its confirmation dialog) runs.
  $("#sync-more").setAttribute("aria-disabled", String(value));
}

async function runJob(reply, label) {
  const bar = progressBar(label);
  $("#sync-progress").replaceChildren(bar.node);
  bar.update({ status: "queued" });
  try {
    return await followJob(reply.job_id, (job) => bar.update(job));
  } finally {
    $("#sync-progress").replaceChildren();
  }
}

async function showRun(runId, { focus = false } = {}) {
  const run = await api.get(`/api/runs/${encodeURIComponent(runId)}`);
  $("#result").replaceChildren(runResult(run));
  $("#result-card").hidden = false;
  if (focus) $("#result-title").scrollIntoView({ block: "nearest" });
  return run;
}

async function syncNow() {
  clearMessage(syncMessage);
  setBusy(true);
  try {
    const reply = await api.post("/api/sync");
    showMessage(syncMessage, reply.absorbed
      ? "A sync was already on its way: showing its progress."
      : "Sync started.", "info");
    const job = await runJob(reply, "Sync progress");
    const run = await showRun(reply.run_id || (job && job.run && job.run.id), { focus: true });
    const sentences = {
      succeeded: "Sync finished.",
      partial: "Sync finished, but some changes could not be copied: see the errors below.",
      failed: (run.errors && run.errors[0] && run.errors[0].message) || "Sync failed.",
    };
    showMessage(syncMessage, sentences[run.status] || "Sync finished.",
      run.status === "succeeded" ? "success" : run.status === "partial" ? "warning" : "error");
  } catch (error) {
    showMessage(syncMessage, errorText(error, "syncing now"), "error");
  } finally {
    setBusy(false);
    await Promise.all([loadHistory(), loadConnections()]);
  }
}

// The preview a cleanup found: from the reply itself or from its run's counts.
function previewOf(...sources) {
  for (const s of sources) {
    if (!s) continue;
    if (Array.isArray(s.groups)) return s;
    if (s.preview && Array.isArray(s.preview.groups)) return s.preview;
    if (s.counts && Array.isArray(s.counts.groups)) return s.counts;
  }
  return null;
}

const SIDE = { calendar: "calendar", crm: "CRM" };
const ACTION = {
  keep: "kept",
  remove: "removed",
  similar: "only similar: left alone",
  protected: "protected: left alone",
};

function describeItem(item) {
  const start = item.start ? `, ${when(item.start)}` : "";
  const action = ACTION[item.action] || item.action;
  const reason = item.reason ? ` (${item.reason})` : "";
  return `${item.title || "Untitled event"}${start} in the ${SIDE[item.side] || item.side}: ${action}${reason}`;
}

function previewBody(preview) {
  const groups = preview.groups || [];
  const toRemove = groups.flatMap((g) => g.items || []).filter((i) => i.action === "remove").length;
  const shown = groups.slice(0, 100);
  return {
    toRemove,
    node: el("div", {},
      el("p", {}, `calsync found ${plural(toRemove, "duplicate")} in ${plural(groups.length, "group")}. Nothing has been removed yet.`),
      el("ul", { class: "found cleanup-preview" }, shown.map((g) => el("li", {},
        el("ul", { class: "plain" }, (g.items || []).map((i) => el("li", { "data-action": i.action }, describeItem(i))))))),
      groups.length > shown.length ? el("p", { class: "small muted" }, `…and ${groups.length - shown.length} more groups.`) : null,
      el("p", {}, `Remove ${toRemove === 1 ? "this duplicate" : "these duplicates"}?`)),
  };
}

async function runCleanup() {
  clearMessage(syncMessage);
  setBusy(true);
  try {
    showMessage(syncMessage, "Looking for duplicate events… nothing is removed yet.", "info");
    let reply;
    try {
      reply = await api.post("/api/cleanup/preview");
    } catch (error) {
      if (error instanceof ApiError && error.status === 404 && error.routeMissing) {
        showMessage(syncMessage, notAvailable("duplicate cleanup"), "warning");
        return;
      }
      throw error;
    }
    let job = null;
    if (reply && reply.job_id) job = await runJob(reply, "Duplicate cleanup progress");
    const runId = (reply && (reply.run_id || reply.preview_id)) || (job && job.run && job.run.id) || null;
    const run = runId ? await api.get(`/api/runs/${encodeURIComponent(runId)}`) : null;
    if (run && run.status === "failed") {
      throw new Error((run.errors && run.errors[0] && run.errors[0].message) || "The search for duplicates failed. Try again in a minute.");
    }
    const preview = previewOf(reply, job && job.run, run);
    clearMessage(syncMessage);
    const body = preview ? previewBody(preview) : { toRemove: 0, node: null };
    if (!body.toRemove) {
      await confirmDialog({ title: "No duplicates found", body: "calsync found no duplicate events between your calendar and the CRM. Nothing was removed.", confirm: null, cancel: "Close" });
      showMessage(syncMessage, "No duplicates found. Nothing was removed.", "success");
      return;
    }
    const yes = await confirmDialog({ title: "Run duplicate cleanup", body: body.node, confirm: "Yes", cancel: "No" });
    if (!yes) { showMessage(syncMessage, "Duplicate cleanup cancelled. Nothing was removed.", "info"); return; }
    const done = await api.post(`/api/cleanup/${encodeURIComponent(runId)}/confirm`);
    let finalJob = null;
    if (done && done.job_id) finalJob = await runJob(done, "Duplicate cleanup progress");
    const finalRun = (done && done.run_id) || (finalJob && finalJob.run && finalJob.run.id) || runId;
    const shownRun = await showRun(finalRun, { focus: true });
    showMessage(syncMessage, shownRun.status === "failed"
      ? ((shownRun.errors && shownRun.errors[0] && shownRun.errors[0].message) || "Duplicate cleanup failed.")
      : "Duplicate cleanup finished.", shownRun.status === "failed" ? "error" : "success");
  } catch (error) {
    showMessage(syncMessage, errorText(error, "duplicate cleanup"), "error");
  } finally {
    setBusy(false);
    await loadHistory();
  }
}

async function resetSync() {
  clearMessage(syncMessage);
  setBusy(true);
  try {
    let preview;
    try {
      preview = await api.get("/api/reset/preview");
    } catch (error) {
      if (error instanceof ApiError && error.status === 404 && error.routeMissing) {
        showMessage(syncMessage, notAvailable("resetting calendar sync"), "warning");
        return;
      }
      throw error;
    }
    const links = preview && (preview.links ?? preview.linked ?? preview.link_count);
    const text = (preview && preview.message)
      || `calsync forgets which calendar events and CRM meetings belong together${Number.isFinite(links) ? ` (${plural(links, "linked pair")})` : ""} and starts again with the next sync. Nothing is deleted in your calendar or your CRM.`;
    const yes = await confirmDialog({ title: "Reset calendar sync", body: el("div", {}, el("p", {}, text), el("p", {}, "Reset calendar sync?")), confirm: "Yes", cancel: "No" });
    if (!yes) { showMessage(syncMessage, "Reset cancelled. Nothing was changed.", "info"); return; }
    const reply = await api.post("/api/reset");
    let job = null;
    if (reply && reply.job_id) job = await runJob(reply, "Reset progress");
    const runId = (reply && reply.run_id) || (job && job.run && job.run.id);
    if (runId) {
      const run = await showRun(runId);
      if (run.status === "failed") {
        throw new Error((run.errors && run.errors[0] && run.errors[0].message) || "The reset failed. Try again in a minute.");
      }
    }
    showMessage(syncMessage, runId ? "Calendar sync was reset: see the result below."
      : "Calendar sync was reset. Select Sync calendar now to sync again.", "success");
  } catch (error) {
    showMessage(syncMessage, errorText(error, "resetting calendar sync"), "error");
  } finally {
    setBusy(false);
    await loadHistory();
  }
}

async function toggleAutoSync() {
  const box = $("#auto-sync");
  const wanted = box.checked;
  box.disabled = true;
  try {
    await api.patch("/api/connections/calendar", { auto_sync_enabled: wanted });
    const minutes = state.me.settings && state.me.settings.auto_sync_interval_minutes;
    showMessage(syncMessage, wanted
      ? `Automatic calendar sync is on${minutes ? `: calsync syncs about every ${plural(minutes, "minute")}` : ""}.`
      : "Automatic calendar sync is off. Use Sync calendar now to sync.", "success");
  } catch (error) {
    box.checked = !wanted;
    showMessage(syncMessage, errorText(error, "automatic calendar sync"), "error");
  } finally {
    box.disabled = false;
  }
}

async function disconnectCalendar() {
  const yes = await confirmDialog({ title: "Disconnect calendar", body: "calsync stops syncing your calendar and forgets its password or access. Events already synced stay where they are. Disconnect?", confirm: "Yes", cancel: "No" });
  if (!yes) return;
  try {
    await api.delete("/api/connections/calendar");
    showMessage(calMessage, "Your calendar is disconnected.", "info");
  } catch (error) {
    showMessage(calMessage, errorText(error, "disconnecting a calendar"), "error");
  }
  await loadConnections();
}

// ---------- History ----------

async function loadHistory() {
  const box = $("#history");
  box.classList.remove("loading");
  try {
    const runs = await api.get("/api/runs?limit=20");
    box.replaceChildren(runHistory(runs, (run) => showRun(run.id, { focus: true })));
  } catch (error) {
    box.replaceChildren(el("p", { class: "muted" }, errorText(error, "sync history")));
  }
}

// ---------- Connections > CRM ----------

// CRMs that connect with the user's Microsoft sign-in, not a user name and password
// (POST /api/connections/crm/oauth); "sandbox-dynamics" is the development sandbox's.
const MICROSOFT_SIGN_IN_CRMS = new Set(["dynamics", "sandbox-dynamics"]);

function renderCrm() {
  const info = state.info.crm_info || {};
  const conn = state.info.crm_connection;
  $("#crm-sign").replaceChildren(connectionSign(conn, { none: "Not connected" }));
  $("#crm-title").textContent = info.label ? `${info.label} account` : "CRM account";
  const form = $("#crm-form");
  const signIn = $("#crm-signin");
  $("#crm-account").hidden = true;
  if (!info.type) {
    $("#crm-about").textContent = state.me.is_admin
      ? "Choose your organization's CRM on the Administration page first."
      : "Your administrator has not chosen your organization's CRM yet.";
    form.hidden = true;
    signIn.hidden = true;
    return;
  }
  if (MICROSOFT_SIGN_IN_CRMS.has(info.type)) {
    renderCrmSignIn(info, conn);
    return;
  }
  signIn.hidden = true;
  form.hidden = false;
  $("#crm-about").textContent = `Your organization uses ${info.label}${info.url ? ` at ${info.url}` : ""}. Enter your own ${info.label} user name and password.`;
  if (info.type === "sandbox") {
    // Development only: the sandbox's emulated CRM has one demo account.
    $("#crm-about").textContent += ' Sandbox CRM: user name "demo", password "demo".';
    if (!conn && !$("#crm-user").value) $("#crm-user").value = "demo";
  }
  if (conn) {
    if (!$("#crm-user").value) $("#crm-user").value = conn.account || "";
    const kind = conn.status === "connected" ? "success" : "warning";
    showMessage($("#crm-message"), conn.status_message || (conn.status === "connected" ? "Connected." : "Your CRM connection needs attention: enter your credentials again."), kind);
  }
  $("#crm-remove").hidden = !conn;
}

function renderCrmSignIn(info, conn) {
  $("#crm-form").hidden = true;
  $("#crm-signin").hidden = false;
  $("#crm-about").textContent = `Your organization uses ${info.label}${info.url ? ` at ${info.url}` : ""}. It connects with your Microsoft work account, not a user name and password.`;
  const account = $("#crm-account");
  account.hidden = !conn;
  account.textContent = conn ? `Signed in as ${conn.account}` : "";
  if (conn) {
    const healthy = conn.status === "connected";
    showMessage($("#crm-message"), conn.status_message || (healthy ? "Connected."
      : 'Your CRM connection needs attention: select "Sign in with Microsoft" again.'), healthy ? "success" : "warning");
  }
  $("#crm-signin-remove").hidden = !conn;
}

async function signInToCrm() {
  const region = $("#crm-message");
  clearMessage(region);
  await busy($("#crm-signin-button"), async () => {
    let reply;
    try {
      reply = await api.post("/api/connections/crm/oauth");
    } catch (error) {
      throw new Error(errorText(error, "signing in to your CRM with Microsoft"));
    }
    location.assign(reply.authorize_url);
  }, region);
}

async function saveCrm(event) {
  event.preventDefault();
  const form = $("#crm-form");
  const region = $("#crm-message");
  await busy($("#crm-save"), async () => {
    const values = { user_name: $("#crm-user").value.trim(), password: $("#crm-password").value };
    const missing = {};
    if (!values.user_name) missing.user_name = "Enter your CRM user name.";
    if (!values.password) missing.password = "Enter your CRM password.";
    showFieldErrors(form, missing);
    if (Object.keys(missing).length) throw new Error(Object.values(missing).join(" "));
    showMessage(region, "Testing your credentials with your CRM…", "info");
    let conn;
    try {
      conn = await api.put("/api/connections/crm", values);
    } catch (error) {
      showFieldErrors(form, error.fields || {});
      throw new Error(errorText(error, "entering CRM credentials"));
    }
    $("#crm-password").value = "";
    state.info.crm_connection = conn;
    renderCrm();
    showMessage(region, `Connected. ${conn.status_message || ""}`.trim(), "success");
  }, region);
}

async function removeCrm() {
  const signedIn = !$("#crm-signin").hidden;
  const yes = await confirmDialog(signedIn
    ? { title: "Remove CRM connection", body: 'calsync stops syncing with your CRM until you select "Sign in with Microsoft" again. Remove?', confirm: "Yes", cancel: "No" }
    : { title: "Remove CRM credentials", body: "calsync stops syncing with your CRM until you enter them again. Remove?", confirm: "Yes", cancel: "No" });
  if (!yes) return;
  try {
    await api.delete("/api/connections/crm");
    $("#crm-user").value = "";
    clearMessage($("#crm-message"));
  } catch (error) {
    showMessage($("#crm-message"), errorText(error, "removing CRM credentials"), "error");
  }
  await loadConnections();
}

// ---------- Sync settings > Calendar ----------

function twoWayCapable() {
  const cal = state.info && state.info.calendar;
  if (!cal) return null;
  const p = provider(cal.provider);
  return p ? Boolean(p.two_way) : null;
}

function renderSettings() {
  const me = state.me;
  const profile = me.effective_profile || { is_global: true, name: "Global settings" };
  $("#settings-source").textContent = profile.is_global ? "Global settings" : `Profile: ${profile.name}`;
  let note;
  if (!me.is_admin) {
    note = "Your administrator manages these settings.";
  } else if (profile.is_global) {
    note = "You are an administrator: these are your organization's global settings. Saving them changes them for everyone without a sync profile.";
  } else {
    note = `You are an administrator: these settings come from the sync profile "${profile.name}". Saving them changes them for everyone on this profile.`;
  }
  state.form = settingsForm({
    settings: me.settings,
    editable: me.is_admin,
    twoWay: twoWayCapable(),
    note,
    onSave: async (values) => {
      if (profile.is_global) return api.patch("/api/organization/settings", values);
      const saved = await api.patch(`/api/profiles/${profile.id}`, { settings: values });
      return saved.settings;
    },
  });
  $("#settings").replaceChildren(state.form.node);
}

// ---------- Page ----------

// The outcome of a sign-in the provider sent the browser back from; the CRM's is shown
// once its connection is loaded (`showCrmOutcome`).
function readReturn() {
  const params = new URLSearchParams(location.search);
  const tab = params.get("tab");
  if (params.get("connected") === "calendar") {
    showMessage(calMessage, "Connected. Select Sync calendar now to start syncing.", "success");
  } else if (params.get("connected") === "crm") {
    state.crmOutcome = { kind: "success", text: "Connected." };
  } else if (params.get("error") && tab === "crm") {
    state.crmOutcome = { kind: "error", text: params.get("error") };
  } else if (params.get("error")) {
    showMessage(calMessage, params.get("error"), "error");
  }
  if (params.has("connected") || params.has("error")) {
    params.delete("connected");
    params.delete("error");
    const rest = params.toString();
    history.replaceState(null, "", `${location.pathname}${rest ? `?${rest}` : ""}`);
  }
  return tab;
}

function showCrmOutcome() {
  const outcome = state.crmOutcome;
  if (!outcome) return;
  state.crmOutcome = null;
  const conn = state.info && state.info.crm_connection;
  // A success shows what the live test said ("Connected to ... as ...").
  const text = outcome.kind === "success" && conn && conn.status_message
    ? conn.status_message : outcome.text;
  showMessage($("#crm-message"), text, outcome.kind);
  if (outcome.kind === "error" && !$("#crm-signin").hidden) $("#crm-signin-button").focus();
}

function wire() {
  tabs($("#main-tabs"));
  tabs($("#connection-tabs"));
  tabs($("#settings-tabs"));
  $("#provider").addEventListener("change", () => { providerHint(); $("#manual-form").hidden = true; });
  $("#provider-form").addEventListener("submit", startConnect);
  $("#manual-form").addEventListener("submit", submitManual);
  for (const id of ["#caldav-server", "#caldav-user", "#caldav-password"]) {
    $(id).addEventListener("input", resetCalendarChoice);
  }
  $("#manual-cancel").addEventListener("click", () => { $("#manual-form").hidden = true; clearMessage(calMessage); $("#provider").focus(); });
  $("#custom-url-check").addEventListener("change", () => {
    state.customUrlTouched = true;
    $("#custom-url-field").hidden = !$("#custom-url-check").checked;
  });
  $("#custom-url-field").addEventListener("submit", saveCustomUrl);
  $("#auto-sync").addEventListener("change", toggleAutoSync);
  $("#sync-now").addEventListener("click", syncNow);
  menuButton($("#sync-more"), $("#sync-menu"));
  $("#run-cleanup").addEventListener("click", runCleanup);
  $("#reset-sync").addEventListener("click", resetSync);
  $("#disconnect-calendar").addEventListener("click", disconnectCalendar);
  $("#history-refresh").addEventListener("click", loadHistory);
  $("#crm-form").addEventListener("submit", saveCrm);
  $("#crm-remove").addEventListener("click", removeCrm);
  $("#crm-signin-button").addEventListener("click", signInToCrm);
  $("#crm-signin-remove").addEventListener("click", removeCrm);
}

async function main() {
  wire();
  const tab = readReturn();
  try {
    state.me = await ensureSignedIn($("#signin"));
  } catch (error) {
    showMessage(pageMessage, error.message, "error");
    return;
  }
  $("#content").hidden = false;
  $("#who").textContent = state.me.name ? `${state.me.name} (${state.me.email})` : state.me.email;
  $("#admin-link").hidden = !state.me.is_admin;
  if (tab === "settings") $("#tab-settings").click();
  if (tab === "crm") $("#tab-crm").click();
  await loadConnections();
  showCrmOutcome();
  renderSettings();
  await loadHistory();
  document.body.dataset.ready = "true";
}

main();

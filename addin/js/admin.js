// Administration: users and their sync profile, global settings, sync profiles, the CRM.

import { api } from "./api.js";
import { ensureSignedIn } from "./auth.js";
import { $, el, busy, clearMessage, confirmDialog, connectionSign, runBadge, showFieldErrors,
  showMessage, tabs, when } from "./ui.js";
import { settingsForm } from "./settings-form.js";

const state = { me: null, org: null, profiles: [], users: [] };

// ---------- CRM ----------

function renderCrm() {
  const org = state.org;
  const select = $("#crm-type");
  select.replaceChildren(
    el("option", { value: "" }, "None chosen yet"),
    ...org.crm_choices.map((c) => el("option", { value: c.type }, c.label)));
  select.value = org.crm_type || "";
  $("#crm-url").value = org.crm_url || "";
  crmUrlVisibility();
}

function crmUrlVisibility() {
  const choice = state.org.crm_choices.find((c) => c.type === $("#crm-type").value);
  $("#crm-url-field").hidden = !(choice && choice.needs_url);
}

async function saveCrm(event) {
  event.preventDefault();
  const form = $("#crm-form");
  const region = $("#crm-message");
  await busy($("#crm-save"), async () => {
    const type = $("#crm-type").value || null;
    const body = { crm_type: type };
    if (!$("#crm-url-field").hidden) body.crm_url = $("#crm-url").value.trim() || null;
    try {
      state.org = await api.patch("/api/organization", body);
    } catch (error) {
      showFieldErrors(form, error.fields || {});
      throw error;
    }
    showFieldErrors(form, {});
    renderCrm();
    showMessage(region, "CRM saved. Each user can now enter their CRM credentials on the Automatic sync page.", "success");
  }, region);
}

// ---------- Global settings ----------

async function renderGlobal() {
  const box = $("#global-settings");
  box.classList.remove("loading");
  try {
    const settings = await api.get("/api/organization/settings");
    const form = settingsForm({
      settings,
      onSave: (values) => api.patch("/api/organization/settings", values),
      note: "Two way applies only to users whose calendar is Google, Outlook or Office 365.",
    });
    box.replaceChildren(form.node);
  } catch (error) {
    box.replaceChildren(el("p", { class: "message error" }, error.message));
  }
}

// ---------- Profiles ----------

async function loadProfiles() {
  state.profiles = await api.get("/api/profiles");
}

function renderProfiles() {
  const list = state.profiles.filter((p) => !p.is_global);
  const box = $("#profiles");
  box.classList.remove("loading");
  if (!list.length) {
    box.replaceChildren(el("p", { class: "muted" }, "No sync profiles yet: everyone uses the global settings."));
    return;
  }
  box.replaceChildren(el("div", { class: "table-wrap" }, el("table", { class: "profiles" },
    el("caption", { class: "visually-hidden" }, "Sync profiles"),
    el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Name"), el("th", { scope: "col", class: "num" }, "Users"),
      el("th", { scope: "col" }, "Direction"), el("th", { scope: "col" }, el("span", { class: "visually-hidden" }, "Actions")))),
    el("tbody", {}, list.map((p) => el("tr", { "data-profile-id": p.id },
      el("th", { scope: "row" }, p.name),
      el("td", { class: "num" }, String(p.user_count)),
      el("td", {}, directionLabel(p.settings.direction)),
      el("td", {}, el("div", { class: "row" },
        el("button", { type: "button", onclick: () => editProfile(p) }, "Edit", el("span", { class: "visually-hidden" }, ` ${p.name}`)),
        el("button", { type: "button", class: "danger", onclick: () => deleteProfile(p) }, "Delete", el("span", { class: "visually-hidden" }, ` ${p.name}`))))))))));
}

function directionLabel(value) {
  return { calendar_to_crm: "One way (calendar to CRM)", crm_to_calendar: "One way (CRM to calendar)", two_way: "Two way" }[value] || value;
}

async function refreshProfiles() {
  await loadProfiles();
  renderProfiles();
  renderUsers();
}

async function createProfile(event) {
  event.preventDefault();
  const region = $("#profiles-message");
  const input = $("#new-profile-name");
  await busy($("#create-profile"), async () => {
    const name = input.value.trim();
    if (!name) {
      showFieldErrors($("#new-profile"), { name: "Enter a name for the new profile." });
      throw new Error("Enter a name for the new profile.");
    }
    let profile;
    try {
      profile = await api.post("/api/profiles", { name });
    } catch (error) {
      showFieldErrors($("#new-profile"), error.fields || {});
      throw error;
    }
    showFieldErrors($("#new-profile"), {});
    input.value = "";
    showMessage(region, `Profile "${profile.name}" created. Adjust its settings below, then assign it to users.`, "success");
    await refreshProfiles();
    editProfile(profile);
  }, region);
}

function editProfile(profile) {
  const name = el("input", { type: "text", id: "profile-name", name: "name", maxlength: 100, value: profile.name });
  const form = settingsForm({
    settings: profile.settings,
    extra: el("div", { class: "field" }, el("label", { for: "profile-name" }, "Profile name"), name),
    saveLabel: "Save profile",
    onSave: async (values) => {
      const saved = await api.patch(`/api/profiles/${profile.id}`, { name: name.value.trim(), settings: values });
      await refreshProfiles();
      $("#profile-edit-title").textContent = `Edit profile "${saved.name}"`;
      return saved.settings;
    },
  });
  $("#profile-edit-title").textContent = `Edit profile "${profile.name}"`;
  $("#profile-form").replaceChildren(form.node);
  $("#profile-editor").hidden = false;
  name.focus();
}

async function deleteProfile(profile) {
  const region = $("#profiles-message");
  const yes = await confirmDialog({
    title: "Delete sync profile",
    body: `Delete "${profile.name}"? Its ${profile.user_count === 1 ? "user goes" : "users go"} back to the global settings.`,
    confirm: "Yes", cancel: "No",
  });
  if (!yes) return;
  try {
    await api.delete(`/api/profiles/${profile.id}`);
    showMessage(region, `Profile "${profile.name}" deleted.`, "success");
    $("#profile-editor").hidden = true;
  } catch (error) {
    showMessage(region, error.message, "error");
  }
  await refreshProfiles();
}

// ---------- Users ----------

function connOf(user, kind) {
  const c = user.connections;
  if (c && kind in c) return c[kind];
  const key = kind === "calendar" ? "calendar" : "crm";
  if (key in user) return user[key];
  return undefined;
}

function needsAttention(user) {
  // The server decides (same rule as below); older servers send no flag.
  if (typeof user.attention === "boolean") return user.attention;
  const cal = connOf(user, "calendar");
  const crm = connOf(user, "crm");
  const run = user.last_run;
  return Boolean((cal && cal.status !== "connected") || (crm && crm.status !== "connected")
    || cal === null || crm === null || (run && run.status === "failed"));
}

function stateCell(conn) {
  if (conn === undefined) return el("span", { class: "muted" }, "—");
  const sign = connectionSign(conn);
  if (conn && conn.status !== "connected" && conn.status_message) {
    return el("div", {}, sign, el("div", { class: "small muted" }, conn.status_message));
  }
  return sign;
}

function renderUsers() {
  const box = $("#users");
  box.classList.remove("loading");
  const users = [...state.users].sort((a, b) => Number(needsAttention(b)) - Number(needsAttention(a)));
  const known = users.some((u) => connOf(u, "calendar") !== undefined || "last_run" in u);
  const attention = users.filter(needsAttention).length;
  $("#users-attention").textContent = known
    ? (attention ? `${attention} need${attention === 1 ? "s" : ""} attention` : "Everyone is connected")
    : "";
  const options = [["", "Global settings"], ...state.profiles.filter((p) => !p.is_global).map((p) => [String(p.id), p.name])];
  box.replaceChildren(
    ...(known ? [] : [el("p", { class: "message info small" }, "Connection states and last syncs are not available yet on this server.")]),
    el("div", { class: "table-wrap" }, el("table", { class: "users" },
      el("caption", { class: "visually-hidden" }, "Users of your organization"),
      el("thead", {}, el("tr", {},
        el("th", { scope: "col" }, "User"), el("th", { scope: "col" }, "Sync profile"),
        el("th", { scope: "col" }, "Calendar"), el("th", { scope: "col" }, "CRM"),
        el("th", { scope: "col" }, "Last sync"), el("th", { scope: "col" }, "Administrator"))),
      el("tbody", {}, users.map((u) => userRow(u, options))))));
}

function userRow(user, options) {
  const selectId = `profile-for-${user.id}`;
  const adminId = `admin-${user.id}`;
  const select = el("select", { id: selectId, "data-user-id": user.id },
    options.map(([value, text]) => el("option", { value }, text)));
  select.value = user.profile && !user.profile.is_global ? String(user.profile.id) : "";
  select.addEventListener("change", () => assignProfile(user, select));
  const admin = el("input", { type: "checkbox", id: adminId, checked: user.is_admin });
  admin.addEventListener("change", () => setAdmin(user, admin));
  const run = user.last_run;
  return el("tr", { "data-user-id": user.id, "data-attention": String(needsAttention(user)) },
    el("th", { scope: "row" }, el("div", {}, user.name || user.email), el("div", { class: "small muted" }, user.email)),
    el("td", {}, el("label", { for: selectId, class: "visually-hidden" }, `Sync profile for ${user.name || user.email}`), select),
    el("td", {}, stateCell(connOf(user, "calendar"))),
    el("td", {}, stateCell(connOf(user, "crm"))),
    el("td", {}, run === undefined ? el("span", { class: "muted" }, "—")
      : run === null ? el("span", { class: "muted" }, "Never")
        : el("div", {}, runBadge(run.status), el("div", { class: "small muted" }, when(run.finished_at || run.started_at || run.created_at)))),
    el("td", {}, el("div", { class: "check" }, admin, el("label", { for: adminId }, el("span", { class: "visually-hidden" }, `${user.name || user.email} is an `), "Administrator"))));
}

async function assignProfile(user, select) {
  const region = $("#users-message");
  const id = select.value ? Number(select.value) : null;
  select.disabled = true;
  try {
    const saved = await api.patch(`/api/users/${user.id}`, { sync_profile_id: id });
    Object.assign(user, saved);
    const profileName = saved.profile && !saved.profile.is_global ? `the sync profile "${saved.profile.name}"` : "the global settings";
    showMessage(region, `${user.name || user.email} now uses ${profileName}.`, "success");
    await loadProfiles();
    renderProfiles();
  } catch (error) {
    select.value = user.profile && !user.profile.is_global ? String(user.profile.id) : "";
    showMessage(region, error.message, "error");
  } finally {
    select.disabled = false;
  }
}

async function setAdmin(user, box) {
  const region = $("#users-message");
  box.disabled = true;
  try {
    const saved = await api.patch(`/api/users/${user.id}`, { is_admin: box.checked });
    Object.assign(user, saved);
    showMessage(region, `${user.name || user.email} is ${saved.is_admin ? "now" : "no longer"} an administrator.`, "success");
  } catch (error) {
    box.checked = user.is_admin;
    showMessage(region, error.message, "error");
  } finally {
    box.disabled = false;
  }
}

// ---------- Page ----------

async function main() {
  tabs($("#admin-tabs"));
  $("#crm-type").addEventListener("change", crmUrlVisibility);
  $("#crm-form").addEventListener("submit", saveCrm);
  $("#new-profile").addEventListener("submit", createProfile);
  let me;
  try {
    me = await ensureSignedIn($("#signin"));
  } catch (error) {
    showMessage($("#message"), error.message, "error");
    return;
  }
  state.me = me;
  $("#who").textContent = me.name ? `${me.name} (${me.email})` : me.email;
  if (!me.is_admin) {
    showMessage($("#message"), "Only an administrator of your organization can open this page. Ask your administrator to change these settings.", "error");
    return;
  }
  $("#content").hidden = false;
  clearMessage($("#message"));
  try {
    const [org, users] = await Promise.all([api.get("/api/organization"), api.get("/api/users"), loadProfiles()]);
    state.org = org;
    state.users = users;
  } catch (error) {
    showMessage($("#message"), error.message, "error");
    return;
  }
  renderCrm();
  renderProfiles();
  renderUsers();
  await renderGlobal();
  const tab = new URLSearchParams(location.search).get("tab");
  if (tab && $(`#tab-${tab}`)) $(`#tab-${tab}`).click();
  document.body.dataset.ready = "true";
}

main();

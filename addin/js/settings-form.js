// The "Sync settings" form, used on the Automatic sync page (a user's effective settings)
// and on the admin page (global settings and sync profiles).

import { el, busy, showMessage, showFieldErrors } from "./ui.js";

export const OPTIONS = {
  record_option: [["related_only", "Sync related calendar records only"], ["all", "Sync all"]],
  direction: [
    ["calendar_to_crm", "One way (calendar to CRM)"],
    ["crm_to_calendar", "One way (CRM to calendar)"],
    ["two_way", "Two way"],
  ],
  invitations: [["never", "Never"], ["always", "Always"], ["after_first_sync", "After first sync"]],
  private_events: [["busy", "Copy as a busy block"], ["full", "Copy in full"], ["skip", "Do not sync"]],
  conflict_policy: [["most_recent", "The most recent change wins"], ["calendar_wins", "The calendar wins"], ["crm_wins", "The CRM wins"]],
};

export const LABELS = {
  record_option: "Sync record option",
  direction: "Sync direction",
  sync_invitees: "Sync invitees",
  invitations: "Email invitations / updates",
  window_days_back: "Days back",
  window_days_ahead: "Days ahead",
  private_events: "Private events",
  conflict_policy: "Conflict policy",
  auto_sync_interval_minutes: "Automatic sync interval (minutes)",
};

const TWO_WAY_HINT = "Two way is offered only for Google, Outlook and Office 365 calendars.";

let counter = 0;

function select(id, name, options, hintId) {
  return el("select", { id, name, "aria-describedby": hintId || null },
    options.map(([value, text]) => el("option", { value }, text)));
}

function field(id, name, control, hint) {
  const hintId = hint ? `${id}-hint` : null;
  if (hintId) control.setAttribute("aria-describedby", hintId);
  return el("div", { class: "field", "data-setting": name },
    el("label", { for: id }, LABELS[name]), control,
    hint ? el("span", { class: "hint", id: hintId }, hint) : null);
}

// twoWay: true (the calendar can), false (it cannot: "Two way" not offered), null (unknown).
export function settingsForm({ settings, editable = true, twoWay = null, onSave, note = null,
  saveLabel = "Save settings", extra = null }) {
  const p = `sf${++counter}`;
  const ids = Object.fromEntries(Object.keys(LABELS).map((k) => [k, `${p}-${k}`]));
  const controls = {
    record_option: select(ids.record_option, "record_option", OPTIONS.record_option),
    direction: select(ids.direction, "direction", OPTIONS.direction),
    sync_invitees: el("input", { type: "checkbox", id: ids.sync_invitees, name: "sync_invitees" }),
    invitations: select(ids.invitations, "invitations", OPTIONS.invitations),
    window_days_back: el("input", { type: "number", id: ids.window_days_back, name: "window_days_back", min: 0, max: 3650, step: 1, inputmode: "numeric" }),
    window_days_ahead: el("input", { type: "number", id: ids.window_days_ahead, name: "window_days_ahead", min: 0, max: 3650, step: 1, inputmode: "numeric" }),
    private_events: select(ids.private_events, "private_events", OPTIONS.private_events),
    conflict_policy: select(ids.conflict_policy, "conflict_policy", OPTIONS.conflict_policy),
    auto_sync_interval_minutes: el("input", { type: "number", id: ids.auto_sync_interval_minutes, name: "auto_sync_interval_minutes", min: 5, max: 1440, step: 1, inputmode: "numeric" }),
  };
  const directionHint = el("span", { class: "hint", id: `${p}-direction-hint` }, TWO_WAY_HINT);
  controls.direction.setAttribute("aria-describedby", directionHint.id);
  const region = el("div", { class: "message", hidden: true });
  const save = el("button", { type: "submit", class: "primary" }, saveLabel);

  const form = el("form", { class: "settings-form", novalidate: true },
    extra,
    el("fieldset", { disabled: !editable },
      el("legend", { class: "visually-hidden" }, "Calendar sync settings"),
      el("div", { class: "form-grid" },
        field(ids.record_option, "record_option", controls.record_option,
          "Related records only: only events with invitees are synced. Sync all: all events are synced."),
        el("div", { class: "field", "data-setting": "direction" },
          el("label", { for: ids.direction }, LABELS.direction), controls.direction, directionHint),
        field(ids.invitations, "invitations", controls.invitations,
          "How email invitations and updates are handled when syncing from the calendar."),
        el("div", { class: "field", "data-setting": "sync_invitees" },
          el("span", { class: "label", "aria-hidden": "true" }, "Invitees"),
          el("div", { class: "check" }, controls.sync_invitees,
            el("label", { for: ids.sync_invitees }, LABELS.sync_invitees)),
          el("span", { class: "hint" }, "Copies invitee information from the CRM to the calendar."))),
      el("details", { class: "more" }, el("summary", {}, "More settings"),
        el("div", { class: "form-grid" },
          field(ids.window_days_back, "window_days_back", controls.window_days_back, "How many days of the past are synced."),
          field(ids.window_days_ahead, "window_days_ahead", controls.window_days_ahead, "How many days of the future are synced."),
          field(ids.private_events, "private_events", controls.private_events),
          field(ids.conflict_policy, "conflict_policy", controls.conflict_policy, "Who wins when an event changed on both sides."),
          field(ids.auto_sync_interval_minutes, "auto_sync_interval_minutes", controls.auto_sync_interval_minutes, "Between 5 and 1440 minutes."))),
    ),
    note ? el("p", { class: "message info settings-note" }, note) : null,
    region,
    el("div", { class: "actions" }, save));
  if (!editable) save.disabled = true;

  let twoWayAllowed = twoWay;
  const twoWayOption = [...controls.direction.options].find((o) => o.value === "two_way");

  function applyTwoWay(current) {
    // Not offered for a calendar that cannot do it, unless it is already chosen.
    const offer = twoWayAllowed !== false || current === "two_way";
    if (offer && !twoWayOption.parentNode) controls.direction.append(twoWayOption);
    if (!offer && twoWayOption.parentNode) twoWayOption.remove();
    directionHint.textContent = twoWayAllowed === false && current === "two_way"
      ? "Your calendar cannot sync two way: choose one way, or connect Google, Outlook or Office 365."
      : TWO_WAY_HINT;
  }

  function set(values) {
    applyTwoWay(values.direction);
    for (const [name, control] of Object.entries(controls)) {
      if (!(name in values)) continue;
      if (control.type === "checkbox") control.checked = Boolean(values[name]);
      else control.value = String(values[name]);
    }
  }

  function read() {
    const out = {};
    for (const [name, control] of Object.entries(controls)) {
      if (control.type === "checkbox") out[name] = control.checked;
      else if (control.type === "number") out[name] = control.value === "" ? null : Number(control.value);
      else out[name] = control.value;
    }
    return out;
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!editable || !onSave) return;
    busy(save, async () => {
      showFieldErrors(form, {});
      const values = read();
      for (const [name, value] of Object.entries(values)) {
        if (value === null || Number.isNaN(value)) {
          showFieldErrors(form, { [name]: `Enter a whole number for "${LABELS[name]}".` });
          throw new Error(`Enter a whole number for "${LABELS[name]}".`);
        }
      }
      try {
        const saved = await onSave(values);
        if (saved) set(saved);
        showMessage(region, "Settings saved.", "success");
      } catch (error) {
        showFieldErrors(form, error.fields || {});
        throw error;
      }
    }, region);
  });

  set(settings || {});
  return {
    node: form,
    set,
    setTwoWay(value) { twoWayAllowed = value; applyTwoWay(controls.direction.value); },
    read,
  };
}

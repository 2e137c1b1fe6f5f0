// Small DOM helpers shared by the pages: elements, messages, menus, tabs, dialogs.

export function $(selector, root = document) { return root.querySelector(selector); }
export function $$(selector, root = document) { return [...root.querySelectorAll(selector)]; }

// el("button", {class: "primary", onclick: fn}, "Save")
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      node.className = value;
    } else if (key === "dataset") {
      Object.assign(node.dataset, value);
    } else if (value === true) {
      node.setAttribute(key, "");
    } else {
      node.setAttribute(key, String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// Shows a sentence in a message region (role=alert for errors, status otherwise).
export function showMessage(region, text, kind = "info") {
  if (!region) return;
  region.className = `message ${kind}`;
  region.setAttribute("role", kind === "error" ? "alert" : "status");
  region.textContent = text || "";
  region.hidden = !text;
}

export function clearMessage(region) { showMessage(region, "", "info"); }

// Runs `work` with the button disabled and busy; errors go to `region` as sentences.
export async function busy(button, work, region = null) {
  if (button) { button.disabled = true; button.setAttribute("aria-busy", "true"); }
  try {
    return await work();
  } catch (error) {
    if (region) showMessage(region, error.message || String(error), "error");
    else throw error;
    return undefined;
  } finally {
    if (button) { button.disabled = false; button.removeAttribute("aria-busy"); }
  }
}

// Marks the inputs named in an API error's `fields` invalid, with their sentence.
export function showFieldErrors(form, fields = {}) {
  for (const node of $$("[aria-invalid]", form)) node.removeAttribute("aria-invalid");
  for (const node of $$(".field-error", form)) node.remove();
  for (const [name, text] of Object.entries(fields || {})) {
    const input = form.querySelector(`[name="${CSS.escape(name)}"]`);
    if (!input) continue;
    input.setAttribute("aria-invalid", "true");
    const id = `${input.id || name}-error`;
    const note = el("span", { class: "field-error", id }, text);
    input.insertAdjacentElement("afterend", note);
    input.setAttribute("aria-describedby", [input.getAttribute("aria-describedby"), id].filter(Boolean).join(" "));
  }
}

// A menu button: toggles `menu` (role=menu), arrow keys move, Escape closes.
export function menuButton(button, menu) {
  const items = () => $$('[role="menuitem"]', menu).filter((i) => !i.hidden && !i.disabled);
  const open = (focusLast = false) => {
    menu.hidden = false;
    button.setAttribute("aria-expanded", "true");
    const list = items();
    (focusLast ? list[list.length - 1] : list[0])?.focus();
  };
  const close = (refocus = true) => {
    if (menu.hidden) return;
    menu.hidden = true;
    button.setAttribute("aria-expanded", "false");
    if (refocus) button.focus();
  };
  button.setAttribute("aria-haspopup", "menu");
  button.setAttribute("aria-expanded", "false");
  menu.hidden = true;
  // aria-disabled (busy) keeps the button focusable but it opens nothing.
  const inactive = () => button.getAttribute("aria-disabled") === "true";
  button.addEventListener("click", () => (menu.hidden ? !inactive() && open() : close()));
  button.addEventListener("keydown", (event) => {
    if (inactive()) return;
    if (event.key === "ArrowDown") { event.preventDefault(); open(); }
    if (event.key === "ArrowUp") { event.preventDefault(); open(true); }
  });
  menu.addEventListener("keydown", (event) => {
    const list = items();
    const index = list.indexOf(document.activeElement);
    if (event.key === "ArrowDown") { event.preventDefault(); list[(index + 1) % list.length]?.focus(); }
    else if (event.key === "ArrowUp") { event.preventDefault(); list[(index - 1 + list.length) % list.length]?.focus(); }
    else if (event.key === "Home") { event.preventDefault(); list[0]?.focus(); }
    else if (event.key === "End") { event.preventDefault(); list[list.length - 1]?.focus(); }
    else if (event.key === "Escape") { event.preventDefault(); close(); }
    else if (event.key === "Tab") { close(false); }
  });
  // An activated item hides the menu, and focus inside a hidden menu would fall to <body>:
  // give it back to the menu button, which a dialog the item opens then returns it to.
  menu.addEventListener("click", (event) => {
    if (event.target.closest('[role="menuitem"]')) close();
  });
  document.addEventListener("click", (event) => {
    if (!menu.hidden && !menu.contains(event.target) && !button.contains(event.target)) close(false);
  });
  return { open, close };
}

// Tabs (WAI-ARIA pattern): `tablist` holds role=tab buttons with aria-controls.
export function tabs(tablist, onChange = () => {}) {
  const all = () => $$('[role="tab"]', tablist);
  const select = (tab, focus = false) => {
    for (const t of all()) {
      const selected = t === tab;
      t.setAttribute("aria-selected", String(selected));
      t.tabIndex = selected ? 0 : -1;
      const panel = document.getElementById(t.getAttribute("aria-controls"));
      if (panel) panel.hidden = !selected;
    }
    if (focus) tab.focus();
    onChange(tab);
  };
  tablist.addEventListener("click", (event) => {
    const tab = event.target.closest('[role="tab"]');
    if (tab) select(tab);
  });
  tablist.addEventListener("keydown", (event) => {
    const list = all();
    const index = list.indexOf(document.activeElement);
    if (index < 0) return;
    let next = null;
    if (event.key === "ArrowRight") next = list[(index + 1) % list.length];
    if (event.key === "ArrowLeft") next = list[(index - 1 + list.length) % list.length];
    if (event.key === "Home") next = list[0];
    if (event.key === "End") next = list[list.length - 1];
    if (next) { event.preventDefault(); select(next, true); }
  });
  const current = all().find((t) => t.getAttribute("aria-selected") === "true") || all()[0];
  if (current) select(current);
  return { select: (id) => select(document.getElementById(id)) };
}

// A modal dialog; resolves true when the user chooses the confirm button ("Yes").
// `body` is a string or nodes; `confirm` the confirm button's label.
export function confirmDialog({ title, body, confirm = "Yes", cancel = "Cancel", danger = false }) {
  return new Promise((resolve) => {
    const titleId = `dlg-${Math.random().toString(36).slice(2)}`;
    const yes = confirm ? el("button", { type: "button", class: "primary" }, confirm) : null;
    const no = el("button", { type: "button" }, cancel);
    const dialog = el("dialog", { "aria-labelledby": titleId },
      el("h2", { id: titleId }, title),
      el("div", { class: "dialog-body" }, typeof body === "string" ? el("p", {}, body) : body),
      el("div", { class: "actions" }, yes, no));
    const opener = document.activeElement;
    const finish = (value) => { dialog.close(); dialog.remove(); returnFocus(opener); resolve(value); };
    if (yes) yes.addEventListener("click", () => finish(true));
    no.addEventListener("click", () => finish(false));
    dialog.addEventListener("cancel", (event) => { event.preventDefault(); finish(false); });
    document.body.append(dialog);
    dialog.showModal();
    (yes || no).focus();
  });
}

// Focus goes back where it was before a dialog; an opener hidden meanwhile (an item of a
// menu that closed) hands it to the button that controls its menu.
function returnFocus(opener) {
  if (!opener || opener === document.body || !opener.isConnected) return;
  if (opener.checkVisibility()) { opener.focus(); return; }
  const menu = opener.closest('[role="menu"]');
  const button = menu && menu.id && document.querySelector(`[aria-controls="${CSS.escape(menu.id)}"]`);
  if (button && button.checkVisibility()) button.focus();
}

const dateFormat = new Intl.DateTimeFormat(undefined, {
  day: "numeric", month: "short", hour: "2-digit", minute: "2-digit",
});

export function when(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "—";
  const seconds = Math.round((Date.now() - date.getTime()) / 1000);
  if (seconds >= 0 && seconds < 60) return "just now";
  if (seconds >= 0 && seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  return dateFormat.format(date);
}

export function plural(n, one, many = `${one}s`) { return `${n} ${n === 1 ? one : many}`; }

// "Connected" or what is wrong, for a connection (or its absence).
export function connectionSign(conn, { none = "Not connected" } = {}) {
  if (!conn) return el("span", { class: "status-sign", "data-status": "none" }, el("span", { class: "dot", "aria-hidden": "true" }), none);
  const labels = {
    connected: ["ok", "Connected"],
    needs_reconnect: ["warn", "Needs reconnecting"],
    no_permission: ["bad", "Permission missing"],
    error: ["bad", "Not working"],
  };
  const [cls, text] = labels[conn.status] || ["bad", "Not working"];
  return el("span", { class: `status-sign ${cls}`, "data-status": conn.status },
    el("span", { class: "dot", "aria-hidden": "true" }), text);
}

const RUN_STATUS = {
  queued: ["info", "Waiting"],
  running: ["info", "Running"],
  succeeded: ["ok", "Succeeded"],
  partial: ["warn", "Finished with errors"],
  failed: ["bad", "Failed"],
  awaiting_confirmation: ["warn", "Waiting for you"],
};

export function runBadge(status) {
  const [cls, text] = RUN_STATUS[status] || ["", status || "Unknown"];
  return el("span", { class: `badge ${cls}` }, text);
}

export const RUN_KIND = { sync: "Sync", cleanup: "Duplicate cleanup", reset: "Reset" };
export const RUN_TRIGGER = {
  manual: "by you", automatic: "automatic", reset: "after a reset", button: "by you", schedule: "automatic", scheduled: "automatic",
  cron: "automatic", push: "after a change", webhook: "after a change", admin: "by an administrator",
};

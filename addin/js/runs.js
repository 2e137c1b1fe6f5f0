// Sync runs: following a job, its progress bar, a run's result, the history of runs.

import { api, ApiError } from "./api.js";
import { el, plural, runBadge, when, RUN_KIND, RUN_TRIGGER } from "./ui.js";

const FINAL_JOB = new Set(["finished", "failed", "canceled", "cancelled", "stopped", "succeeded", "partial"]);
const FINAL_RUN = new Set(["succeeded", "partial", "failed", "awaiting_confirmation", "cancelled", "canceled"]);

const PHASES = {
  queued: "Waiting for a free worker",
  starting: "Starting",
  listing: "Reading changes",
  reading: "Reading changes",
  planning: "Comparing calendar and CRM",
  writing: "Copying changes",
  finishing: "Finishing",
};

function sleep(ms) { return new Promise((resolve) => setTimeout(resolve, ms)); }

export function phaseLabel(job) {
  if (!job) return "Starting";
  if (job.phase) return PHASES[job.phase] || job.phase.charAt(0).toUpperCase() + job.phase.slice(1);
  if (job.status === "queued" || job.status === "scheduled" || job.status === "deferred") return PHASES.queued;
  return "Working";
}

// A progress bar with the phase and counts; update(job) moves it.
export function progressBar(label) {
  const bar = el("progress", { "aria-label": label });
  const phase = el("span", {}, "Starting");
  const counts = el("span", {});
  const node = el("div", { class: "progress", role: "group", "aria-label": label },
    bar, el("div", { class: "phase", "aria-live": "polite" }, phase, counts));
  return {
    node,
    update(job) {
      phase.textContent = phaseLabel(job);
      const total = Number(job && job.total) || 0;
      const done = Number(job && job.done) || 0;
      if (total > 0) {
        bar.max = total;
        bar.value = Math.min(done, total);
        counts.textContent = `${done} of ${total}`;
      } else {
        bar.removeAttribute("value");
        counts.textContent = "";
      }
    },
  };
}

// Polls GET /api/jobs/{id} until the job is over; returns the last job seen.
export async function followJob(jobId, onProgress = () => {}, { interval = 600 } = {}) {
  let last = null;
  for (;;) {
    try {
      last = await api.get(`/api/jobs/${encodeURIComponent(jobId)}`);
    } catch (error) {
      // A finished job's record expires; the run has the outcome.
      if (error instanceof ApiError && error.status === 404 && last) return last;
      throw error;
    }
    onProgress(last);
    const runStatus = last.run && last.run.status;
    if (FINAL_JOB.has(last.status) || FINAL_RUN.has(runStatus)) return last;
    await sleep(interval);
  }
}

function sideCounts(counts) {
  const c = counts || {};
  return ["created", "updated", "deleted", "linked"].map((k) => Number(c[k]) || 0);
}

export function runSummary(run) {
  const counts = run.counts || {};
  const cal = sideCounts(counts.calendar);
  const crm = sideCounts(counts.crm);
  const skipped = Object.values(counts.skipped || {}).reduce((a, b) => a + Number(b || 0), 0);
  const errors = (run.errors || []).length;
  if (run.status === "queued" || run.status === "running") return "In progress.";
  if (run.status === "failed" && errors) return run.errors[0].message;
  const parts = [];
  const changed = (arr) => arr[0] + arr[1] + arr[2];
  parts.push(`CRM: ${changed(crm) === 0 ? "no changes" : `${crm[0]} created, ${crm[1]} updated, ${crm[2]} deleted`}`);
  parts.push(`calendar: ${changed(cal) === 0 ? "no changes" : `${cal[0]} created, ${cal[1]} updated, ${cal[2]} deleted`}`);
  if (skipped) parts.push(`${skipped} skipped`);
  if (errors) parts.push(plural(errors, "error"));
  return `${parts.join("; ")}.`;
}

function describeError(error) {
  const what = error.title || error.event || error.item || null;
  const side = error.side === "calendar" ? "in the calendar" : error.side === "crm" ? "in the CRM" : "";
  const about = what ? `“${what}”${side ? ` ${side}` : ""}: ` : "";
  return `${about}${error.message || "This change could not be copied."}`;
}

// The full result of a run: counts on each side, skipped with reasons, notes, errors.
export function runResult(run) {
  const counts = run.counts || {};
  const cal = sideCounts(counts.calendar);
  const crm = sideCounts(counts.crm);
  const row = (name, values) => el("tr", {}, el("th", { scope: "row" }, name),
    ...values.map((v) => el("td", { class: "num" }, String(v))));
  const table = el("table", { class: "result-counts" },
    el("caption", { class: "visually-hidden" }, "Changes made by this run"),
    el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Where"),
      ...["Created", "Updated", "Deleted", "Linked"].map((h) => el("th", { scope: "col", class: "num" }, h)))),
    el("tbody", {}, row("Calendar", cal), row("CRM", crm)));
  const parts = [
    el("div", { class: "row" }, runBadge(run.status),
      el("span", { class: "small muted" }, `${RUN_KIND[run.kind] || run.kind || "Sync"} · ${when(run.finished_at || run.started_at || run.created_at)}`)),
    el("div", { class: "table-wrap" }, table),
  ];
  const skipped = Object.entries(counts.skipped || {});
  if (skipped.length) {
    parts.push(el("h3", {}, "Skipped"), el("ul", { class: "reasons" },
      skipped.map(([reason, n]) => el("li", {}, `${n} × ${reason}`))));
  }
  const notes = Object.entries(counts.notes || {});
  if (notes.length) {
    parts.push(el("h3", {}, "Notes"), el("ul", { class: "reasons" },
      notes.map(([note, n]) => el("li", {}, `${n} × ${note}`))));
  }
  const conflicts = counts.conflicts || [];
  if (conflicts.length) {
    parts.push(el("h3", {}, "Conflicts"), el("ul", { class: "reasons" },
      conflicts.map((c) => el("li", {}, typeof c === "string" ? c
        : `${c.title ? `“${c.title}”: ` : ""}${c.message || c.resolution || "changed on both sides"}`))));
  }
  const errors = run.errors || [];
  if (errors.length) {
    parts.push(el("h3", {}, "Errors"), el("ul", { class: "reasons run-errors" },
      errors.map((e) => el("li", {}, describeError(e)))));
  }
  return el("div", { class: "run-result stack", "data-run-id": run.id, "data-status": run.status }, ...parts);
}

// A table of recent runs; `onOpen(run)` shows one run's result.
export function runHistory(runs, onOpen) {
  if (!runs || !runs.length) return el("p", { class: "muted" }, "No sync has run yet.");
  return el("div", { class: "table-wrap" }, el("table", { class: "history" },
    el("caption", { class: "visually-hidden" }, "Recent runs"),
    el("thead", {}, el("tr", {},
      el("th", { scope: "col" }, "When"), el("th", { scope: "col" }, "What"),
      el("th", { scope: "col" }, "Result"), el("th", { scope: "col" }, "Summary"), el("th", { scope: "col" }, el("span", { class: "visually-hidden" }, "Details")))),
    el("tbody", {}, runs.map((run) => el("tr", { "data-run-id": run.id },
      el("td", {}, when(run.finished_at || run.started_at || run.created_at)),
      el("td", {}, `${RUN_KIND[run.kind] || run.kind}${run.trigger && RUN_TRIGGER[run.trigger] ? `, ${RUN_TRIGGER[run.trigger]}` : ""}`),
      el("td", {}, runBadge(run.status)),
      el("td", { class: "small" }, runSummary(run)),
      el("td", {}, el("button", { type: "button", class: "subtle", onclick: () => onOpen(run) }, "Details", el("span", { class: "visually-hidden" }, ` of the run of ${when(run.created_at)}`))))))));
}

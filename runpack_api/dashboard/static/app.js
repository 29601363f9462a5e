// Runpack dashboard. Every value from the API is put on the page as text (textContent),
// never as HTML. Keys live in localStorage and go only into Authorization headers.
"use strict";

const FINISHED = new Set(["completed", "failed", "expired"]);

// ---- keys and the API ------------------------------------------------------------------

const keys = {
  get: (role) => localStorage.getItem(`runpack.key.${role}`) || "",
  set: (role, value) => value ? localStorage.setItem(`runpack.key.${role}`, value)
                              : localStorage.removeItem(`runpack.key.${role}`),
  // read-only admin routes accept the runner key too
  reader: () => keys.get("admin") || keys.get("runner"),
};

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(key, path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { "Authorization": `Bearer ${key}`, "Content-Type": "application/json" },
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new ApiError(response.status, body.error || body.message || response.statusText);
  }
  return body;
}

const admin = (path, options) => api(keys.reader(), path, options);

// ---- small DOM helpers ------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
  }
  return node;
}

const $ = (id) => document.getElementById(id);
const text = (id, value) => { $(id).textContent = value ?? ""; };

function when(ms) {
  if (!ms) return "";
  const seconds = Math.round((Date.now() - ms) / 1000);
  const ago = seconds < 60 ? `${seconds}s` : seconds < 3600 ? `${Math.round(seconds / 60)}m`
    : `${Math.round(seconds / 3600)}h`;
  return `${new Date(ms).toLocaleString()} (${ago} ago)`;
}

function duration(seconds) {
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  if (seconds < 3600) return `${(seconds / 60).toFixed(1)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function statusBadge(status) { return el("span", { class: `status ${status}` }, status); }

function jobLink(jobId) { return el("a", { href: `/jobs/${encodeURIComponent(jobId)}` }, jobId); }
// The runner that claimed a job, by name (its id while the runner is unknown), linked.
function runnerLink(job) {
  if (!job.claimed_by) return "";
  return el("a", { href: `/runners/${encodeURIComponent(job.claimed_by)}`, title: job.claimed_by },
    job.claimed_by_name || job.claimed_by);
}

// A progress number as text: whole numbers as they are, fractions to at most two places.
const amount = (value) => (value ?? "").toLocaleString(undefined, { maximumFractionDigits: 2 });

function setProgress(barId, textId, progress, status) {
  let percent = 0;
  let label = status === "completed" ? "100%" : "";
  if (progress && progress.total) {
    percent = Math.min(100, Math.round(100 * (progress.current || 0) / progress.total));
    label = `${percent}% (${amount(progress.current)}/${amount(progress.total)})`;
  }
  if (status === "completed") percent = 100;
  $(barId).style.width = `${percent}%`;
  text(textId, label);
}

function miniProgress(progress) {
  if (!progress || !progress.total) return "";
  const percent = Math.min(100, Math.round(100 * (progress.current || 0) / progress.total));
  const bar = el("div", { class: "bar" });
  bar.style.width = `${percent}%`;
  return el("div", { class: "mini progress", title: `${amount(progress.current)}/${amount(progress.total)}` }, bar);
}

function banner(message) {
  const node = $("banner");
  node.hidden = !message;
  node.textContent = message || "";
}

function pretty(value) { return value === null || value === undefined ? "" : JSON.stringify(value, null, 2); }

// Refresh `load` every `ms` until it returns false; errors go to the banner.
function every(ms, load) {
  let timer = null;
  const tick = async () => {
    let again = true;
    try {
      again = (await load()) !== false;
      banner("");
    } catch (error) {
      banner(error.status === 401
        ? "The API refused the key: enter your keys in Settings."
        : `Could not load: ${error.message}`);
    }
    if (again) timer = setTimeout(tick, ms);
  };
  tick();
  return () => clearTimeout(timer);
}

function needKeys(...roles) {
  const missing = roles.filter((role) => !keys.get(role));
  if (missing.length) banner(`Enter the ${missing.join(" and ")} key in Settings to use this page.`);
  return missing.length === 0;
}

// A listing refreshed every 3 s, `size` rows a page, paged with the #prev and #next buttons.
// `load(limit, cursor)` shows the page that starts at `cursor` (undefined: the first) and
// returns how many rows it showed, the total, and the cursor of the next page (null: none).
function paged(size, noun, load) {
  let cursors = [undefined];  // where each page up to the one shown starts
  let next = null;
  const show = async () => {
    const page = await load(size, cursors[cursors.length - 1]);
    if (!page.shown && cursors.length > 1) {  // rows went away: back a page
      cursors.pop();
      return show();
    }
    const first = (cursors.length - 1) * size;
    next = page.next ?? null;
    text("page-info", page.total
      ? `${first + 1}–${first + page.shown} of ${page.total}` : `no ${noun}`);
    $("prev").disabled = cursors.length === 1;
    $("next").disabled = next === null || first + page.shown >= page.total;
  };
  let stop = every(3000, show);
  const reload = () => { stop(); stop = every(3000, show); };
  $("prev").addEventListener("click", () => { if (cursors.length > 1) cursors.pop(); reload(); });
  $("next").addEventListener("click", () => { if (next !== null) cursors.push(next); reload(); });
  return () => { cursors = [undefined]; reload(); };
}

// ---- pages -------------------------------------------------------------------------------

const pages = {};

pages.overview = () => {
  if (!keys.reader()) { needKeys("admin"); return; }
  const card = (value, label) => el("div", { class: "card" },
    el("div", { class: "value" }, value), el("div", { class: "label" }, label));
  every(2000, async () => {
    const stats = await admin("/api/admin/stats");
    $("job-counts").replaceChildren(...["pending", "claimed", "in_progress", "completed",
      "failed", "expired", "total"].map((s) => card(stats.jobs[s], `${s} jobs`)));
    const { total, cache_hits: hits } = stats.submissions;
    const ratio = total ? `${Math.round(100 * hits / total)}%` : "–";
    $("system-counts").replaceChildren(
      card(`${stats.runners.active} / ${stats.runners.total}`, "runners active / total"),
      card(ratio, `cache hits (${hits} of ${total} submissions to this API process)`),
      card(duration(stats.compute_saved_s), "compute saved by cache hits (this API process)"));
  });
  every(10000, async () => {
    const data = await admin("/api/admin/throughput?minutes=60");
    $("throughput").replaceChildren(barChart(data.per_minute));
  });
};

function barChart(points) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  const width = 600, height = 160, bottom = 18;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const max = Math.max(1, ...points.map((p) => p.completed));
  const step = width / points.length;
  points.forEach((point, index) => {
    const h = (height - bottom) * point.completed / max;
    const rect = document.createElementNS(ns, "rect");
    rect.setAttribute("x", index * step + 1);
    rect.setAttribute("y", height - bottom - h);
    rect.setAttribute("width", Math.max(1, step - 2));
    rect.setAttribute("height", h);
    const title = document.createElementNS(ns, "title");
    title.textContent = `${new Date(point.minute).toLocaleTimeString()}: ${point.completed}`;
    rect.append(title);
    svg.append(rect);
  });
  for (const [x, label] of [[0, "−60 min"], [width - 30, "now"]]) {
    const t = document.createElementNS(ns, "text");
    t.setAttribute("x", x); t.setAttribute("y", height - 4);
    t.textContent = label;
    svg.append(t);
  }
  const peak = document.createElementNS(ns, "text");
  peak.setAttribute("x", 2); peak.setAttribute("y", 10);
  peak.textContent = `max ${max}/min`;
  svg.append(peak);
  return svg;
}

pages.jobs = () => {
  if (!keys.reader()) { needKeys("admin"); return; }
  const filters = $("filters");
  const params = new URLSearchParams(location.search);
  filters.status.value = params.get("status") || "";
  filters.job_type.value = params.get("job_type") || "";
  // paged by the API's before= cursor: a page deep in a table of millions costs what the
  // first does, where an offset reads every row before it
  const firstPage = paged(25, "jobs", async (limit, before) => {
    const query = new URLSearchParams({ limit });
    if (before !== undefined) query.set("before", before);
    if (filters.status.value) query.set("status", filters.status.value);
    if (filters.job_type.value.trim()) query.set("job_type", filters.job_type.value.trim());
    const page = await admin(`/api/admin/jobs?${query}`);
    $("jobs-table").tBodies[0].replaceChildren(...page.jobs.map((job) => el("tr", {},
      el("td", {}, jobLink(job.job_id)), el("td", {}, job.job_type),
      el("td", {}, statusBadge(job.status)), el("td", {}, miniProgress(job.progress)),
      el("td", {}, job.attempts), el("td", {}, when(job.created_at)),
      el("td", {}, runnerLink(job)))));
    return { shown: page.jobs.length, total: page.total, next: page.next_before };
  });
  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    const query = new URLSearchParams();
    if (filters.status.value) query.set("status", filters.status.value);
    if (filters.job_type.value.trim()) query.set("job_type", filters.job_type.value.trim());
    history.replaceState(null, "", `/jobs${query.toString() ? `?${query}` : ""}`);
    firstPage();
  });
  $("search").addEventListener("submit", (event) => {
    event.preventDefault();
    location.href = `/jobs/${encodeURIComponent($("search").job_id.value.trim())}`;
  });
};

pages.job = () => {
  if (!keys.reader()) { needKeys("admin"); return; }
  const jobId = document.body.dataset.jobId;
  let job = null;
  every(1000, async () => {
    try {
      job = await admin(`/api/admin/jobs/${encodeURIComponent(jobId)}`);
    } catch (error) {
      if (error.status === 404) { banner("No job with this id (it may have been deleted)."); return false; }
      throw error;
    }
    text("job-type", job.job_type);
    const status = $("job-status");
    status.className = `status ${job.status}`;
    status.textContent = job.status;
    text("job-attempts", job.attempts);
    $("job-runner").replaceChildren(runnerLink(job));
    text("job-hash", job.job_hash);
    setProgress("job-progress-bar", "job-progress-text", job.progress, job.status);
    $("timeline").replaceChildren(...[["created", job.created_at], ["claimed", job.claimed_at],
      ["last heartbeat", job.last_heartbeat], ["finished", job.finished_at]]
      .filter(([, at]) => at).map(([label, at]) => el("li", {}, `${label}: ${when(at)}`)));
    text("job-params", pretty(job.input_params));
    const consoleBox = $("job-console");
    const atBottom = consoleBox.scrollTop + consoleBox.clientHeight >= consoleBox.scrollHeight - 4;
    consoleBox.textContent = job.console_output || "";
    if (atBottom) consoleBox.scrollTop = consoleBox.scrollHeight;
    text("job-output", pretty(job.output_data));
    $("error-panel").hidden = !job.error_message;
    text("job-error", job.error_message);
    $("cancel").hidden = !["pending", "claimed", "in_progress"].includes(job.status);
    $("expire").hidden = job.status !== "completed";
    return true;  // keep following: a resubmitted job runs again
  });
  $("resubmit").addEventListener("click", async () => {
    if (!job || !needKeys("submit")) return;
    try {
      const answer = await api(keys.get("submit"), "/api/jobs/submit", {
        method: "POST", body: JSON.stringify({ job_type: job.job_type, input_params: job.input_params }),
      });
      text("action-result", answer.message);
    } catch (error) { text("action-result", `Refused: ${error.message}`); }
  });
  $("expire").addEventListener("click", async () => {
    if (!keys.get("admin")) { text("action-result", "Expiring needs the admin key."); return; }
    try {
      const answer = await api(keys.get("admin"),
        `/api/admin/jobs/${encodeURIComponent(jobId)}/expire`, { method: "POST" });
      text("action-result", `${answer.message}: its next submit computes it again`);
    } catch (error) { text("action-result", `Refused: ${error.message}`); }
  });
  $("cancel").addEventListener("click", async () => {
    if (!keys.get("admin")) { text("action-result", "Cancelling needs the admin key."); return; }
    if (!confirm(`Cancel job ${jobId}?`)) return;
    try {
      const answer = await api(keys.get("admin"),
        `/api/admin/jobs/${encodeURIComponent(jobId)}/cancel`, { method: "POST" });
      text("action-result", answer.message);
    } catch (error) { text("action-result", `Refused: ${error.message}`); }
  });
  $("delete").addEventListener("click", async () => {
    if (!keys.get("admin")) { text("action-result", "Deleting needs the admin key."); return; }
    if (!confirm(`Delete job ${jobId}?`)) return;
    try {
      await api(keys.get("admin"), `/api/admin/jobs/${encodeURIComponent(jobId)}`, { method: "DELETE" });
      location.href = "/jobs";
    } catch (error) { text("action-result", `Refused: ${error.message}`); }
  });
};

pages.runners = () => {
  if (!keys.reader()) { needKeys("admin"); return; }
  paged(50, "runners", async (limit, offset = 0) => {
    const data = await admin(`/api/admin/runners?${new URLSearchParams({ limit, offset })}`);
    $("runners-table").tBodies[0].replaceChildren(...data.runners.map((runner) => el("tr", {},
      el("td", {}, el("a", { href: `/runners/${encodeURIComponent(runner.runner_id)}` }, runner.name)),
      el("td", {}, runner.kind === "celery" ? "Celery worker" : "HTTP runner"),
      el("td", {}, runner.capabilities.join(", ")), el("td", {}, when(runner.last_seen)),
      el("td", {}, runner.is_active ? "yes" : "no"),
      el("td", {}, runner.current_job ? jobLink(runner.current_job) : ""))));
    return { shown: data.runners.length, total: data.total, next: offset + data.runners.length };
  });
};

pages.runner = () => {
  if (!keys.reader()) { needKeys("admin"); return; }
  const runnerId = document.body.dataset.runnerId;
  every(3000, async () => {
    const runner = await admin(`/api/admin/runners/${encodeURIComponent(runnerId)}`);
    text("runner-name", runner.name);
    text("runner-kind", runner.kind === "celery" ? "Celery worker" : "HTTP runner");
    text("runner-capabilities", runner.capabilities.join(", "));
    text("runner-registered", when(runner.registered_at));
    text("runner-last-seen", when(runner.last_seen));
    text("runner-active", runner.is_active ? "yes" : "no");
    $("runner-jobs").tBodies[0].replaceChildren(...runner.jobs.map((job) => el("tr", {},
      el("td", {}, jobLink(job.job_id)), el("td", {}, job.job_type),
      el("td", {}, statusBadge(job.status)), el("td", {}, when(job.updated_at)))));
  });
};

function exampleParams(schema) {
  const example = {};
  for (const [name, property] of Object.entries((schema && schema.properties) || {})) {
    if ("default" in property) example[name] = property.default;
    else if (property.type === "integer" || property.type === "number") example[name] = 1;
    else if (property.type === "boolean") example[name] = false;
    else example[name] = "";
  }
  return example;
}

pages.playground = async () => {
  if (!needKeys("submit")) return;
  const select = $("pg-type"), editor = $("pg-params"), problem = $("pg-params-error");
  let types = [];
  try {
    types = keys.reader() ? (await admin("/api/admin/job-types")).job_types : [];
  } catch (error) { banner(`Could not list job types: ${error.message}`); }
  if (!types.length) types = [{ name: "hello_world", description: "", params_schema: null }];
  select.replaceChildren(...types.map((t) => el("option", { value: t.name }, t.name)));
  const describe = () => {
    const chosen = types.find((t) => t.name === select.value);
    text("pg-type-description", chosen ? chosen.description : "");
    editor.value = pretty(exampleParams(chosen && chosen.params_schema)) || "{}";
    validate();
  };
  const validate = () => {
    try {
      const value = JSON.parse(editor.value);
      if (value === null || typeof value !== "object" || Array.isArray(value)) {
        throw new Error("parameters must be a JSON object");
      }
      problem.textContent = "";
      $("pg-submit").disabled = false;
      return value;
    } catch (error) {
      problem.textContent = `Not valid: ${error.message}`;
      $("pg-submit").disabled = true;
      return null;
    }
  };
  select.addEventListener("change", describe);
  editor.addEventListener("input", validate);
  describe();
  let stop = () => {};
  $("playground-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const params = validate();
    if (!params) return;
    stop();
    let answer;
    try {
      answer = await api(keys.get("submit"), "/api/jobs/submit", {
        method: "POST", body: JSON.stringify({ job_type: select.value, input_params: params }),
      });
    } catch (error) { problem.textContent = `Refused: ${error.message}`; return; }
    $("pg-job").hidden = false;
    const link = $("pg-job-link");
    link.href = `/jobs/${encodeURIComponent(answer.job_id)}`;
    link.textContent = answer.job_id;
    text("pg-message", answer.message);
    stop = every(1000, async () => {
      const job = keys.reader()
        ? await admin(`/api/admin/jobs/${encodeURIComponent(answer.job_id)}`)
        : await api(keys.get("submit"), `/api/jobs/${encodeURIComponent(answer.job_id)}`);
      const status = $("pg-status");
      status.className = `status ${job.status}`;
      status.textContent = job.status;
      setProgress("pg-progress-bar", "pg-progress-text", job.progress, job.status);
      text("pg-console", job.console_output ?? (job.result && job.result.console_output));
      text("pg-output", pretty(job.output_data ?? (job.result && job.result.output_data)));
      const error = job.error_message ?? job.error;
      $("pg-error").hidden = !error;
      text("pg-error", error);
      return !FINISHED.has(job.status);
    });
  });
};

pages.settings = () => {
  const form = $("keys-form");
  for (const role of ["submit", "runner", "admin"]) form[role].value = keys.get(role);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const role of ["submit", "runner", "admin"]) keys.set(role, form[role].value.trim());
    const checks = [];
    if (keys.reader()) {
      checks.push(admin("/api/admin/stats").then(() => "admin: ok", (e) => `admin: ${e.message}`));
    }
    if (keys.get("submit")) {
      checks.push(api(keys.get("submit"), "/api/jobs/check", {
        method: "POST", body: JSON.stringify({ job_type: "key_check", input_params: {} }),
      }).then(() => "submit: ok", (e) => `submit: ${e.message}`));
    }
    text("keys-status", `Saved. ${(await Promise.all(checks)).join("; ")}`);
  });
  $("clear-keys").addEventListener("click", () => {
    for (const role of ["submit", "runner", "admin"]) { keys.set(role, ""); form[role].value = ""; }
    text("keys-status", "Keys forgotten.");
  });
};

document.addEventListener("DOMContentLoaded", () => {
  const page = pages[document.body.dataset.page];
  if (page) page();
});

// taskq dashboard: plain JavaScript, no build step, no CDN. Pages are rendered from
// the JSON API (/api/...) and kept live by the server-sent events of /api/stream.
"use strict";

const STATES = ["queued", "started", "retrying", "succeeded", "failed", "cancelled"];
const COLORS = { published: "#1a73e8", started: "#f9ab00", finished: "#1e8e3e" };
const state = { snapshot: null, feed: [], overview: null, page: null };

// -- helpers ---------------------------------------------------------------------------

function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
function num(value) { return value === null || value === undefined ? "—" : String(value); }
function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return isNaN(d) ? esc(iso) : d.toLocaleString();
}
function badge(s) { return `<span class="state ${esc(s)}">${esc(s)}</span>`; }
function toast(text) {
  const el = document.getElementById("toast");
  el.textContent = text; el.hidden = false;
  clearTimeout(toast.timer); toast.timer = setTimeout(() => { el.hidden = true; }, 4000);
}
async function api(path, options = {}) {
  const init = { headers: { "Accept": "application/json" }, ...options };
  if (options.body !== undefined) {
    init.method = "POST";
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.body);
  }
  let response;
  try {
    response = await fetch("api/" + path, init);
  } catch (err) {
    throw new Error("the dashboard does not answer: " + err.message);
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}
function post(path, body = {}) { return api(path, { body }); }
function main() { return document.getElementById("main"); }
function params() {
  const [, query = ""] = location.hash.split("?");
  return new URLSearchParams(query);
}

// -- charts ----------------------------------------------------------------------------

function sparkline(rates, width = 240, height = 44) {
  if (!rates) return "";
  const series = ["published", "started", "finished"];
  const max = Math.max(0.1, ...series.flatMap((s) => rates[s]));
  const lines = series.map((s) => {
    const values = rates[s];
    const step = width / Math.max(1, values.length - 1);
    const points = values.map((v, i) =>
      `${(i * step).toFixed(1)},${(height - 2 - (v / max) * (height - 4)).toFixed(1)}`).join(" ");
    return `<polyline fill="none" stroke="${COLORS[s]}" stroke-width="1.5" points="${points}"/>`;
  }).join("");
  const now = series.map((s) => rates[s][rates[s].length - 1] || 0);
  const title = `last 15 min; now: published ${now[0]}/s, started ${now[1]}/s, finished ${now[2]}/s`;
  return `<svg class="spark" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">` +
    `<title>${title}</title><rect width="${width}" height="${height}" fill="#fafbfc"/>${lines}</svg>`;
}
function legend() {
  return `<div class="legend">${Object.entries(COLORS).map(([k, c]) =>
    `<span><i style="background:${c}"></i>${k}/s</span>`).join("")}</div>`;
}

// -- health ----------------------------------------------------------------------------

function showHealth(health) {
  const el = document.getElementById("health");
  const problems = [];
  for (const what of ["broker", "store", "management"]) {
    const h = health && health[what];
    if (h && h.ok === false) {
      problems.push(`${what === "management" ? "management API" : what} unreachable since ` +
        `${when(h.down_since)} (${h.error}); ` + (what === "management"
          ? "unacked unknown, ready and consumers from the broker"
          : "showing the last figures known"));
    }
  }
  el.hidden = problems.length === 0;
  el.innerHTML = problems.map(esc).join("<br>");
}

// -- pages -----------------------------------------------------------------------------

function queuesPage() {
  const snap = state.snapshot;
  if (!snap) { main().innerHTML = "<h2>Queues</h2><p class='muted'>Loading…</p>"; return; }
  const rows = snap.queues.map((q) => `
    <tr data-queue="${esc(q.queue)}">
      <td><a href="#/tasks?name=${encodeURIComponent(q.task)}">${esc(q.task)}</a><br>
        <span class="muted">${esc(q.queue)}</span></td>
      <td class="num ready">${q.exists ? num(q.ready) : "not declared"}</td>
      <td class="num unacked">${num(q.unacked)}</td>
      <td class="num consumers">${num(q.consumers)}</td>
      <td>${sparkline(snap.rates[q.task])}</td>
    </tr>`).join("");
  const d = snap.dead || {};
  main().innerHTML = `
    <h2>Queues</h2>
    <div class="card">
      <table id="queues">
        <tr><th>Task queue</th><th class="num">Ready</th><th class="num">Unacked</th>
          <th class="num">Consumers</th><th>Rates, last 15 min</th></tr>
        ${rows || "<tr><td colspan=5 class='muted'>No task registered on this app.</td></tr>"}
        <tr data-queue="${esc(d.queue)}" id="dead-queue">
          <td><a href="#/failures">dead letters</a><br><span class="muted">${esc(d.queue)}</span></td>
          <td class="num ready">${d.exists ? num(d.ready) : "not declared"}</td>
          <td class="num unacked">${num(d.unacked)}</td>
          <td class="num consumers">${num(d.consumers)}</td><td></td>
        </tr>
      </table>
      ${legend()}
      <p class="muted">All tasks: ${sparkline(snap.rates["*"], 480, 60)}</p>
      <p class="muted">Polled ${when(snap.time)}. Unacked “—”: the broker does not tell it
        (RabbitMQ without its management API). Rates come from lifecycle events: run
        workers with TASKQ_EVENTS=1.</p>
    </div>`;
}

function countsHtml(counts, name = "") {
  return `<div class="counts" id="counts">${STATES.map((s) => `
    <a class="count" data-state="${s}" href="#/tasks?state=${s}${name ? "&name=" + encodeURIComponent(name) : ""}">
      ${badge(s)}<b>${num(counts ? counts[s] : null)}</b></a>`).join("")}</div>`;
}

async function tasksPage() {
  const p = params();
  const names = (state.overview && state.overview.tasks) || [];
  main().innerHTML = `
    <h2>Tasks</h2>
    <div id="counts-box">${countsHtml(state.snapshot && state.snapshot.counts)}</div>
    <div class="card">
      <form class="filters" id="search">
        <label>Id or name contains<input name="q" value="${esc(p.get("q") || "")}" placeholder="search"></label>
        <label>Task<select name="name"><option value="">any</option>
          ${names.map((n) => `<option ${p.get("name") === n ? "selected" : ""}>${esc(n)}</option>`).join("")}
        </select></label>
        <label>State<select name="state"><option value="">any</option>
          ${STATES.map((s) => `<option ${p.get("state") === s ? "selected" : ""}>${s}</option>`).join("")}
        </select></label>
        <label>Last … minutes<input name="since" type="number" min="1" value="${esc(p.get("since") || "")}" style="width:90px"></label>
        <button class="primary">Search</button>
      </form>
      <table id="task-list"><tr><td class="muted">Loading…</td></tr></table>
    </div>
    <div class="card"><h3>Live</h3><table id="feed"></table></div>`;
  document.getElementById("search").addEventListener("submit", (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(e.target)) if (v) q.set(k, v);
    location.hash = "#/tasks?" + q.toString();
  });
  renderFeed();
  await refreshTaskList();
}

async function refreshTaskList() {
  const table = document.getElementById("task-list");
  if (!table) return;
  const p = params();
  try {
    const [{ tasks }, { counts }] = await Promise.all([
      api("tasks?" + p.toString() + "&limit=100"),
      api("tasks/counts?" + new URLSearchParams([...p].filter(([k]) => k !== "state")).toString()),
    ]);
    document.getElementById("counts-box").innerHTML = countsHtml(counts, p.get("name") || "");
    table.innerHTML = `<tr><th>Id</th><th>Task</th><th>State</th><th class="num">Attempts</th>
      <th>Created</th><th>Finished</th></tr>` + (tasks.map((t) => `
      <tr data-task-id="${esc(t.id)}"><td><a href="#/task/${encodeURIComponent(t.id)}">${esc(t.id)}</a></td>
        <td>${esc(t.name)}</td><td>${badge(t.state)}</td><td class="num">${t.attempts}</td>
        <td>${when(t.created_at)}</td><td>${when(t.finished_at)}</td></tr>`).join("") ||
      "<tr><td colspan=6 class='muted'>No task matches.</td></tr>");
  } catch (err) {
    table.innerHTML = `<tr><td class="muted">Cannot list tasks: ${esc(err.message)}</td></tr>`;
  }
}

function renderFeed() {
  const table = document.getElementById("feed");
  if (!table) return;
  table.innerHTML = state.feed.slice(0, 15).map((e) => `
    <tr><td>${when(e.time)}</td><td>${badge(e.state)}</td><td>${esc(e.task)}</td>
    <td><a href="#/task/${encodeURIComponent(e.task_id)}">${esc(e.task_id)}</a></td>
    <td class="muted">${esc(e.error || "")}</td></tr>`).join("") ||
    "<tr><td class='muted'>No event yet (workers send them with TASKQ_EVENTS=1).</td></tr>";
}

function treeHtml(node) {
  const s = node.status;
  const label = node.task_id
    ? `<a href="#/task/${encodeURIComponent(node.task_id)}">${esc(node.name || node.task_id)}</a> ${s ? badge(s.state) : "<span class='muted'>not sent</span>"}`
    : `<b>${esc(node.kind)}</b>`;
  const kids = (node.children || []).map(treeHtml).join("");
  return `<li>${label}${kids ? `<ul>${kids}</ul>` : ""}</li>`;
}

async function taskPage(taskId) {
  main().innerHTML = `<h2>Task ${esc(taskId)}</h2><p class="muted">Loading…</p>`;
  let data;
  try {
    data = await api("tasks/" + encodeURIComponent(taskId));
  } catch (err) {
    main().innerHTML = `<h2>Task ${esc(taskId)}</h2><p>${esc(err.message)}</p>`;
    return;
  }
  if (state.page !== "task:" + taskId) return;
  const t = data.task || {};
  const letter = data.dead_letter;
  // The record's call (kept by the publisher), else the dead letter's arguments.
  const args = t.args != null ? { args: t.args, kwargs: t.kwargs || {} }
    : letter && letter.args !== null ? { args: letter.args, kwargs: letter.kwargs || {} } : null;
  const argsNote = args ? ""
    : t.call_truncated != null ? `<p class='muted' id='args-note'>Not kept: the call was ${num(t.call_truncated)} bytes, over the store's limit. Give them here to send it again.</p>`
    : "<p class='muted' id='args-note'>Arguments unknown: no publisher recorded them (another language's, or an older taskq) and there is no dead letter. Give them here to send it again.</p>";
  const error = t.error ? `<h3>Error</h3><p><b>${esc(t.error.type)}</b>: ${esc(t.error.message)}</p>
    ${t.error.traceback ? `<pre id="traceback">${esc(t.error.traceback)}</pre>` : ""}` : "";
  const result = t.state === "succeeded" ? `<h3>Result</h3><pre id="result">${esc(JSON.stringify(t.result, null, 2))}</pre>` : "";
  main().innerHTML = `
    <h2>Task <span id="task-id">${esc(taskId)}</span> <span id="task-state">${badge(t.state || "dead letter")}</span></h2>
    <div class="row">
      <div class="card"><dl>
        <dt>Task</dt><dd id="task-name">${esc(t.name || (letter && letter.task))}</dd>
        <dt>Attempts</dt><dd id="task-attempts">${num(t.attempts)}</dd>
        <dt>Created</dt><dd>${when(t.created_at)}</dd>
        <dt>Started</dt><dd>${when(t.started_at)}</dd>
        <dt>Finished</dt><dd>${when(t.finished_at)}</dd>
        ${t.cancel_requested ? "<dt>Cancel</dt><dd>requested, waiting for its worker</dd>" : ""}
        ${letter ? `<dt>Dead letter</dt><dd>${esc(letter.reason)} (${when(letter.dead_at)})</dd>` : ""}
      </dl>
      ${error}${result}
      </div>
      <div class="card">
        <h3>Arguments</h3>
        ${argsNote}
        <textarea id="send-args" rows="6">${esc(JSON.stringify(args || { args: [], kwargs: {} }, null, 2))}</textarea>
        <p>
          <button id="cancel-btn" class="danger" ${["queued", "retrying", "started"].includes(t.state) ? "" : "disabled"}>Cancel</button>
          <button id="send-again-btn" class="primary">Send again</button>
          ${letter ? '<button id="requeue-btn">Requeue dead letter</button>' : ""}
        </p>
      </div>
    </div>
    ${data.workflow ? `<div class="card tree" id="workflow"><h3>Workflow ${esc(data.workflow.id)} ${badge(data.workflow.state)}</h3><ul>${treeHtml(data.workflow.tree)}</ul></div>` : ""}`;
  document.getElementById("cancel-btn").onclick = async () => {
    if (!confirm(`Cancel task ${taskId}?`)) return;
    try {
      const r = await post(`tasks/${encodeURIComponent(taskId)}/cancel`);
      toast(r.cancelled ? "Cancelled." : "Not cancelled: it had finished, or is a running sync task.");
    } catch (err) { toast(err.message); }
    taskPage(taskId);
  };
  document.getElementById("send-again-btn").onclick = async () => {
    let body;
    try { body = JSON.parse(document.getElementById("send-args").value); } catch (err) {
      toast("Arguments are not JSON: " + err.message); return;
    }
    if (!confirm(`Send ${t.name || letter.task} again with these arguments?`)) return;
    try {
      const r = await post(`tasks/${encodeURIComponent(taskId)}/send-again`, body);
      toast("Sent as " + r.task_id);
      location.hash = "#/task/" + encodeURIComponent(r.task_id);
    } catch (err) { toast(err.message); }
  };
  const requeueBtn = document.getElementById("requeue-btn");
  if (requeueBtn) requeueBtn.onclick = () => requeue([taskId]);
}

async function requeue(ids) {
  if (!confirm(ids ? `Requeue ${ids.length} dead letter(s)?` : "Requeue every dead letter?")) return;
  try {
    const r = await post("dead/requeue", ids ? { ids } : {});
    toast(`Requeued ${r.requeued.length}.`);
  } catch (err) { toast(err.message); }
  route();
}

async function failuresPage() {
  const names = (state.overview && state.overview.tasks) || [];
  main().innerHTML = `
    <h2>Failures</h2>
    <div class="card">
      <h3>Dead letters</h3>
      <p><button id="requeue-all">Requeue all</button> <button id="purge" class="danger">Purge all</button></p>
      <table id="dead"><tr><td class="muted">Loading…</td></tr></table>
    </div>
    <div class="card">
      <h3>Bulk action by filter</h3>
      <form class="filters" id="bulk">
        <label>Action<select name="action"><option>requeue</option><option>cancel</option></select></label>
        <label>Task<select name="name"><option value="">any</option>${names.map((n) => `<option>${esc(n)}</option>`).join("")}</select></label>
        <label>State<select name="state"><option value="">any</option>${STATES.map((s) => `<option ${s === "failed" ? "selected" : ""}>${s}</option>`).join("")}</select></label>
        <label>Last … minutes<input name="since" type="number" min="1" value="60" style="width:90px"></label>
        <button type="button" id="bulk-preview">Count</button>
        <button type="button" id="bulk-run" class="danger" disabled>Run</button>
      </form>
      <p id="bulk-count" class="muted">Count first: the number of tasks it would touch is shown before it runs.</p>
    </div>
    <div class="card"><h3>Latest failed tasks</h3><table id="failed"><tr><td class="muted">Loading…</td></tr></table></div>`;
  document.getElementById("requeue-all").onclick = () => requeue(null);
  document.getElementById("purge").onclick = async () => {
    if (!confirm("Delete every dead letter for good? Their tasks stay failed.")) return;
    try { toast(`Purged ${(await post("dead/purge")).purged}.`); } catch (err) { toast(err.message); }
    route();
  };
  const form = document.getElementById("bulk");
  const body = () => Object.fromEntries(new FormData(form));
  const runBtn = document.getElementById("bulk-run");
  form.onchange = () => { runBtn.disabled = true; };
  document.getElementById("bulk-preview").onclick = async () => {
    try {
      const r = await post("bulk/preview", body());
      document.getElementById("bulk-count").textContent = `${r.action} would touch ${r.count} task(s)` +
        (r.ids.length ? `: ${r.ids.join(", ")}${r.count > r.ids.length ? ", …" : ""}` : ".") +
        (r.capped ? ` Only the latest ${r.limit} matching records were looked at: run it again for the rest.` : "");
      runBtn.disabled = r.count === 0;
      runBtn.dataset.count = r.count;
    } catch (err) { toast(err.message); }
  };
  runBtn.onclick = async () => {
    const b = body();
    if (!confirm(`${b.action} ${runBtn.dataset.count} task(s)?`)) return;
    try { const r = await post("bulk/run", b); toast(`${r.action}: ${r.count} done.`); } catch (err) { toast(err.message); }
    route();
  };
  try {
    const { dead_letters } = await api("dead?limit=200");
    document.getElementById("dead").innerHTML = `<tr><th>Task id</th><th>Task</th><th>Reason</th><th>Dead at</th><th>Arguments</th><th></th></tr>` +
      (dead_letters.map((d) => `<tr data-task-id="${esc(d.task_id)}">
        <td>${d.task_id ? `<a href="#/task/${encodeURIComponent(d.task_id)}">${esc(d.task_id)}</a>` : "—"}</td>
        <td>${esc(d.task)}</td><td>${esc(d.reason)}</td><td>${when(d.dead_at)}</td>
        <td><code>${esc(d.args !== null ? JSON.stringify(d.args) : d.body)}</code></td>
        <td>${d.task_id ? `<button class="requeue" data-id="${esc(d.task_id)}">Requeue</button>` : ""}</td></tr>`).join("") ||
      "<tr><td colspan=6 class='muted'>No dead letter.</td></tr>");
    for (const btn of document.querySelectorAll("button.requeue")) btn.onclick = () => requeue([btn.dataset.id]);
  } catch (err) {
    document.getElementById("dead").innerHTML = `<tr><td>Cannot read dead letters: ${esc(err.message)}</td></tr>`;
  }
  try {
    const { tasks } = await api("tasks?state=failed&limit=30");
    document.getElementById("failed").innerHTML = `<tr><th>Id</th><th>Task</th><th>Error</th><th>Finished</th></tr>` +
      (tasks.map((t) => `<tr data-task-id="${esc(t.id)}"><td><a href="#/task/${encodeURIComponent(t.id)}">${esc(t.id)}</a></td>
        <td>${esc(t.name)}</td><td>${t.error ? esc(t.error.type + ": " + t.error.message) : ""}</td>
        <td>${when(t.finished_at)}</td></tr>`).join("") || "<tr><td colspan=4 class='muted'>No failed task.</td></tr>");
  } catch (err) {
    document.getElementById("failed").innerHTML = `<tr><td>Cannot list failed tasks: ${esc(err.message)}</td></tr>`;
  }
}

function workersPage() {
  const workers = (state.snapshot && state.snapshot.workers) || [];
  main().innerHTML = `<h2>Workers</h2><div class="card"><table id="workers">
    <tr><th>Worker</th><th>Host</th><th class="num">Pid</th><th class="num">Running</th>
      <th class="num">Concurrency</th><th>Last seen</th></tr>
    ${workers.map((w) => `<tr data-worker="${esc(w.id)}"><td>${esc(w.id)}</td><td>${esc(w.host)}</td>
      <td class="num">${num(w.pid)}</td><td class="num running">${num(w.running)}</td>
      <td class="num">${num(w.concurrency)}</td><td>${when(w.last_seen)}</td></tr>`).join("") ||
      "<tr><td colspan=6 class='muted'>No worker heard from. Workers send heartbeats when their events are on (TASKQ_EVENTS=1).</td></tr>"}
    </table></div>`;
}

async function schedulesPage() {
  main().innerHTML = "<h2>Schedules</h2><div class='card'><table id='schedules'><tr><td class='muted'>Loading…</td></tr></table></div>";
  try {
    const { schedules, active_scheduler: active } = await api("schedules");
    document.getElementById("schedules").innerHTML = `<tr><th>Schedule</th><th>Task</th><th>When</th>
      <th>Last tick</th><th>Next tick</th></tr>` + (schedules.map((s) => `<tr><td>${esc(s.name)}</td>
      <td>${esc(s.task)}</td><td>${esc(s.schedule)}</td><td>${when(s.last_tick)}${s.error ? ` <span class="muted">(${esc(s.error)})</span>` : ""}</td>
      <td>${when(s.next_tick)}</td></tr>`).join("") || "<tr><td colspan=5 class='muted'>No schedule on this app.</td></tr>") +
      (active
        ? `<tr id="active-scheduler"><td colspan=5>Active scheduler: <b class="scheduler-id">${esc(active.id)}</b> on ${esc(active.host)} (pid ${num(active.pid)}), last seen ${when(active.last_seen)}</td></tr>`
        : "<tr id='active-scheduler'><td colspan=5 class='muted'>No active scheduler heard from in the last 15 s: none runs (taskq scheduler APP_PATH), or its events are off (it says so only with TASKQ_EVENTS=1).</td></tr>");
  } catch (err) {
    document.getElementById("schedules").innerHTML = `<tr><td>${esc(err.message)}</td></tr>`;
  }
}

// -- routing and live updates ----------------------------------------------------------

const PAGES = { queues: queuesPage, tasks: tasksPage, failures: failuresPage, workers: workersPage, schedules: schedulesPage };

function route() {
  const hash = location.hash.replace(/^#\/?/, "") || "queues";
  const [path] = hash.split("?");
  const [page, ...rest] = path.split("/");
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.page === page || (page === "task" && a.dataset.page === "tasks"));
  if (page === "task") {
    const id = decodeURIComponent(rest.join("/"));
    state.page = "task:" + id;
    taskPage(id);
  } else {
    state.page = PAGES[page] ? page : "queues";
    (PAGES[page] || queuesPage)();
  }
}

function onSnapshot(snap) {
  state.snapshot = snap;
  showHealth(snap.health);
  if (state.page === "queues") queuesPage();
  if (state.page === "workers") workersPage();
  if (state.page === "tasks") refreshTaskList();
}

function connect() {
  const live = document.getElementById("live");
  const source = new EventSource("api/stream");
  source.onopen = () => { live.textContent = "live"; live.classList.add("on"); };
  source.onerror = () => { live.textContent = "dashboard unreachable, retrying…"; live.classList.remove("on"); };
  source.addEventListener("snapshot", (e) => onSnapshot(JSON.parse(e.data)));
  source.addEventListener("feed", (e) => { state.feed = JSON.parse(e.data); renderFeed(); });
  source.addEventListener("task", (e) => {
    const event = JSON.parse(e.data);
    state.feed.unshift(event); state.feed = state.feed.slice(0, 50);
    renderFeed();
    if (state.page === "task:" + event.task_id) taskPage(event.task_id);
  });
  source.addEventListener("workers", (e) => {
    if (state.snapshot) state.snapshot.workers = JSON.parse(e.data);
    if (state.page === "workers") workersPage();
  });
}

async function start() {
  try {
    state.overview = await api("overview");
    document.getElementById("app-name").textContent =
      `${state.overview.exchange} · ${state.overview.broker} · ${state.overview.store}`;
    showHealth(state.overview.health);
  } catch (err) { toast(err.message); }
  window.addEventListener("hashchange", route);
  route();
  connect();
}
start();

// The risk console: a client of the public API, signed in with the shop's key. The key lives
// in this tab's sessionStorage only and travels as the bearer header: never in a URL, the
// page or a log. Every value from the API is written with textContent, never as HTML.

const KEY = "console.key";
const REFRESH_MS = 3000;
// The API's root, relative to /console/, so that a path prefix (an API Gateway stage) holds.
const API = new URL("../", document.baseURI);
const PAGES = ["overview", "inbox", "transactions", "rules"];
// The overview asks for fewer minutes when a busy shop's hour is more than /stats reads.
const OVERVIEW_MINUTES = [60, 15, 5];

const $ = (selector) => document.querySelector(selector);

const state = {
  // The signed-in session: its key, and what aborts its requests when it ends.
  session: null,
  page: null,
  alert: null,
  etag: null,
  // A list's cursor goes with the filters it was given for (the API refuses it with others).
  alerts: { query: "", cursor: null },
  transactions: { query: "", cursor: null },
  overviewMinutes: OVERVIEW_MINUTES[0],
  chart: null,
  timer: null,
  refreshing: false,
  reviewing: false,
};

// ---- talking to the API ----------------------------------------------------------------

class ApiProblem extends Error {
  constructor(status, problem, headers) {
    super(problem?.detail || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
    this.retryAfter = headers?.get("retry-after");
    this.etag = headers?.get("etag");
  }
}

// An answer that came back for a session that has ended since: dropped, never shown.
class Stale extends Error {}

// A call to the API with the session's key (or `key`, to try one): `body` goes as JSON,
// `text` as plain text. Requests of a session that ends are aborted, and late answers dropped.
async function api(path, { method = "GET", body, text, headers = {}, key } = {}) {
  const session = key ? { key, controller: new AbortController() } : state.session;
  if (!session) throw new Stale();
  const init = {
    method,
    headers: { ...headers, authorization: `Bearer ${session.key}` },
    cache: "no-store",
    signal: session.controller.signal,
  };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["content-type"] = "application/json";
  } else if (text !== undefined) {
    init.body = text;
    init.headers["content-type"] = "text/plain";
  }
  const current = () => key || state.session === session;
  let response;
  let answer;
  try {
    response = await fetch(new URL(path, API), init);
    answer = await response.text();
  } catch {
    if (!current()) throw new Stale();
    throw new ApiProblem(0, { detail: "the API could not be reached" });
  }
  if (!current()) throw new Stale();
  const json = answer ? safeJson(answer) : null;
  if (!response.ok) throw new ApiProblem(response.status, json, response.headers);
  return { json, etag: response.headers.get("etag") };
}

function safeJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

// Every failure the API can answer, in words.
function describe(error) {
  if (!(error instanceof ApiProblem)) return `Something went wrong: ${error.message}`;
  const detail = error.problem?.detail ? ` (${error.problem.detail})` : "";
  const retry = error.retryAfter ? ` Try again in ${error.retryAfter} s.` : " Try again shortly.";
  switch (error.status) {
    case 0: return "The API could not be reached. Check the connection; the console keeps trying.";
    case 401: return "The API refused this key: it is not a key of any shop. Sign in again.";
    case 404: return `Not found: it does not exist, or belongs to another shop${detail}.`;
    case 412: return "Someone else reviewed this alert since you opened it. Here it is as it is now; review again from there.";
    case 429: return `Too many requests for now.${retry}`;
    case 503: return `The service is unavailable for the moment.${retry}`;
    default: {
      const fields = (error.problem?.errors || []).map((e) => `${e.field}: ${e.message || e.rule}`).join("; ");
      return `The API answered ${error.status}${detail}${fields ? `: ${fields}` : ""}.`;
    }
  }
}

function showProblem(error) {
  if (error instanceof Stale) return;
  const box = $("#problem");
  box.textContent = error ? describe(error) : "";
  box.hidden = !error;
  if (error?.status === 401) signOut(false);
}

// ---- signing in and out --------------------------------------------------------------------

async function signIn(event) {
  event.preventDefault();
  const field = $("#key");
  const key = field.value.trim();
  field.value = "";
  try {
    // Any authenticated read tells a shop's key from a wrong one.
    await api("alerts?limit=1", { key });
  } catch (error) {
    showProblem(error);
    field.focus();
    return;
  }
  sessionStorage.setItem(KEY, key);
  showProblem(null);
  start(key);
}

function signOut(clearProblem = true) {
  state.session?.controller.abort();
  state.session = null;
  sessionStorage.removeItem(KEY);
  clearInterval(state.timer);
  state.timer = null;
  for (const id of [...PAGES.map((page) => `#${page}`), "#alert", "#transaction", "#backtest-result", "#overview-pipeline", "#nav", "#sign-out", "#alerts-more", "#transactions-more"]) {
    $(id).hidden = true;
  }
  $("#sign-in").hidden = false;
  // Nothing of this shop's stays in the page for whoever signs in next.
  for (const shown of document.querySelectorAll("tbody, .facts, #alert-window, #transaction-alerts, #review-history, #backtest-changes")) {
    shown.replaceChildren();
  }
  for (const text of ["#overview-totals", "#rules-source", "#backtest-summary", "#backtest-diff"]) $(text).textContent = "";
  for (const form of document.querySelectorAll("form")) form.reset();
  $("#alert-title").textContent = "Alert";
  $("#alert-window-title").textContent = "In its window";
  $("#rules-hits-title").textContent = "Hits";
  $("#transaction-title").textContent = "Transaction";
  Object.assign(state, {
    alert: null,
    opening: null,
    etag: null,
    alerts: { query: "", cursor: null },
    transactions: { query: "", cursor: null },
    overviewMinutes: OVERVIEW_MINUTES[0],
  });
  state.chart?.destroy();
  state.chart = null;
  // The next to sign in starts on the overview, not on the page this one left.
  history.replaceState(null, "", location.pathname + location.search);
  if (clearProblem) showProblem(null);
  $("#key").focus();
}

function start(key) {
  state.session = { key, controller: new AbortController() };
  $("#sign-in").hidden = true;
  $("#nav").hidden = false;
  $("#sign-out").hidden = false;
  route();
  clearInterval(state.timer);
  state.timer = setInterval(refresh, REFRESH_MS);
}

// ---- pages ---------------------------------------------------------------------------------

function route() {
  if (!state.session) return signOut();
  const page = (location.hash.slice(1) || "overview").split("/")[0];
  state.page = PAGES.includes(page) ? page : "overview";
  for (const id of [...PAGES, "alert", "transaction"]) $(`#${id}`).hidden = id !== state.page;
  for (const link of document.querySelectorAll("#nav a")) {
    link.toggleAttribute("aria-current", link.dataset.page === state.page);
  }
  if (state.page === "overview") loadOverview();
  else if (state.page === "inbox") loadAlerts();
  else if (state.page === "transactions") loadTransactions();
  else if (state.page === "rules") loadRules();
}

// Live pages are read again every few seconds: one read at a time, none while the tab is
// hidden, and the inbox only while its first page is what is shown.
async function refresh() {
  if (state.refreshing || document.hidden || !state.session) return;
  state.refreshing = true;
  try {
    if (state.page === "overview" && !$("#overview").hidden) await loadOverview();
    if (state.page === "inbox" && !$("#inbox").hidden && !state.alerts.more) await loadAlerts({ refresh: true });
  } finally {
    state.refreshing = false;
  }
}

// The submitted filters of a form, as a query string.
function filters(form) {
  const params = new URLSearchParams();
  for (const [name, value] of new FormData(form)) if (String(value).trim()) params.set(name, String(value).trim());
  return params;
}

function withPage(query, cursor) {
  const params = new URLSearchParams(query);
  params.set("limit", "50");
  if (cursor) params.set("cursor", cursor);
  return params.toString();
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text ?? "";
  row.append(td);
  return td;
}

function time(text) {
  return text ? new Date(text).toLocaleString() : "";
}

function facts(list, entries) {
  list.replaceChildren();
  for (const [term, value] of entries) {
    if (value === undefined || value === null || value === "") continue;
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = typeof value === "object" ? JSON.stringify(value) : String(value);
    list.append(dt, dd);
  }
}

function listItem(list, text) {
  const item = document.createElement("li");
  item.textContent = text;
  list.append(item);
}

// ---- the overview --------------------------------------------------------------------------

// The shop's figures of the last hour, or of fewer minutes when its hour holds more than
// /stats reads.
async function readStats() {
  for (;;) {
    try {
      return (await api(`stats?minutes=${state.overviewMinutes}`)).json;
    } catch (error) {
      const tooMany = error.problem?.errors?.some((e) => e.code === "too_many_transactions");
      const fewer = OVERVIEW_MINUTES.find((minutes) => minutes < state.overviewMinutes);
      if (!tooMany || !fewer) throw error;
      state.overviewMinutes = fewer;
      state.chart?.destroy();
      state.chart = null;
    }
  }
}

async function loadOverview() {
  let stats;
  try {
    stats = await readStats();
  } catch (error) {
    return showProblem(error);
  }
  showProblem(null);
  const sum = (field) => stats.minutes.reduce((total, minute) => total + minute[field], 0);
  const [accepted, stored, alerted] = ["accepted", "stored", "alerted"].map(sum);
  const minutes = state.overviewMinutes;
  $("#overview-totals").textContent = `Last ${minutes} minutes: ${accepted} accepted, ${stored} stored, ${alerted} alerted (updated ${new Date().toLocaleTimeString()}).`;
  const empty = accepted + stored === 0;
  $("#overview-empty").hidden = !empty;
  $("#overview-charts").hidden = empty;
  facts($("#overview-lag"), [
    ["Lag p50", stats.lag.p50_ms === null ? "none yet" : `${stats.lag.p50_ms} ms`],
    ["Lag p99", stats.lag.p99_ms === null ? "none yet" : `${stats.lag.p99_ms} ms`],
    ["Measured over", `${stats.lag.transactions} stored transactions`],
  ]);
  const body = $("#open-alerts tbody");
  body.replaceChildren();
  for (const [rule, count] of Object.entries(stats.open_alerts.by_rule)) {
    const row = document.createElement("tr");
    cell(row, rule);
    cell(row, String(count));
    body.append(row);
  }
  if (!body.children.length) {
    const row = document.createElement("tr");
    cell(row, "No open alert.").colSpan = 2;
    body.append(row);
  }
  // Only the operator's shops get the queue's figures, every shop's.
  $("#overview-pipeline").hidden = !stats.pipeline;
  if (stats.pipeline && !stats.pipeline.available) {
    facts($("#pipeline-facts"), [["The queue", "did not answer in time: its figures are unknown for now"]]);
  } else if (stats.pipeline) {
    facts($("#pipeline-facts"), [
      ["On the queue", `${stats.pipeline.queue_messages} transactions waiting or being processed`],
      ["Dead letters", `${stats.pipeline.dead_letters}${stats.pipeline.dead_letters ? ": see processor dead-letters list" : ""}`],
    ]);
  }
  if (!empty) chart(stats);
}

// The per-minute rates, drawn by uPlot (vendored, see api/console/package.json) and updated
// in place, without a reload.
function chart(stats) {
  const data = [
    stats.minutes.map((minute) => Date.parse(minute.minute) / 1000),
    ...["accepted", "stored", "alerted"].map((field) => stats.minutes.map((minute) => minute[field])),
  ];
  if (state.chart) return state.chart.setData(data);
  state.chart = new uPlot({
    width: chartWidth(),
    height: 260,
    series: [
      {},
      { label: "accepted", stroke: "#2458b3", width: 2 },
      { label: "stored", stroke: "#2e8540", width: 2, dash: [6, 4] },
      { label: "alerted", stroke: "#a8201a", width: 2 },
    ],
    axes: [{}, { label: "per minute" }],
  }, data, $("#rates-chart"));
}

function chartWidth() {
  return Math.max(280, Math.min($("#rates-chart").parentElement.clientWidth, 1000));
}

// ---- the alert inbox -----------------------------------------------------------------------

async function loadAlerts({ more = false, refresh = false } = {}) {
  const list = state.alerts;
  if (!more && !refresh) list.query = filters($("#inbox-filters")).toString();
  let page;
  try {
    ({ json: page } = await api(`alerts?${withPage(list.query, more ? list.cursor : null)}`));
  } catch (error) {
    return showProblem(error);
  }
  showProblem(null);
  const body = $("#alerts tbody");
  const focused = document.activeElement?.dataset?.alertId;
  if (!more) body.replaceChildren();
  for (const alert of page.data) {
    const row = document.createElement("tr");
    row.tabIndex = 0;
    row.dataset.alertId = alert.alert_id;
    cell(row, time(alert.raised_at));
    cell(row, alert.rule);
    cell(row, alert.action);
    cell(row, alert.transaction_id);
    cell(row, alert.review.status + (alert.review.verdict ? ` (${alert.review.verdict})` : ""));
    row.addEventListener("click", () => openAlert(alert.alert_id));
    row.addEventListener("keydown", (event) => {
      if (event.key === "Enter") openAlert(alert.alert_id);
    });
    body.append(row);
    // A refresh keeps the keyboard's place.
    if (alert.alert_id === focused) row.focus();
  }
  list.cursor = page.next_cursor;
  list.more = more || list.more && refresh;
  $("#alerts-more").hidden = !page.has_more;
  $("#alerts-empty").hidden = body.children.length > 0;
}

async function openAlert(alertId) {
  // The last alert asked for is the one shown, whichever answer comes first.
  state.opening = alertId;
  let answer;
  try {
    answer = await api(`alerts/${encodeURIComponent(alertId)}`);
  } catch (error) {
    return state.opening === alertId && showProblem(error);
  }
  if (state.opening !== alertId) return;
  const alert = answer.json;
  state.etag = answer.etag;
  showProblem(null);
  state.alert = alert;
  $("#inbox").hidden = true;
  $("#alert").hidden = false;
  renderAlert(alert);
  $("#review-form select").focus();
  $("#alert-transaction").replaceChildren();
  $("#alert-window").replaceChildren();
  let transaction;
  try {
    ({ json: transaction } = await api(`transactions/${encodeURIComponent(alert.transaction_id)}`));
  } catch (error) {
    if (!shown(alert)) return;
    showProblem(error);
    if (!(error instanceof Stale)) listItem($("#alert-window"), "The transaction could not be read.");
    return;
  }
  if (!shown(alert)) return;
  renderTransaction($("#alert-transaction"), transaction);
  await renderWindow(alert, transaction);
}

// Whether `alert` is still the one on screen: an answer for one left since is dropped.
function shown(alert) {
  return state.alert?.alert_id === alert.alert_id && !$("#alert").hidden;
}

function renderAlert(alert) {
  $("#alert-title").textContent = `Alert: ${alert.rule}`;
  facts($("#alert-facts"), [
    ["Reason", alert.reason],
    ["Action", alert.action],
    ["Decision", alert.decision],
    ["Raised", time(alert.raised_at)],
    ["Status", alert.review.status],
    ["Verdict", alert.review.verdict],
    ...Object.entries(alert.facts || {}),
  ]);
  const history = $("#review-history");
  history.replaceChildren();
  for (const entry of alert.review.history) {
    listItem(history, `${time(entry.at)}: ${entry.status}${entry.verdict ? `, ${entry.verdict}` : ""} by ${entry.by}${entry.note ? `: ${entry.note}` : ""}`);
  }
}

function renderTransaction(list, transaction) {
  facts(list, [
    ["Id", transaction.transaction_id],
    ["Amount", `${transaction.amount} ${transaction.currency}`],
    ["Type", transaction.type],
    ["Time", time(transaction.timestamp)],
    ["Customer", transaction.customer_id],
    ["Payment fingerprint", transaction.payment_fingerprint],
    ["Decision", transaction.decision],
    ["Accepted", time(transaction.accepted_at)],
    ["Stored", time(transaction.processed_at)],
    ["Conflicts", transaction.conflicts?.count || ""],
    ["Metadata", transaction.metadata],
  ]);
}

// The customer's other transactions, newest first: what a windowed rule counted.
// The alert's window: its `window` fact (a windowed rule's, such as 10m), a day for a rule
// without one, up to and including the transaction.
function windowOf(alert, transaction) {
  const match = /^(\d+)([smhd])$/.exec(alert.facts?.window || "");
  const unit = { s: 1e3, m: 6e4, h: 36e5, d: 864e5 };
  const length = match ? Number(match[1]) * unit[match[2]] : unit.d;
  const at = Date.parse(transaction.timestamp);
  return {
    from: new Date(at - length).toISOString(),
    to: new Date(at + 1).toISOString(),
    label: match ? match[0] : "1d",
  };
}

// The other transactions of the alert's window with the same card, then with the same customer.
async function renderWindow(alert, transaction) {
  const list = $("#alert-window");
  const span = windowOf(alert, transaction);
  $("#alert-window-title").textContent = `In its window (${span.label} up to it), newest first`;
  const sides = [
    ["card", "payment_fingerprint", transaction.payment_fingerprint],
    ["customer", "customer_id", transaction.customer_id],
  ];
  for (const [side, filter, value] of sides) {
    if (!value) {
      listItem(list, `The transaction names no ${side}.`);
      continue;
    }
    const params = new URLSearchParams({ [filter]: value, from: span.from, to: span.to, limit: "20" });
    let page;
    try {
      ({ json: page } = await api(`transactions?${params}`));
    } catch (error) {
      return shown(alert) && showProblem(error);
    }
    if (!shown(alert)) return;
    const others = page.data.filter((other) => other.transaction_id !== transaction.transaction_id);
    if (!others.length && !page.has_more) listItem(list, `Same ${side}: no other transaction.`);
    for (const other of others) {
      listItem(list, `Same ${side}: ${time(other.timestamp)}, ${other.transaction_id}, ${other.amount} ${other.currency}, ${other.decision}`);
    }
    // A page stops at 20, or early when the list examined its bound: say so rather than
    // let a short list pass for all of them.
    if (page.has_more) listItem(list, `Same ${side}: more in the window than shown here; the Transactions page lists them all.`);
  }
}

async function review(event) {
  event.preventDefault();
  await sendReview(event.submitter?.value || "acknowledged");
}

async function sendReview(status) {
  if (state.reviewing || !state.alert) return;
  const form = $("#review-form");
  const body = { status };
  const verdict = form.elements.verdict.value;
  const note = form.elements.note.value.trim();
  if (verdict && status !== "open") body.verdict = verdict;
  if (note) body.note = note;
  state.reviewing = true;
  try {
    // Always on the version shown: a review made elsewhere since is a 412, never overwritten.
    const answer = await api(`alerts/${encodeURIComponent(state.alert.alert_id)}/review`, {
      method: "POST",
      body,
      headers: { "if-match": state.etag || "\"0\"" },
    });
    state.alert = answer.json;
    state.etag = answer.etag;
    form.elements.note.value = "";
    showProblem(null);
    renderAlert(state.alert);
  } catch (error) {
    showProblem(error);
    if (error.status === 412 && error.problem?.current) {
      state.alert = error.problem.current;
      state.etag = error.etag;
      renderAlert(state.alert);
    }
  } finally {
    state.reviewing = false;
  }
}

// ---- transactions --------------------------------------------------------------------------

async function loadTransactions({ more = false } = {}) {
  const list = state.transactions;
  if (!more) list.query = filters($("#transaction-filters")).toString();
  let page;
  try {
    ({ json: page } = await api(`transactions?${withPage(list.query, more ? list.cursor : null)}`));
  } catch (error) {
    return showProblem(error);
  }
  showProblem(null);
  const body = $("#transaction-list tbody");
  if (!more) body.replaceChildren();
  for (const transaction of page.data) {
    const row = document.createElement("tr");
    row.tabIndex = 0;
    cell(row, time(transaction.timestamp));
    cell(row, transaction.transaction_id);
    cell(row, `${transaction.amount} ${transaction.currency}`);
    cell(row, transaction.type);
    cell(row, transaction.customer_id);
    cell(row, transaction.decision);
    const open = () => openTransaction(transaction);
    row.addEventListener("click", open);
    row.addEventListener("keydown", (event) => {
      if (event.key === "Enter") open();
    });
    body.append(row);
  }
  list.cursor = page.next_cursor;
  $("#transactions-more").hidden = !page.has_more;
  $("#transactions-empty").hidden = body.children.length > 0;
}

function openTransaction(transaction) {
  $("#transactions").hidden = true;
  $("#transaction").hidden = false;
  $("#transaction-title").textContent = `Transaction ${transaction.transaction_id}`;
  renderTransaction($("#transaction-facts"), transaction);
  const list = $("#transaction-alerts");
  list.replaceChildren();
  for (const alert of transaction.alerts) {
    listItem(list, `${alert.rule} (${alert.action}): ${alert.reason}; ${alert.review_status}${alert.verdict ? `, ${alert.verdict}` : ""}`);
  }
  if (!transaction.alerts.length) listItem(list, "None: allowed.");
  $("#transaction .back").focus();
}

// ---- rules -------------------------------------------------------------------------------

// The rules the processor runs, each with its hits (live and shadow) over the overview's
// minutes.
async function loadRules() {
  let rules;
  try {
    ({ json: rules } = await api("rules"));
  } catch (error) {
    return showProblem(error);
  }
  // Without the figures the rules still show, with their hits unknown.
  let stats = null;
  try {
    stats = await readStats();
    showProblem(null);
  } catch (error) {
    showProblem(error);
  }
  $("#rules-source").textContent = rules.unreadable
    ? `The rules in ${rules.source} do not read: ${rules.unreadable}. A processor starting now refuses to start; those running keep the rules they started with.`
    : `From ${rules.source === "default" ? "the built-in rule (no rules file or parameter is set)" : rules.source}, version ${rules.version}: every alert these rules raise carries this version.`;
  $("#rules-hits-title").textContent = `Hits, last ${state.overviewMinutes} minutes`;
  const body = $("#rules-in-force tbody");
  body.replaceChildren();
  const hits = { ...(stats?.hits_by_rule || {}) };
  for (const rule of rules.rules) {
    const row = document.createElement("tr");
    const count = stats ? String(hits[rule.name] ?? 0) : "unknown";
    delete hits[rule.name];
    for (const value of [rule.name, rule.kind, rule.mode, rule.action, rule.description, count]) cell(row, value);
    body.append(row);
  }
  // Hits of rules no longer in force (renamed, removed, or of another processor's version).
  for (const [name, count] of Object.entries(hits)) {
    const row = document.createElement("tr");
    for (const value of [name, "", "", "", "not in force now", String(count)]) cell(row, value);
    body.append(row);
  }
}

async function backtest(event) {
  event.preventDefault();
  const form = $("#backtest-form");
  const button = form.querySelector("button");
  const params = new URLSearchParams();
  for (const name of ["from", "to"]) {
    const value = form.elements[name].value.trim();
    if (value) params.set(name, value);
  }
  button.disabled = true;
  button.textContent = "Running…";
  try {
    const { json } = await api(`rules/backtest?${params}`, { method: "POST", text: form.elements.rules.value });
    showProblem(null);
    renderBacktest(json);
  } catch (error) {
    showProblem(error);
    $("#backtest-result").hidden = true;
  } finally {
    button.disabled = false;
    button.textContent = "Run the backtest";
  }
}

function renderBacktest(report) {
  const changed = report.decisions_changed;
  $("#backtest-summary").textContent = `${report.transactions} transactions of the period replayed (${report.read} read), rules version ${report.rules_version}; ${changed} would change decision.`;
  const body = $("#backtest-rules tbody");
  body.replaceChildren();
  for (const rule of report.rules) {
    const row = document.createElement("tr");
    for (const value of [rule.name, rule.kind, rule.mode, rule.action, rule.fired, rule.reviewed_fraud, rule.reviewed_legitimate, rule.examples.join(", ")]) {
      cell(row, String(value));
    }
    body.append(row);
  }
  const diff = report.diff;
  $("#backtest-diff").textContent = `${diff.added} alerts added, ${diff.dropped} dropped, ${diff.unchanged} unchanged.`;
  const changes = $("#backtest-changes");
  changes.replaceChildren();
  for (const [sign, hits] of [["added", diff.added_examples], ["dropped", diff.dropped_examples]]) {
    for (const hit of hits) listItem(changes, `${sign}: ${hit.rule} on ${hit.transaction_id}`);
  }
  $("#backtest-result").hidden = false;
}

// ---- keyboard ------------------------------------------------------------------------------

function keyboard(event) {
  // Shortcuts are single keys: never with a modifier (Ctrl+R still reloads), never repeated,
  // never while typing.
  if (event.ctrlKey || event.metaKey || event.altKey || event.repeat || event.isComposing) return;
  if (event.target.closest("input, textarea, select")) return;
  if (!$("#alert").hidden && (event.key === "a" || event.key === "r")) {
    event.preventDefault();
    sendReview(event.key === "a" ? "acknowledged" : "resolved");
  } else if (!$("#inbox").hidden && (event.key === "j" || event.key === "k")) {
    const rows = [...document.querySelectorAll("#alerts tbody tr")];
    if (!rows.length) return;
    const at = rows.indexOf(document.activeElement);
    const next = event.key === "j" ? Math.min(at + 1, rows.length - 1) : Math.max(at - 1, 0);
    rows[next].focus();
  } else if (event.key === "Escape" && !$("#alert").hidden) {
    back("inbox");
  }
}

function back(page) {
  $("#alert").hidden = true;
  $("#transaction").hidden = true;
  $(`#${page}`).hidden = false;
  if (page === "inbox") {
    state.alerts.more = false;
    loadAlerts({ refresh: true });
  }
}

// ---- wiring --------------------------------------------------------------------------------

$("#sign-in-form").addEventListener("submit", signIn);
$("#sign-out").addEventListener("click", () => signOut());
$("#inbox-filters").addEventListener("submit", (event) => {
  event.preventDefault();
  state.alerts.more = false;
  loadAlerts();
});
$("#transaction-filters").addEventListener("submit", (event) => {
  event.preventDefault();
  loadTransactions();
});
$("#alerts-more").addEventListener("click", () => loadAlerts({ more: true }));
$("#transactions-more").addEventListener("click", () => loadTransactions({ more: true }));
$("#review-form").addEventListener("submit", review);
$("#backtest-form").addEventListener("submit", backtest);
for (const button of document.querySelectorAll("[data-back]")) {
  button.addEventListener("click", () => back(button.dataset.back));
}
window.addEventListener("hashchange", route);
window.addEventListener("resize", () => state.chart?.setSize({ width: chartWidth(), height: 260 }));
document.addEventListener("keydown", keyboard);

const kept = sessionStorage.getItem(KEY);
if (kept) start(kept);
else signOut();

// The console in a real browser (Debian's Chromium, driven by playwright-core), against the real
// API binary that api/tests/console_browser.rs started. Environment: BASE (the API's URL),
// SHOP_KEY and OTHER_KEY (two shops' keys), SCREENSHOTS (a folder, optional).
//
// Exits non-zero with the failed step on stderr.

import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const { BASE, SHOP_KEY, OTHER_KEY, SCREENSHOTS } = process.env;
const CONSOLE = `${BASE}/console/`;
const WAIT = 30_000;

/** The API, as a shop's own program would call it, beside the browser. */
async function api(path, key, init = {}) {
  const response = await fetch(`${BASE}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json", ...(init.headers || {}) },
  });
  const text = await response.text();
  return { status: response.status, json: text ? JSON.parse(text) : null, headers: response.headers };
}

async function shot(page, name) {
  if (SCREENSHOTS) await page.screenshot({ path: `${SCREENSHOTS}/${name}.png`, fullPage: true });
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  // This machine's network is closed: Chromium's own background calls would only be refused.
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
const page = await context.newPage();

// Offline: every request the page makes goes to the API's origin.
const origin = new URL(BASE).origin;
const elsewhere = [];
page.on("request", (request) => {
  if (new URL(request.url()).origin !== origin) elsewhere.push(request.url());
});
const consoleErrors = [];
page.on("console", (message) => {
  // A refusal the console shows in words (401, 412) is also logged by Chromium as a failed load.
  if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) {
    consoleErrors.push(message.text());
  }
});
page.on("pageerror", (error) => consoleErrors.push(String(error)));

try {
  // The page and its policy.
  const answer = await page.goto(CONSOLE);
  assert.equal(answer.status(), 200);
  const policy = answer.headers()["content-security-policy"];
  assert.match(policy, /script-src 'self'/);
  assert.match(policy, /default-src 'none'/);
  assert.doesNotMatch(policy, /unsafe-inline|unsafe-eval|https?:/);
  await shot(page, "sign-in");

  // A wrong key is refused, and nothing is kept.
  await page.getByLabel("API key").fill("not-a-key");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByText("The API refused this key").waitFor({ timeout: WAIT });
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);

  // Sign in; the key is in no URL and not in the page.
  await page.getByLabel("API key").fill(SHOP_KEY);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Overview" }).waitFor({ timeout: WAIT });
  assert.ok(!page.url().includes(SHOP_KEY));
  assert.ok(!(await page.content()).includes(SHOP_KEY));
  // An empty shop's overview explains itself instead of showing empty charts.
  await page.getByText("nothing to chart yet").waitFor({ timeout: WAIT });
  await shot(page, "overview-empty");
  await page.getByRole("link", { name: "Alert inbox" }).click();
  await page.getByRole("heading", { name: "Alert inbox" }).waitFor({ timeout: WAIT });

  // A fresh alert arrives without a reload. Two hours before it, the same card paid for another
  // customer: in the alert's window (a day, for a rule without one), and before the overview's.
  const id = `console-${Date.now()}`;
  const card = "fp_console_card";
  const earlier = await api("/transactions", SHOP_KEY, {
    method: "POST",
    body: JSON.stringify({ transaction_id: `${id}-card`, amount: "3.00", currency: "USD", timestamp: new Date(Date.now() - 2 * 3600e3).toISOString(), customer_id: "cust-elsewhere", payment_fingerprint: card }),
  });
  assert.equal(earlier.status, 202, JSON.stringify(earlier.json));
  const posted = await api("/transactions", SHOP_KEY, {
    method: "POST",
    body: JSON.stringify({ transaction_id: id, amount: "2500.00", currency: "USD", timestamp: new Date().toISOString(), customer_id: "cust-console", payment_fingerprint: card }),
  });
  assert.equal(posted.status, 202, JSON.stringify(posted.json));
  const row = page.locator("#alerts tbody tr", { hasText: id });
  await row.waitFor({ timeout: WAIT });
  await shot(page, "inbox");

  // Open it from the keyboard and resolve it with a verdict and a note.
  await row.focus();
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: /Alert: / }).waitFor({ timeout: WAIT });
  await page.locator("#alert-transaction").getByText(id).waitFor({ timeout: WAIT });
  // Its window: the same card's other transaction, and none of the same customer.
  await page.locator("#alert-window").getByText(new RegExp(`^Same card: .*, ${id}-card, 3.00 USD, allow$`)).waitFor({ timeout: WAIT });
  await page.locator("#alert-window").getByText("Same customer: no other transaction.").waitFor({ timeout: WAIT });
  await page.locator("#review-form").getByLabel("Verdict").selectOption("fraud");
  await page.locator("#review-form").getByLabel("Note").fill("card reported stolen");
  await shot(page, "alert");
  // Resolved from the keyboard: out of the note's field first, where keys are text.
  await page.locator("#alert-title").click();
  await page.keyboard.press("r");
  await page.locator("#review-history").getByText("card reported stolen").waitFor({ timeout: WAIT });
  const alertId = await row.getAttribute("data-alert-id");
  const stored = await api(`/alerts/${alertId}`, SHOP_KEY);
  assert.equal(stored.json.review.status, "resolved");
  assert.equal(stored.json.review.verdict, "fraud");

  // A stale review shows the conflict and the newer state.
  const reopened = await api(`/alerts/${alertId}/review`, SHOP_KEY, {
    method: "POST",
    body: JSON.stringify({ status: "open", note: "reopened elsewhere" }),
  });
  assert.equal(reopened.status, 200, JSON.stringify(reopened.json));
  await page.keyboard.press("a");
  await page.getByText("Someone else reviewed this alert").waitFor({ timeout: WAIT });
  await page.locator("#review-history").getByText("reopened elsewhere").waitFor({ timeout: WAIT });

  // The overview: the figures, the open alert by rule, and a chart that updates without a reload.
  await page.getByRole("link", { name: "Overview" }).click();
  await page.getByText("Last 60 minutes: 1 accepted, 1 stored, 1 alerted").waitFor({ timeout: WAIT });
  await page.locator("#open-alerts tbody tr", { hasText: "amount_exceeds_threshold" }).getByText("1").waitFor({ timeout: WAIT });
  await page.locator("#rates-chart canvas").waitFor({ timeout: WAIT });
  const small = await api("/transactions", SHOP_KEY, {
    method: "POST",
    body: JSON.stringify({ transaction_id: `${id}-small`, amount: "5.00", currency: "USD", timestamp: new Date().toISOString() }),
  });
  assert.equal(small.status, 202);
  await page.getByText("Last 60 minutes: 2 accepted, 2 stored, 1 alerted").waitFor({ timeout: WAIT });
  // The operator's shop also sees the whole queue, drained, with no dead letter.
  await page.locator("#pipeline-facts").getByText("0 transactions waiting or being processed").waitFor({ timeout: WAIT });
  await page.locator("#pipeline-facts").getByText("0", { exact: true }).waitFor({ timeout: WAIT });
  await shot(page, "overview");

  // Transactions: the search finds it, and its detail has the alert and the decision.
  await page.getByRole("link", { name: "Transactions" }).click();
  await page.getByLabel("Customer").fill("cust-console");
  await page.getByRole("button", { name: "Search" }).click();
  // Exactly this id: the list shows every transaction (the small one too) until the search answers.
  const transaction = page.locator("#transaction-list tbody tr").filter({ has: page.getByRole("cell", { name: id, exact: true }) });
  await transaction.waitFor({ timeout: WAIT });
  await shot(page, "transactions");
  // Every choice of every filter is one the API takes: none is answered with a problem.
  for (const form of ["#inbox-filters", "#transaction-filters"]) {
    const link = form === "#inbox-filters" ? "Alert inbox" : "Transactions";
    await page.getByRole("link", { name: link }).click();
    for (const select of await page.locator(`${form} select`).all()) {
      const [name, initial] = [await select.getAttribute("name"), await select.inputValue()];
      for (const value of await select.locator("option").evaluateAll((options) => options.map((o) => o.value))) {
        await select.selectOption(value);
        // This submit's read, not a refresh's: it carries the chosen value.
        const answered = page.waitForResponse((r) => /\/(alerts|transactions)\?/.test(r.url())
          && (value === "" || new URL(r.url()).searchParams.get(name) === value));
        await page.locator(`${form} button[type=submit]`).click();
        const response = await answered;
        assert.equal(response.status(), 200, `${form} ${name}=${value}: ${response.status()}`);
      }
      await select.selectOption(initial);
    }
  }
  await page.getByRole("link", { name: "Transactions" }).click();
  await page.getByLabel("Customer").fill("cust-console");
  await page.getByRole("button", { name: "Search" }).click();
  await transaction.waitFor({ timeout: WAIT });
  await transaction.click();
  await page.locator("#transaction-alerts").getByText("amount_exceeds_threshold").waitFor({ timeout: WAIT });
  await shot(page, "transaction");

  // Answers the API gives under load or outage, made here by holding GET /rules back (the API's
  // own 404, 429 and 503 are tested against the binary): each is shown in words, with its
  // Retry-After.
  const problem = (status, title, headers = {}) => async (route) => route.fulfill({
    status,
    headers: { "content-type": "application/problem+json", ...headers },
    body: JSON.stringify({ type: "about:blank", title, status, detail: title }),
  });
  for (const [status, title, headers, words] of [
    [503, "Service unavailable", { "retry-after": "7" }, "The service is unavailable for the moment. Try again in 7 s."],
    [429, "Too many requests", { "retry-after": "2" }, "Too many requests for now. Try again in 2 s."],
    [404, "no such thing", {}, "Not found: it does not exist, or belongs to another shop (no such thing)."],
  ]) {
    await page.route("**/rules", problem(status, title, headers));
    await page.getByRole("link", { name: "Rules" }).click();
    await page.locator("#problem").getByText(words, { exact: true }).waitFor({ timeout: WAIT });
    await page.unroute("**/rules");
    await page.getByRole("link", { name: "Transactions" }).click();
  }

  // Rules: those in force with their version and hits, then a candidate backtested on the
  // shop's history, its per-rule result and its diff.
  await page.getByRole("link", { name: "Rules" }).click();
  const inForce = page.locator("#rules-in-force tbody tr", { hasText: "amount_exceeds_threshold" });
  await inForce.getByRole("cell", { name: "1", exact: true }).waitFor({ timeout: WAIT });
  await page.locator("#rules-source").getByText(/^From the built-in rule .*, version \S+: every alert/).waitFor({ timeout: WAIT });
  await page.getByText("Hits, last 60 minutes").waitFor({ timeout: WAIT });
  const rules = page.locator("#backtest-form").getByLabel("Rules file (TOML)");
  await rules.fill('[[rule]]\nname = "over_2000"\nkind = "threshold"\nabove = "2000"\n');
  await page.getByRole("button", { name: "Run the backtest" }).click();
  await page.locator("#backtest-rules tbody tr", { hasText: "over_2000" }).getByText(id).waitFor({ timeout: WAIT });
  await page.locator("#backtest-changes").getByText(`added: over_2000 on ${id}`).waitFor({ timeout: WAIT });
  await page.locator("#backtest-changes").getByText(`dropped: amount_exceeds_threshold on ${id}`).waitFor({ timeout: WAIT });
  await shot(page, "rules");
  await rules.fill('[[rule]]\nname = "broken"\nkind = "threshold"\n');
  await page.getByRole("button", { name: "Run the backtest" }).click();
  await page.locator("#problem").getByText("422").waitFor({ timeout: WAIT });

  // A phone's width still reads.
  await page.setViewportSize({ width: 390, height: 800 });
  await shot(page, "transaction-phone");
  await page.setViewportSize({ width: 1280, height: 800 });

  // Signing out forgets the key, even with a read of the first shop's still on its way: the
  // alert is opened with its answer held back, the next shop signs in, and when the answer is
  // let go it is dropped, not shown to the second shop.
  await page.getByRole("link", { name: "Alert inbox" }).click();
  let release;
  const held = new Promise((resolve) => { release = resolve; });
  await page.route(`**/alerts/${alertId}`, async (route) => {
    await held;
    await route.continue().catch(() => {});
  });
  const settled = new Promise((resolve) => {
    const done = (request) => request.url().endsWith(`/alerts/${alertId}`) && resolve();
    page.on("requestfinished", done);
    page.on("requestfailed", done);
  });
  await page.locator("#alerts tbody tr", { hasText: id }).click();
  await page.getByRole("button", { name: "Sign out" }).click();
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  await page.getByLabel("API key").fill(OTHER_KEY);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByText("nothing to chart yet").waitFor({ timeout: WAIT });
  assert.ok(await page.locator("#overview-pipeline").isHidden(), "a shop that is not the operator's sees the queue");
  release();
  await settled;
  await page.unroute(`**/alerts/${alertId}`);
  assert.ok(await page.locator("#alert").isHidden(), "the first shop's alert was shown");
  assert.ok(!(await page.content()).includes(id));
  await page.goto(`${CONSOLE}#inbox`);
  await page.getByRole("heading", { name: "Alert inbox" }).waitFor({ timeout: WAIT });
  await page.locator("#alerts-empty").waitFor({ timeout: WAIT });
  assert.equal(await page.locator("#alerts tbody tr").count(), 0);
  await page.getByRole("link", { name: "Transactions" }).click();
  await page.locator("#transactions-empty").waitFor({ timeout: WAIT });
  assert.ok(!(await page.content()).includes(id));

  assert.deepEqual(elsewhere, [], "requests left the origin");
  assert.deepEqual(consoleErrors, [], "the page logged errors");
  console.log("console: every step passed");
} catch (error) {
  await shot(page, "failure").catch(() => {});
  console.error(error);
  process.exitCode = 1;
} finally {
  await browser.close();
}

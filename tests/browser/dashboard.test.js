// The dashboard in a real browser: Debian's headless Chromium driven by
// puppeteer-core (no downloaded browser). One authmock (port 0, an admin
// token, a scenario directory of its own) and one page; logins are driven
// from outside with fetch, and the test asserts what a person would see.
// Screenshots go to $ARTIFACTS (the build directory under meson).
//
//   cd tests/browser && npm ci && AUTHMOCK=../../build/authmock node --test dashboard.test.js
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert');
const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const puppeteer = require('puppeteer-core');

const AUTHMOCK = process.env.AUTHMOCK;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = process.env.ARTIFACTS || path.join(__dirname, 'artifacts');
const ROOT = path.resolve(__dirname, '..', '..');
const TOKEN = 'dashboard-test-token';
const NS = 'browser-' + process.pid;
const MESH_HEADERS = {
  'Content-Type': 'application/json',
  'X-Client-Id': 'test-client-id',
  'X-Client-Secret': 'test-client-secret',
  'X-Authmock-Namespace': NS,
};

let server;
let base;
let browser;
let page;
let tmp;
const pageErrors = [];

// ---- helpers ---------------------------------------------------------------

async function admin(p, init = {}) {
  const r = await fetch(base + '/__admin' + p, {
    ...init,
    headers: { Authorization: 'Bearer ' + TOKEN, 'Content-Type': 'application/json', ...(init.headers || {}) },
  });
  const text = await r.text();
  assert.ok(r.ok, `${init.method || 'GET'} /__admin${p}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

async function mesh(body) {
  const r = await fetch(base + '/api/v1/authenticate?userId=browser-1', {
    method: 'POST', headers: MESH_HEADERS, body: JSON.stringify(body),
  });
  assert.strictEqual(r.status, 200);
  return r.json();
}

async function onlyoffice(p, body) {
  const r = await fetch(base + '/api/2.0/authentication' + p, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-Authmock-Namespace': NS },
    body: JSON.stringify(body),
  });
  return { status: r.status, body: await r.json() };
}

// The newest journal entry of the test's namespace.
async function newestEntry() {
  const { requests } = await admin(`/requests?namespace=${NS}&limit=1`);
  return requests[0];
}

// The page notes when each request row is added (its own clock is the
// machine's, as ours is), so what is timed is the stream and the page, not
// the round trips of this test's CDP calls.
async function watchRows() {
  await page.evaluate(() => {
    if (window.rowSeen) return;
    window.rowSeen = {};
    new MutationObserver((records) => {
      for (const r of records) {
        for (const n of r.addedNodes) if (n.dataset && n.dataset.id) window.rowSeen[n.dataset.id] ??= Date.now();
      }
    }).observe(document.querySelector('#requests tbody'), { childList: true });
  });
}

// Waits until the entry's row is in the table; returns how long after `since`
// (a Date.now() of this process) it was added.
async function rowAppears(id, since) {
  await page.waitForSelector(`#requests tbody tr[data-id="${id}"]`, { timeout: 5000 });
  const seen = await page.evaluate((i) => window.rowSeen && window.rowSeen[i], String(id));
  return (seen || Date.now()) - since;
}

// A screenshot of the viewport, or down to the bottom of `until` (a selector).
async function shot(name, until) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, `dashboard-${name}.png`);
  const vp = page.viewport();
  let clip;
  if (until) {
    const box = await (await page.$(until)).boundingBox();
    clip = { x: 0, y: 0, width: vp.width, height: Math.min(vp.height, Math.ceil(box.y + box.height + 16)) };
  }
  await page.screenshot({ path: file, clip });
  return file;
}

async function tab(name) {
  await page.click(`#tab-${name}`);
  await page.waitForFunction((n) => !document.querySelector(`#view-${n}`).hidden, {}, name);
}

async function graphState(id) {
  return page.evaluate((sel) => {
    const g = document.querySelector(`${sel} g.node.current`);
    return g ? g.dataset.state : null;
  }, '#' + id);
}

async function waitGraphState(state) {
  await page.waitForFunction((st) => {
    const g = document.querySelector('#session-graph g.node.current');
    return g && g.dataset.state === st;
  }, { timeout: 5000 }, state);
}

async function selectSession(id) {
  await page.waitForFunction((i, ns) => !!document.querySelector(`#sessions tr[data-id="${i}"][data-namespace="${ns}"]`),
    { timeout: 5000 }, id, NS);
  // Found and clicked in one step: the list is redrawn as requests arrive.
  await page.$eval(`#sessions tr[data-id="${id}"][data-namespace="${NS}"]`, (tr) => tr.click());
  await page.waitForFunction((i) => {
    const h = document.querySelector('#session-detail h2');
    return h && h.textContent === i;
  }, { timeout: 5000 }, id);
}

// RFC 6238: HMAC-SHA1 over the secret's UTF-8 bytes, 30 s, 6 digits.
function totp(secret, epochSeconds) {
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(Math.floor(epochSeconds / 30)));
  const mac = crypto.createHmac('sha1', Buffer.from(secret, 'utf8')).update(msg).digest();
  const o = mac[19] & 15;
  return String((mac.readUInt32BE(o) & 0x7fffffff) % 1000000).padStart(6, '0');
}

// ---- the server and the browser ---------------------------------------------

before(async () => {
  assert.ok(AUTHMOCK, 'set AUTHMOCK to the authmock binary');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'authmock-dashboard-'));
  fs.cpSync(path.join(ROOT, 'scenarios'), path.join(tmp, 'scenarios'), { recursive: true });
  server = spawn(AUTHMOCK, ['--port', '0', '--quiet', '--admin-token', TOKEN, '--scenarios', path.join(tmp, 'scenarios')],
    { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise((resolve, reject) => {
    readline.createInterface({ input: server.stdout }).once('line', resolve);
    server.once('exit', (code) => reject(new Error('authmock exited ' + code)));
  });
  base = line.match(/listening on (http:\/\/127\.0\.0\.1:\d+)/)[1];
  const args = ['--headless=new', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage', '--hide-scrollbars', '--window-size=1440,900'];
  if (process.getuid && process.getuid() === 0) args.push('--no-sandbox');
  browser = await puppeteer.launch({
    executablePath: CHROMIUM, headless: true, args, userDataDir: path.join(tmp, 'profile'),
    defaultViewport: { width: 1440, height: 900 },
  });
  page = await browser.newPage();
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  // Failed loads are the network's business (a 401 before the token is the
  // point); anything else the page logs as an error fails the last test.
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) pageErrors.push(m.text());
  });
  page.on('dialog', (d) => d.accept());
});

after(async () => {
  if (browser) await browser.close();
  if (server && server.exitCode === null) {
    const exited = new Promise((resolve) => server.once('exit', resolve));
    server.kill('SIGTERM');
    const code = await exited;
    assert.strictEqual(code, 0, 'authmock exits 0 on SIGTERM');
  }
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

// ---- the tests, in order: each builds on the page the last one left ---------

test('the page and its assets are small and come from the binary', async () => {
  let total = 0;
  for (const f of ['', '/app.js', '/app.css']) {
    const r = await fetch(base + '/__admin/ui' + f);
    assert.strictEqual(r.status, 200, f);
    total += (await r.arrayBuffer()).byteLength;
  }
  assert.ok(total < 150 * 1024, `assets take ${total} bytes`);
  const events = await fetch(base + '/__admin/events');
  assert.strictEqual(events.status, 401, 'the event stream needs the token');
  await events.body?.cancel();
});

test('the token is asked once and the event stream goes live', async () => {
  await page.goto(base + '/__admin/ui', { waitUntil: 'domcontentloaded' });
  await page.waitForSelector('#token-dialog[open]', { timeout: 10000 });
  await page.type('#token-form input[name=token]', TOKEN);
  await page.click('#token-form button[value=ok]');
  await page.waitForFunction(() => document.querySelector('#live').classList.contains('on'), { timeout: 10000 });
  assert.strictEqual(await page.evaluate(() => sessionStorage.getItem('authmock.adminToken')), TOKEN);
  assert.match(await page.$eval('#version', (e) => e.textContent), /^\d+\.\d+\.\d+$/);
  // Asked once: a reload in the same tab goes live without asking again.
  await page.reload({ waitUntil: 'domcontentloaded' });
  await page.waitForFunction(() => document.querySelector('#live').classList.contains('on'), { timeout: 10000 });
  assert.strictEqual(await page.$('#token-dialog[open]'), null);
});

test('a mesh SMS-MFA login appears live, explained, with its state drawn', async () => {
  await watchRows();
  // Step 1: the password.
  const t0 = Date.now(); // the row may be up before the answer is read here
  const first = await mesh({ type: 'robinhood', username: 'mfa.sms@example.com', password: 'pass123' });
  assert.strictEqual(first.content.status, 'mfaRequired');
  const e1 = await newestEntry();
  const ms1 = await rowAppears(e1.id, t0);
  console.log(`mesh password step: the row was on the page ${ms1} ms after the request was sent`);
  assert.ok(ms1 < 1000, `the row appeared after ${ms1} ms`);
  const row = await page.$eval(`#requests tr[data-id="${e1.id}"]`, (tr) => tr.textContent);
  assert.match(row, /\/api\/v1\/authenticate/);
  assert.match(row, new RegExp(NS));

  await page.$eval(`#requests tr[data-id="${e1.id}"]`, (tr) => tr.click());
  await page.waitForSelector('#explanation');
  // The explanation names the scenario, the binding and the step the engine
  // took (the journal's match), with the step's condition as written.
  assert.ok(e1.match, 'the journal explains the request');
  assert.strictEqual(e1.match.scenario, 'mesh-mfa-sms');
  assert.deepStrictEqual([e1.match.step.state, e1.match.step.index], ['password', 1]);
  await page.waitForFunction(() => /`password = pass123`/.test(document.querySelector('#explanation').textContent));
  const ex1 = await page.$eval('#explanation', (d) => ({ text: d.textContent, scenario: d.dataset.scenario, step: d.dataset.step }));
  assert.strictEqual(ex1.scenario, 'mesh-mfa-sms');
  assert.strictEqual(ex1.step, '2');
  assert.match(ex1.text, /^scenario mesh-mfa-sms; bound by username = mfa\.sms@example\.com, schemeType = usernamePassword; state password, step 2 `password = pass123` → mfaRequired/);
  assert.match(ex1.text, /now in state code/);
  await shot('requests');

  // The session's graph: the code state.
  await tab('sessions');
  await selectSession('mesh:browser-1:robinhood');
  await waitGraphState('code');
  assert.strictEqual(await page.$eval('#session-state', (e) => e.textContent), 'code');
  const nodes = await page.$$eval('#session-graph g.node', (gs) => gs.map((g) => g.dataset.state));
  assert.deepStrictEqual(nodes.sort(), ['code', 'emailCode', 'password']);
  assert.match(await page.$eval('#session-graph', (g) => g.textContent), /limit failures: 5 in 60 s/);
  await shot('docs', '#session-detail'); // docs/dashboard.png is this one

  // Step 2: the code; the graph follows without a click.
  const second = await mesh({ type: 'robinhood', mfaCode: '123456' });
  assert.strictEqual(second.content.status, 'succeeded');
  await waitGraphState('password');
  const e2 = await newestEntry();
  await rowAppears(e2.id, Date.now());
  await shot('sessions');

  // The explanation of the second step.
  await tab('requests');
  await page.$eval(`#requests tr[data-id="${e2.id}"]`, (tr) => tr.click());
  await page.waitForFunction((id) => document.querySelector('#req-detail h2') &&
    document.querySelector('#requests tr[aria-selected="true"]')?.dataset.id === String(id), {}, e2.id);
  assert.deepStrictEqual([e2.match.step.state, e2.match.step.index, e2.outcome], ['code', 1, 'succeeded']);
  await page.waitForFunction(() => /`mfaCode = 123456`/.test(document.querySelector('#explanation').textContent));
  const ex2 = await page.$eval('#explanation', (d) => ({ text: d.textContent, scenario: d.dataset.scenario, step: d.dataset.step }));
  assert.strictEqual(ex2.scenario, 'mesh-mfa-sms');
  assert.strictEqual(ex2.step, '2');
  assert.match(ex2.text, /bound by username = mfa\.sms@example\.com, schemeType = usernamePassword \(kept by its session\); state code, step 2 `mfaCode = 123456` → succeeded/);
  // The detail pane shows the answer the journal kept.
  assert.match(await page.$eval('#req-detail', (d) => d.textContent), /"status": "succeeded"/);
});

test('forcing a state from the graph view', async () => {
  await tab('sessions');
  await selectSession('mesh:browser-1:robinhood');
  await page.select('#force-state', 'emailCode');
  await page.click('#force-button');
  await waitGraphState('emailCode');
  const list = await admin(`/sessions?namespace=${NS}`);
  assert.strictEqual(list.find((x) => x.id === 'mesh:browser-1:robinhood').state, 'emailCode');
  // The forced state answers: an email code now.
  const r = await mesh({ type: 'robinhood', mfaCode: '123456' });
  assert.strictEqual(r.content.status, 'succeeded');
  await waitGraphState('password');
});

test('an onlyoffice TOTP login with the code the accounts view shows', async () => {
  await tab('accounts');
  const sel = '#accounts .totp-code[data-user="tfa.app@example.com"]';
  await page.waitForFunction((s) => /^\d{6}$/.test(document.querySelector(s)?.textContent || ''), { timeout: 10000 }, sel);
  // Away from a roll-over, the code shown is the RFC 6238 code at the mock clock.
  let shown;
  let expected;
  for (let i = 0; i < 3; i++) {
    const clock = await admin('/clock');
    const now = Date.parse(clock.now) / 1000;
    if (30 - (now % 30) < 2.5) {
      await new Promise((r) => setTimeout(r, 3000));
      continue;
    }
    await page.waitForFunction((s, c) => document.querySelector(s).textContent === c, { timeout: 3000 }, sel, totp('abcdefghij', now))
      .catch(() => {});
    shown = await page.$eval(sel, (e) => e.textContent);
    expected = totp('abcdefghij', now);
    const left = Number(await page.$eval(`#acct-tfa\\.app\\@example\\.com [data-role=left]`, (e) => e.dataset.seconds));
    assert.ok(left >= 1 && left <= 30, `seconds left: ${left}`);
    break;
  }
  assert.strictEqual(shown, expected, 'the TOTP code shown is the RFC 6238 code at the mock clock');
  const route = await admin('/onlyoffice/totp?user=tfa.app@example.com');
  assert.ok([route.code, route.nextCode].includes(shown), 'and the one GET /__admin/onlyoffice/totp gives');
  assert.match(await page.$eval('#acct-tfa\\.app\\@example\\.com', (e) => e.textContent), new RegExp(route.tfaKey));
  await shot('accounts');
  await page.$eval('#acct-tfa\\.app\\@example\\.com', (e) => e.scrollIntoView({ block: 'center' }));
  await shot('accounts-totp');

  await watchRows();
  const t0 = Date.now();
  const first = await onlyoffice('', { userName: 'tfa.app@example.com', password: 'pass123' });
  assert.strictEqual(first.status, 200);
  assert.strictEqual(first.body.response.tfa, true);
  const e1 = await newestEntry();
  const ms = await rowAppears(e1.id, t0);
  console.log(`onlyoffice password step: the row was on the page ${ms} ms after the request was sent`);
  assert.ok(ms < 1000, `the row appeared after ${ms} ms`);
  const code = await page.$eval(sel, (e) => e.textContent);
  const second = await onlyoffice('/' + code, { userName: 'tfa.app@example.com', password: 'pass123', code });
  assert.strictEqual(second.status, 200, JSON.stringify(second.body));
  assert.ok(second.body.response.token);
  const e2 = await newestEntry();
  await tab('requests');
  await rowAppears(e2.id, Date.now());
  await page.$eval(`#requests tr[data-id="${e2.id}"]`, (tr) => tr.click());
  await page.waitForFunction((id) => document.querySelector('#requests tr[aria-selected="true"]')?.dataset.id === String(id), {}, e2.id);
  await page.waitForFunction(() => /`passwordValid = true`/.test(document.querySelector('#explanation').textContent));
  const ex = await page.$eval('#explanation', (d) => ({ text: d.textContent, scenario: d.dataset.scenario, step: d.dataset.step }));
  assert.strictEqual(ex.scenario, 'onlyoffice-tfa-app');
  assert.strictEqual(ex.step, String(e2.match.step.index + 1));
  assert.match(ex.text, new RegExp(`scenario onlyoffice-tfa-app; bound by userName = tfa\\.app@example\\.com; state ready, step ${e2.match.step.index + 1} \`passwordValid = true\` → ${e2.outcome}`));
  // The path shows {code}, never the code.
  assert.doesNotMatch(await page.$eval(`#requests tr[data-id="${e2.id}"]`, (tr) => tr.textContent), new RegExp(code));

  await tab('sessions');
  await selectSession('onlyoffice:tfa.app@example.com|127.0.0.1');
  await waitGraphState('ready');
});

test('filters narrow the live table', async () => {
  await tab('requests');
  await page.select('#filters select[name=api]', 'onlyoffice');
  await page.waitForFunction(() => [...document.querySelectorAll('#requests tbody tr')].every((tr) => tr.children[2].textContent.includes('/api/2.0/')));
  const n = await page.$$eval('#requests tbody tr', (r) => r.length);
  assert.ok(n >= 2);
  // A live mesh request stays out while the filter is on.
  await mesh({ type: 'robinhood', username: 'ok@example.com', password: 'pass123' });
  const e = await newestEntry();
  await new Promise((r) => setTimeout(r, 600));
  assert.strictEqual(await page.$(`#requests tr[data-id="${e.id}"]`), null);
  await page.click('#filters button[type=reset]');
  await page.waitForSelector(`#requests tr[data-id="${e.id}"]`, { timeout: 3000 });
});

test('keyboard: arrows move between tabs and rows', async () => {
  await page.focus('#tab-requests');
  await page.keyboard.press('ArrowRight');
  assert.strictEqual(await page.$eval('#tab-sessions', (t) => t.getAttribute('aria-selected')), 'true');
  assert.strictEqual(await page.evaluate(() => document.activeElement.id), 'tab-sessions');
  await page.keyboard.press('ArrowLeft');
  assert.strictEqual(await page.$eval('#tab-requests', (t) => t.getAttribute('aria-selected')), 'true');
  await page.focus('#requests tbody tr:first-child');
  await page.keyboard.press('ArrowDown');
  const focused = await page.evaluate(() => document.activeElement.dataset.id);
  const second = await page.$eval('#requests tbody tr:nth-child(2)', (tr) => tr.dataset.id);
  assert.strictEqual(focused, second);
  assert.strictEqual(await page.$eval('#requests tbody tr:nth-child(2)', (tr) => tr.getAttribute('aria-selected')), 'true');
  const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  assert.notStrictEqual(outline, 'none', 'a focused row shows it');
  // One row is in the tab order: Tab leaves the table for the detail pane's controls.
  assert.strictEqual(await page.$$eval('#requests tbody tr[tabindex="0"]', (r) => r.length), 1);
});

test('the clock, the SMS outbox and the scenarios views', async () => {
  // An SMS login puts a code in the outbox, which the view lists.
  const sms = await onlyoffice('', { userName: 'sms@example.com', password: 'pass123' });
  assert.strictEqual(sms.status, 200);
  const outbox = await admin(`/onlyoffice/sms?namespace=${NS}`);
  await tab('sms');
  await page.waitForFunction((c) => document.querySelector('#sms tbody').textContent.includes(c), { timeout: 5000 }, outbox[0].code);

  await tab('clock');
  const before = await admin('/clock');
  await page.waitForFunction(() => /UTC$/.test(document.querySelector('#clocks [data-role=now]').textContent));
  await page.evaluate(() => [...document.querySelectorAll('#clocks .card:first-child button')].find((b) => b.textContent === '+5 min').click());
  await page.waitForFunction(() => /offset \+5 min/.test(document.querySelector('#clocks .card:first-child').textContent), { timeout: 5000 });
  const after = await admin('/clock');
  assert.ok(after.offsetSeconds - before.offsetSeconds === 300, `offset ${before.offsetSeconds} → ${after.offsetSeconds}`);
  await shot('clock');
  await page.evaluate(() => [...document.querySelectorAll('#clocks .card:first-child button')].find((b) => b.textContent === 'Back to real time').click());
  await page.waitForFunction(() => /offset real time/.test(document.querySelector('#clocks .card:first-child').textContent), { timeout: 5000 });

  // A rejected reload: its problems are shown, the old scenarios keep serving.
  fs.writeFileSync(path.join(tmp, 'scenarios', 'mesh', 'broken.json'), '{"name": "broken", "api": "mesh", "initial": "nowhere", "states": {}}');
  let reload;
  for (let i = 0; i < 50; i++) {
    reload = await admin('/reload');
    if (reload.refused) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(reload.refused, 'the reload was refused');
  assert.ok(reload.problems.some((p) => p.includes('broken.json')));
  await tab('scenarios');
  await page.waitForSelector('#reload-problems li', { timeout: 5000 });
  assert.match(await page.$eval('#reload-problems', (u) => u.textContent), /broken\.json/);
  await page.click('#scenarios tr[data-name="mesh-mfa-sms"]');
  await page.waitForSelector('#scenario-json');
  const doc = JSON.parse(await page.$eval('#scenario-json', (p) => p.textContent));
  assert.strictEqual(doc.name, 'mesh-mfa-sms');
  assert.match(await page.$eval('#scenarios tr[data-name="mesh-mfa-sms"]', (tr) => tr.textContent), /mesh\/mesh-mfa-sms\.json/);
  await shot('scenarios');
  fs.rmSync(path.join(tmp, 'scenarios', 'mesh', 'broken.json'));
});

test('reset the namespace from the sessions view', async () => {
  await tab('sessions');
  await page.$eval('#session-filters input[name=namespace]', (i, ns) => { i.value = ns; i.dispatchEvent(new Event('input', { bubbles: true })); }, NS);
  await page.waitForFunction((ns) => {
    const rows = [...document.querySelectorAll('#sessions tbody tr')];
    return rows.length > 0 && rows.every((r) => r.dataset.namespace === ns);
  }, { timeout: 5000 }, NS);
  await page.click('#reset-namespace'); // the confirm() is accepted
  await page.waitForFunction(() => document.querySelectorAll('#sessions tbody tr').length === 0, { timeout: 5000 });
  assert.deepStrictEqual(await admin(`/sessions?namespace=${NS}`), []);
});

test('light and dark', async () => {
  await tab('requests');
  // A fresh login so the dark screenshot has something to explain.
  await mesh({ type: 'robinhood', username: 'mfa.sms@example.com', password: 'pass123' });
  const e = await newestEntry();
  await rowAppears(e.id, Date.now());
  await page.$eval(`#requests tr[data-id="${e.id}"]`, (tr) => tr.click());
  const light = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'dark' }]);
  const dark = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.notStrictEqual(light, dark);
  const lum = (rgb) => rgb.match(/\d+/g).slice(0, 3).reduce((a, b) => a + Number(b), 0);
  assert.ok(lum(dark) < lum(light), `${dark} is darker than ${light}`);
  await shot('requests-dark');
  await tab('sessions');
  await shot('sessions-dark');
  await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'light' }]);
});

test('the page reported no errors and called only routes the server has', async () => {
  assert.deepStrictEqual(pageErrors, []);
  // Admin routes are not journaled; a path under /__admin/ in the journal
  // would be one the page asked for that does not exist.
  assert.deepStrictEqual(await admin('/requests/count?path=/__admin/*'), { count: 0 });
});

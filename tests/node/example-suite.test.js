// The README's "In your test suite" example, run in CI: a parallel-safe test
// suite sharing one authmock. It starts the server on port 0, waits for
// health, gives every test its own namespace (reset before it), moves the
// mock clock instead of sleeping, and verifies the calls its client made
// through the journal.
'use strict';
const { test, before, after, beforeEach } = require('node:test');
const assert = require('node:assert');
const { spawn } = require('node:child_process');
const readline = require('node:readline');

let server;
let base;

before(async () => {
  server = spawn(process.env.AUTHMOCK, ['--port', '0', '--quiet'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise((resolve, reject) => {
    readline.createInterface({ input: server.stdout }).once('line', resolve);
    server.once('exit', (code) => reject(new Error(`authmock exited with ${code}`)));
  });
  base = line.match(/listening on (http:\/\/127\.0\.0\.1:\d+)/)[1];
  for (;;) { // ready as soon as health answers
    try { if ((await fetch(`${base}/__admin/health`)).ok) break; } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 10));
  }
});
after(() => server.kill('SIGTERM'));
process.on('exit', () => server && server.kill('SIGKILL'));

// One namespace per test: parallel workers sharing the server never meet.
let ns;
let n = 0;
beforeEach(async () => {
  ns = `worker-${process.pid}-${++n}`;
  await fetch(`${base}/__admin/reset?namespace=${ns}`, { method: 'POST' });
});

const mesh = (body) => fetch(`${base}/api/v1/authenticate?userId=user-1`, {
  method: 'POST',
  headers: { 'Content-Type': 'application/json', 'X-Client-Id': 'test-client-id',
    'X-Client-Secret': 'test-client-secret', 'X-Authmock-Namespace': ns },
  body: JSON.stringify(body),
}).then((r) => r.json());
const admin = (path, init) => fetch(`${base}/__admin${path}`, init).then((r) => r.json());

test('an MFA login, verified through the journal', async () => {
  const first = await mesh({ type: 'robinhood', username: 'mfa.totp@example.com', password: 'pass123' });
  assert.equal(first.content.status, 'mfaRequired');
  const second = await mesh({ type: 'robinhood', mfaCode: '123456' });
  assert.equal(second.content.status, 'succeeded');

  const { count } = await admin(`/requests/count?namespace=${ns}&path=/api/v1/authenticate`);
  assert.equal(count, 2);
  const { requests } = await admin(`/requests?namespace=${ns}&limit=1`);
  assert.deepEqual(requests[0].body, { type: 'robinhood', mfaCode: '***' }); // secrets are masked
});

test('a challenge expires: move the namespace clock, do not sleep', async () => {
  const issued = await mesh({ type: 'robinhood', username: 'challenge@example.com', password: 'pass123' });
  // Only this namespace's time moves; other workers' flows are untouched.
  await admin(`/clock?namespace=${ns}`, { method: 'POST', body: JSON.stringify({ advanceSeconds: 301 }) });
  const late = await mesh({ type: 'robinhood', challengeId: issued.content.challengeId, challengeCode: '123456' });
  assert.equal(late.content.status, 'challengeFailed');
});

'use strict';
/*
 * What the node suites share: starting a real authmock on 127.0.0.1 port 0
 * and stopping it (killed on every way out of the process), and the
 * OpenAPI 3.0 `nullable` rewrite ajv 8 needs.
 */
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const readline = require('node:readline');

/*
 * ajv 8 implements OpenAPI 3.0 `nullable`, but only next to `type`: it throws
 * '"nullable" cannot be used without "type"' on the `{allOf:[{$ref}],
 * nullable:true}` form (and on `{nullable:true}` alone). Rewrite exactly that
 * form, in memory, to `{anyOf:[{type:'null'}, <rest>]}`, which is what
 * OpenAPI 3.0 means by it.
 */
function nullableToAnyOf(node) {
  if (Array.isArray(node)) return node.map(nullableToAnyOf);
  if (node === null || typeof node !== 'object') return node;
  const out = {};
  for (const [k, v] of Object.entries(node)) out[k] = nullableToAnyOf(v);
  if (out.nullable === true && out.type === undefined) {
    const rest = { ...out };
    delete rest.nullable;
    return { anyOf: [{ type: 'null' }, rest] };
  }
  return out;
}

const running = new Set();

function kill(s, signal) {
  if (s.child.exitCode === null && s.child.signalCode === null) {
    try {
      s.child.kill(signal);
    } catch (_) {
      /* already gone */
    }
  }
}
process.on('exit', () => {
  for (const s of running) kill(s, 'SIGKILL');
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => {
    for (const s of running) kill(s, 'SIGKILL');
    process.exit(128 + (sig === 'SIGINT' ? 2 : 15));
  });
}

function firstLine(s, timeoutMs) {
  const proc = s.child;
  return new Promise((resolve, reject) => {
    const rl = readline.createInterface({ input: proc.stdout });
    const timer = setTimeout(() => {
      rl.close();
      reject(new Error(`authmock printed no line within ${timeoutMs} ms; stderr: ${s.stderr}`));
    }, timeoutMs);
    const onExit = (code, sig) => {
      clearTimeout(timer);
      rl.close();
      reject(new Error(`authmock exited (code ${code}, signal ${sig}) before listening; stderr: ${s.stderr}`));
    };
    proc.once('exit', onExit);
    proc.once('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ${s.binary}: ${e.message}`));
    });
    rl.once('line', (line) => {
      clearTimeout(timer);
      proc.removeListener('exit', onExit);
      rl.close();
      proc.stdout.resume(); // keep draining so the pipe never fills
      resolve(line);
    });
  });
}

/* Starts `binary --port 0 --quiet ...args` and waits for its listening line.
 * Returns {child, port, base, line, stderr} (stderr fills as the server runs). */
async function startAuthmock(binary, args = []) {
  const s = { binary, child: null, port: 0, base: '', line: '', stderr: '' };
  s.child = spawn(binary, ['--port', '0', '--quiet', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(s);
  s.child.stderr.setEncoding('utf8');
  s.child.stderr.on('data', (d) => {
    if (s.stderr.length < 65536) s.stderr += d;
  });
  s.line = await firstLine(s, 10000);
  const m = /^authmock \S+ listening on http:\/\/127\.0\.0\.1:(\d+) /.exec(s.line);
  assert.ok(m, `unexpected first line from authmock: ${JSON.stringify(s.line)}`);
  s.port = Number(m[1]);
  assert.ok(s.port > 0, `bad port in ${JSON.stringify(s.line)}`);
  s.base = `http://127.0.0.1:${s.port}`;
  return s;
}

/* SIGTERM, and SIGKILL if it has not exited within 3 s. */
async function stopAuthmock(s) {
  if (!s) return;
  if (s.child.exitCode === null && s.child.signalCode === null) {
    const exited = new Promise((resolve) => s.child.once('exit', resolve));
    kill(s, 'SIGTERM');
    const timer = setTimeout(() => kill(s, 'SIGKILL'), 3000);
    await exited;
    clearTimeout(timer);
  }
  running.delete(s);
}

module.exports = { nullableToAnyOf, startAuthmock, stopAuthmock };

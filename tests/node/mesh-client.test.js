'use strict';
/*
 * Drives every mesh endpoint of authmock through the official npm client
 * @meshconnect/node-api 2.0.28 and validates every response body against the
 * published OpenAPI document (tests/schemas/mesh-auth-openapi.json) with ajv.
 *
 * Run (works with Node 18 and Node 20; run.sh adds --test-reporter=tap only
 * where node knows the flag, TAP being the default where it does not):
 *
 *   cd tests/node && npm ci && AUTHMOCK=/path/to/build/authmock sh run.sh
 *
 * which is the same as
 *
 *   AUTHMOCK=/path/to/build/authmock node --test --test-reporter=tap mesh-client.test.js
 *
 * The suite starts its own server (`authmock --port 0 --quiet --seed 7`, bound
 * to 127.0.0.1), reads the port from its first stdout line and kills it in an
 * after() hook and on process exit. Every test talks in its own
 * X-Authmock-Namespace, so tests do not see each other's state. The mock clock
 * (POST /__admin/clock) is global, which is fine because node:test runs the
 * top-level tests of a file one after another.
 */

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const fs = require('node:fs');
const path = require('node:path');

const Ajv = require('ajv');
const addFormats = require('ajv-formats');
const { FrontApi } = require('@meshconnect/node-api/cjs/index.js');
const { nullableToAnyOf, startAuthmock, stopAuthmock } = require('./harness.js');

const AUTHMOCK = process.env.AUTHMOCK;
if (!AUTHMOCK) {
  const msg =
    'AUTHMOCK is not set: run as `AUTHMOCK=/path/to/build/authmock sh run.sh` ' +
    '(or node --test mesh-client.test.js with AUTHMOCK in the environment)';
  process.stderr.write(`${msg}\n`);
  throw new Error(msg);
}
if (AUTHMOCK.includes('/') && !fs.existsSync(AUTHMOCK)) {
  const msg = `AUTHMOCK=${AUTHMOCK} does not exist (build it with ninja -C build)`;
  process.stderr.write(`${msg}\n`);
  throw new Error(msg);
}

const CLIENT_HEADERS = {
  'X-Client-Id': 'test-client-id',
  'X-Client-Secret': 'test-client-secret',
};
const PASSWORD = 'pass123';
const CODE = '123456';
const SCENARIO_DIR = path.join(__dirname, '..', '..', 'scenarios', 'mesh');
const OPENAPI_PATH = path.join(__dirname, '..', 'schemas', 'mesh-auth-openapi.json');
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const AUTH_STATUSES = [
  'failed', 'challengeFailed', 'succeeded', 'challengeIssued', 'mfaRequired',
  'openInBrokerModule', 'delayed', 'deviceConfirmationRequired', 'emailVerification',
  'emailReceived', 'captchaChallenge', 'faceVerification', 'bindMfaRequired',
  'apiKeyGenerationError', 'qrCodeRequired', 'qrCodeExpired', 'deviceLoginVerified',
];

/* ------------------------------------------------------------------------ */
/* JSON Schema validation from the OpenAPI document                          */
/* ------------------------------------------------------------------------ */

const OPENAPI = JSON.parse(fs.readFileSync(OPENAPI_PATH, 'utf8'));

const ajv = new Ajv({ strict: false, allErrors: true });
addFormats(ajv); // uuid, int32, int64, double, ... as used by the document
ajv.addSchema(nullableToAnyOf(OPENAPI), 'mesh');

const validators = new Map();
function validatorFor(ref) {
  const key = ref === undefined ? '{}' : ref;
  if (!validators.has(key)) {
    const schema = ref === undefined ? {} : { $ref: `mesh${ref}` };
    validators.set(key, ajv.compile(schema));
  }
  return validators.get(key);
}

/*
 * The schema the OpenAPI document names for `method template` answering
 * `status`. Where the document lists the status without a body (500/503 on
 * /authenticate) or does not list it at all (423, 429, 451: see the reference
 * §5.1), the mock answers with the operation's typed envelope, so the 200
 * envelope schema is used.
 */
function responseSchema(method, template, status) {
  const op = OPENAPI.paths[template] && OPENAPI.paths[template][method];
  assert.ok(op, `no operation ${method.toUpperCase()} ${template} in the OpenAPI document`);
  const documented = op.responses[String(status)];
  const media = documented && documented.content && documented.content['application/json'];
  if (media) {
    return { ref: media.schema && media.schema.$ref, source: `responses.${status}` };
  }
  const ok = op.responses['200'].content['application/json'].schema;
  return { ref: ok.$ref, source: documented ? `responses.${status} has no body: 200 envelope` : `status ${status} undocumented: 200 envelope` };
}

function assertSchema(res, method, template) {
  const { ref, source } = responseSchema(method, template, res.status);
  const validate = validatorFor(ref);
  if (!validate(res.data)) {
    assert.fail(
      `${method.toUpperCase()} ${template} -> HTTP ${res.status}: body does not match ` +
        `${ref || '{}'} (${source}):\n` +
        `${ajv.errorsText(validate.errors, { separator: '\n' })}\n` +
        `${JSON.stringify(validate.errors, null, 2)}\nbody: ${JSON.stringify(res.data)}`,
    );
  }
  return res.data;
}

/* ------------------------------------------------------------------------ */
/* The server                                                                */
/* ------------------------------------------------------------------------ */

let server = null;
let port = 0;
let baseURL = '';

before(async () => {
  server = await startAuthmock(AUTHMOCK, ['--seed', '7']);
  port = server.port;
  baseURL = server.base;
  const reset = await admin('POST', '/__admin/reset');
  assert.equal(reset.status, 200, `POST /__admin/reset: ${reset.text}`);
});

after(() => stopAuthmock(server));

/* Admin calls go straight over node:http: they are not part of the mesh API. */
function admin(method, urlPath, body) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const headers = {};
    if (data !== undefined) {
      headers['Content-Type'] = 'application/json';
      headers['Content-Length'] = Buffer.byteLength(data);
    }
    const req = http.request({ host: '127.0.0.1', port, method, path: urlPath, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (text += c));
      res.on('end', () => {
        let json = null;
        try {
          json = text ? JSON.parse(text) : null;
        } catch (_) {
          /* leave null */
        }
        resolve({ status: res.statusCode, text, json });
      });
    });
    req.on('error', reject);
    req.end(data);
  });
}

async function advanceClock(seconds) {
  const before = await admin('GET', '/__admin/clock');
  const res = await admin('POST', '/__admin/clock', { advanceSeconds: seconds });
  assert.equal(res.status, 200, `POST /__admin/clock: ${res.text}`);
  assert.ok(
    res.json.epochSeconds >= before.json.epochSeconds + seconds,
    `clock did not move by ${seconds}s: ${before.text} -> ${res.text}`,
  );
}

/* ------------------------------------------------------------------------ */
/* Client helpers                                                            */
/* ------------------------------------------------------------------------ */

let nsCounter = 0;
function namespaceFor(t, suffix) {
  const slug = String(t.name).replace(/[^A-Za-z0-9]+/g, '-').slice(0, 40);
  return `node-${process.pid}-${++nsCounter}-${slug}${suffix ? `-${suffix}` : ''}`;
}

/* A FrontApi of its own for a test, talking in its own namespace. */
function meshClient(t, { headers = CLIENT_HEADERS, suffix } = {}) {
  return new FrontApi({
    baseURL,
    headers: { ...headers, 'X-Authmock-Namespace': namespaceFor(t, suffix) },
  });
}

const seenStatuses = new Set();
const A = '/api/v1/authenticate';

/* POST /api/v1/authenticate that must answer HTTP 200 envelope ok; returns content. */
async function authenticate(api, userId, body, params) {
  const res = await api.selfManagedAccountAuthentication.v1AuthenticateCreate({ userId }, body, params);
  assert.equal(res.status, 200);
  assertSchema(res, 'post', A);
  assert.equal(res.data.status, 'ok', `envelope: ${JSON.stringify(res.data)}`);
  assert.ok(res.data.content && typeof res.data.content === 'object', `no content: ${JSON.stringify(res.data)}`);
  seenStatuses.add(res.data.content.status);
  return res.data.content;
}

/* A call that must be rejected by the client with an HTTP error; returns e.response. */
async function httpError(promise) {
  let res;
  try {
    res = await promise;
  } catch (e) {
    assert.equal(e.name, 'AxiosError', `expected an AxiosError, got ${e && e.stack}`);
    assert.equal(e.isAxiosError, true);
    assert.ok(e.response, `AxiosError without a response: ${e.message}`);
    return e.response;
  }
  assert.fail(`expected an HTTP error, got ${res.status} ${JSON.stringify(res.data)}`);
}

function assertSucceeded(content, accounts = 1) {
  assert.equal(content.status, 'succeeded', JSON.stringify(content));
  assert.ok(Array.isArray(content.accountTokens), JSON.stringify(content));
  assert.equal(content.accountTokens.length, accounts, JSON.stringify(content.accountTokens));
  for (const tok of content.accountTokens) {
    assert.equal(typeof tok.accessToken, 'string');
    assert.ok(tok.accessToken.length > 0);
    assert.equal(typeof tok.refreshToken, 'string');
    assert.ok(tok.refreshToken.length > 0);
    assert.ok(tok.account, 'accountTokens[].account');
    assert.match(tok.account.meshAccountId, UUID_RE);
  }
  const access = content.accountTokens.map((x) => x.accessToken);
  assert.equal(new Set(access).size, access.length, 'access tokens are distinct');
  assert.ok(Number.isInteger(content.expiresInSeconds) && content.expiresInSeconds > 0);
}

const creds = (username, extra = {}) => ({ type: 'robinhood', username, password: PASSWORD, ...extra });

/* Test registration that records which bundled scenarios the suite walks. */
const coveredScenarios = new Set();
function scenarioTest(name, scenarios, fn, opts = {}) {
  for (const s of scenarios) coveredScenarios.add(s);
  test(name, { timeout: 20000, ...opts }, fn);
}

/* ------------------------------------------------------------------------ */
/* The validator itself                                                      */
/* ------------------------------------------------------------------------ */

test('ajv validator built from the OpenAPI document is strict where the schema is', () => {
  const v = validatorFor('#/components/schemas/B2BBrokerAuthResponseApiResult');
  const good = {
    content: { status: 'mfaRequired', mfaType: 'totp', authFlowStep: 'mfaFlow', account: null },
    status: 'ok', message: '', displayMessage: null, errorHash: null, errorType: '', errorData: null,
  };
  assert.equal(v(good), true, ajv.errorsText(v.errors));
  assert.equal(v({ ...good, content: null }), true, 'nullable $ref content');
  assert.equal(v({ ...good, content: { ...good.content, mfaType: null } }), true, 'nullable $ref enum');
  assert.equal(v({ ...good, content: { ...good.content, status: 'bogus' } }), false, 'unknown content.status');
  assert.equal(v({ ...good, content: { ...good.content, extra: 1 } }), false, 'additionalProperties: false');
  assert.equal(v({ ...good, teamCode: '7K' }), false, 'envelope additionalProperties: false');
  assert.equal(v({ ...good, status: 'failed' }), false, 'envelope status enum');
  const acct = validatorFor('#/components/schemas/BrokerAccount');
  assert.equal(acct({ meshAccountId: 'not-a-uuid' }), false, 'format uuid');
  assert.equal(acct({ meshAccountId: '6f1c2a7e-3b1d-4c55-9a0e-1f2b3c4d5e6f', fund: 'x' }), false, 'double');
  const pd = validatorFor('#/components/schemas/ProblemDetails');
  assert.equal(pd({ status: 400, errors: { userId: ['x'] } }), true, 'ProblemDetails is open');
  assert.equal(pd({ status: 1.5 }), false, 'int32');
  assert.equal(responseSchema('get', '/api/v1/status', 401).ref, undefined, '401 is documented as {}');
});

/* ------------------------------------------------------------------------ */
/* GET /api/v1/authenticationSchemes                                         */
/* ------------------------------------------------------------------------ */

test('v1AuthenticationSchemesList: 57 schemes, robinhood usernamePassword with MFA steps, coinbase oAuth', async (t) => {
  const api = meshClient(t);
  const res = await api.selfManagedAccountAuthentication.v1AuthenticationSchemesList();
  assert.equal(res.status, 200);
  const body = assertSchema(res, 'get', '/api/v1/authenticationSchemes');
  assert.equal(body.status, 'ok');
  assert.equal(body.content.length, 57);
  const types = body.content.map((s) => s.brokerType);
  assert.equal(new Set(types).size, 57, 'each broker type listed once');

  const rh = body.content.find((s) => s.brokerType === 'robinhood');
  assert.ok(rh, 'robinhood listed');
  assert.equal(rh.authenticationSchemeType, 'usernamePassword');
  const initial = rh.initialAuthenticationModel.fields.map((f) => f.name);
  assert.ok(initial.includes('Username') && initial.includes('Password'), JSON.stringify(initial));
  assert.ok(Array.isArray(rh.authenticationSteps) && rh.authenticationSteps.length > 0);
  const mfaStep = rh.authenticationSteps.find((s) => s.authResponse && s.authResponse.status === 'mfaRequired');
  assert.ok(mfaStep, `an mfaRequired step: ${JSON.stringify(rh.authenticationSteps)}`);
  assert.ok(mfaStep.fields.some((f) => f.name === 'MfaCode'), JSON.stringify(mfaStep));
  assert.ok(rh.mfaSchemes.includes('mfaCode'), JSON.stringify(rh.mfaSchemes));
  // The steps must cover the intermediate answers the bundled accounts really
  // give on a username/password broker (walked in the tests below).
  const stepStatuses = new Set(rh.authenticationSteps.map((s) => s.authResponse && s.authResponse.status));
  for (const st of ['mfaRequired', 'challengeIssued', 'deviceConfirmationRequired', 'emailVerification',
    'emailReceived', 'faceVerification', 'deviceLoginVerified']) {
    assert.ok(stepStatuses.has(st), `robinhood authenticationSteps lack ${st}: ${[...stepStatuses]}`);
  }
  const bid = body.content.find((s) => s.brokerType === 'binanceInternationalDirect');
  assert.equal(bid.authenticationSchemeType, 'usernamePassword');
  assert.ok(
    bid.authenticationSteps.some((s) => s.authResponse && s.authResponse.status === 'qrCodeRequired'),
    'binanceInternationalDirect lists the qrCodeRequired step',
  );

  const cb = body.content.find((s) => s.brokerType === 'coinbase');
  assert.ok(cb, 'coinbase listed');
  assert.equal(cb.authenticationSchemeType, 'oAuth');

  const bi = body.content.find((s) => s.brokerType === 'binanceInternational');
  assert.equal(bi.authenticationSchemeType, 'apiKey');
});

/* ------------------------------------------------------------------------ */
/* POST /api/v1/authenticate: every bundled mesh test account               */
/* ------------------------------------------------------------------------ */

scenarioTest('authenticate ok@example.com: succeeded at once, one account with balances (userId with a space)', ['mesh-ok'], async (t) => {
  const api = meshClient(t);
  const c = await authenticate(api, 'user 1', creds('ok@example.com'));
  assertSucceeded(c, 1);
  const acct = c.accountTokens[0].account;
  assert.ok(Array.isArray(acct.balances) && acct.balances.length > 0, JSON.stringify(acct));
  assert.equal(typeof acct.balances[0].symbol, 'string');
  assert.equal(typeof acct.fund, 'number');
  assert.equal(typeof acct.cash, 'number');
});

scenarioTest('authenticate multi@example.com: succeeded with three accounts', ['mesh-multi'], async (t) => {
  const api = meshClient(t);
  const c = await authenticate(api, 'user 1', creds('multi@example.com'));
  assertSucceeded(c, 3);
  const ids = c.accountTokens.map((x) => x.account.meshAccountId);
  assert.equal(new Set(ids).size, 3, 'three distinct accounts');
});

scenarioTest('authenticate mfa.totp@example.com: mfaRequired(totp) then 123456 succeeds; "+" and "%20" name the same userId', ['mesh-mfa-totp'], async (t) => {
  const api = meshClient(t);
  // The client sends userId=user+1 ...
  const c1 = await authenticate(api, 'user 1', creds('mfa.totp@example.com'));
  assert.equal(c1.status, 'mfaRequired');
  assert.equal(c1.mfaType, 'totp');
  assert.equal(c1.authFlowStep, 'mfaFlow');
  // ... and this step sends userId=user%201: only if the server decoded '+'
  // as a space is this the same identity, still waiting for the code.
  const pct = { paramsSerializer: { serialize: (p) => `userId=${encodeURIComponent(p.userId)}` } };
  const c2 = await authenticate(
    api,
    'user 1',
    creds('mfa.totp@example.com', { mfaCode: CODE, mfaType: 'totp', authFlowStep: 'mfaFlow' }),
    pct,
  );
  assertSucceeded(c2, 1);
});

scenarioTest('authenticate mfa.totp@example.com: wrong codes are challengeFailed; after 3 the flow restarts at the password', ['mesh-mfa-totp'], async (t) => {
  const api = meshClient(t);
  const u = 'user 2';
  assert.equal((await authenticate(api, u, creds('mfa.totp@example.com'))).status, 'mfaRequired');
  for (let i = 0; i < 3; i++) {
    const c = await authenticate(api, u, creds('mfa.totp@example.com', { mfaCode: '000000', mfaType: 'totp' }));
    assert.equal(c.status, 'challengeFailed', `wrong code #${i + 1}: ${JSON.stringify(c)}`);
    assert.equal(typeof c.errorMessage, 'string');
  }
  // Back at the password step: a code alone no longer counts, the credentials ask for a new one.
  const lone = await authenticate(api, u, { type: 'robinhood', mfaCode: CODE, mfaType: 'totp' });
  assert.equal(lone.status, 'failed', JSON.stringify(lone));
  const c = await authenticate(api, u, creds('mfa.totp@example.com'));
  assert.equal(c.status, 'mfaRequired', JSON.stringify(c));
  assertSucceeded(await authenticate(api, u, creds('mfa.totp@example.com', { mfaCode: CODE, mfaType: 'totp' })));
});

scenarioTest('authenticate mfa.sms@example.com: mfaRequired(phone), code succeeds; isTryingAnotherWay switches to email', ['mesh-mfa-sms'], async (t) => {
  const api = meshClient(t);
  const c1 = await authenticate(api, 'user 1', creds('mfa.sms@example.com'));
  assert.equal(c1.status, 'mfaRequired');
  assert.equal(c1.mfaType, 'phone');
  assertSucceeded(await authenticate(api, 'user 1', creds('mfa.sms@example.com', { mfaCode: CODE, mfaType: 'phone' })));

  const u = 'user 2';
  assert.equal((await authenticate(api, u, creds('mfa.sms@example.com'))).mfaType, 'phone');
  const c2 = await authenticate(api, u, creds('mfa.sms@example.com', { isTryingAnotherWay: true }));
  assert.equal(c2.status, 'mfaRequired');
  assert.equal(c2.mfaType, 'email');
  assertSucceeded(await authenticate(api, u, creds('mfa.sms@example.com', { mfaCode: CODE, mfaType: 'email' })));
});

scenarioTest('authenticate mfa.email@example.com: mfaRequired(email) then 123456 succeeds', ['mesh-mfa-email'], async (t) => {
  const api = meshClient(t);
  const c1 = await authenticate(api, 'user 1', creds('mfa.email@example.com'));
  assert.equal(c1.status, 'mfaRequired');
  assert.equal(c1.mfaType, 'email');
  assertSucceeded(await authenticate(api, 'user 1', creds('mfa.email@example.com', { mfaCode: CODE, mfaType: 'email' })));
});

scenarioTest('authenticate challenge@example.com: challengeIssued, answered with challengeId+challengeCode; expired after 300 s', ['mesh-challenge'], async (t) => {
  const api = meshClient(t);
  const c1 = await authenticate(api, 'user 1', creds('challenge@example.com'));
  assert.equal(c1.status, 'challengeIssued');
  assert.equal(typeof c1.challengeId, 'string');
  assert.ok(c1.challengeId.length > 0);
  assert.equal(typeof c1.challengeText, 'string');
  assert.equal(c1.challengeExpiresInSeconds, 300);
  const wrongId = await authenticate(api, 'user 1', creds('challenge@example.com', { challengeId: 'nope', challengeCode: CODE }));
  assert.equal(wrongId.status, 'challengeFailed', 'a code for another challengeId is refused');
  const c2 = await authenticate(api, 'user 1', creds('challenge@example.com', { challengeId: c1.challengeId, challengeCode: CODE }));
  assertSucceeded(c2);

  const u = 'user 2';
  const c3 = await authenticate(api, u, creds('challenge@example.com'));
  assert.equal(c3.status, 'challengeIssued');
  await advanceClock(301);
  const c4 = await authenticate(api, u, creds('challenge@example.com', { challengeId: c3.challengeId, challengeCode: CODE }));
  assert.equal(c4.status, 'challengeFailed', JSON.stringify(c4));
  assert.equal(typeof c4.errorMessage, 'string');
});

scenarioTest('authenticate question@example.com: security question "blue", then requireNextSecurityQuestion "green"', ['mesh-security-question'], async (t) => {
  const api = meshClient(t);
  const c1 = await authenticate(api, 'user 1', creds('question@example.com'));
  assert.equal(c1.status, 'challengeIssued');
  assert.equal(typeof c1.challengeText, 'string');
  const c2 = await authenticate(api, 'user 1', creds('question@example.com', { challengeId: c1.challengeId, challengeAnswer: 'blue' }));
  assert.equal(c2.status, 'challengeIssued');
  assert.equal(c2.mfaType, 'requireNextSecurityQuestion');
  assert.notEqual(c2.challengeText, c1.challengeText);
  const c3 = await authenticate(api, 'user 1', creds('question@example.com', { challengeId: c2.challengeId, challengeAnswer: 'green' }));
  assertSucceeded(c3);
});

scenarioTest('authenticate device@example.com: deviceConfirmationRequired, succeeded 10 s later; isTryingAnotherWay gives an email code', ['mesh-device'], async (t) => {
  const api = meshClient(t);
  const c1 = await authenticate(api, 'user 1', creds('device@example.com'));
  assert.equal(c1.status, 'deviceConfirmationRequired');
  const c2 = await authenticate(api, 'user 1', creds('device@example.com'));
  assert.equal(c2.status, 'deviceConfirmationRequired', 'an immediate poll still waits');
  await advanceClock(10);
  assertSucceeded(await authenticate(api, 'user 1', creds('device@example.com')));

  const u = 'user 2';
  assert.equal((await authenticate(api, u, creds('device@example.com'))).status, 'deviceConfirmationRequired');
  const c3 = await authenticate(api, u, creds('device@example.com', { isTryingAnotherWay: true }));
  assert.equal(c3.status, 'mfaRequired');
  assert.equal(c3.mfaType, 'email');
  assertSucceeded(await authenticate(api, u, creds('device@example.com', { mfaCode: CODE, mfaType: 'email' })));
});

scenarioTest('authenticate email.verify@example.com: emailVerification, emailReceived, succeeded', ['mesh-email-verification'], async (t) => {
  const api = meshClient(t);
  const c1 = await authenticate(api, 'user 1', creds('email.verify@example.com'));
  assert.equal(c1.status, 'emailVerification');
  assert.equal(c1.email, 'email.verify@example.com');
  const c2 = await authenticate(api, 'user 1', creds('email.verify@example.com'));
  assert.equal(c2.status, 'emailReceived');
  assertSucceeded(await authenticate(api, 'user 1', creds('email.verify@example.com')));
});

scenarioTest('authenticate qr@example.com (binanceInternationalDirect): qrCodeRequired then succeeded; qrCodeExpired after 60 s', ['mesh-qr'], async (t) => {
  const body = { type: 'binanceInternationalDirect', username: 'qr@example.com', password: PASSWORD };
  const api = meshClient(t, { suffix: 'a' });
  const c1 = await authenticate(api, 'user 1', body);
  assert.equal(c1.status, 'qrCodeRequired');
  assert.equal(c1.authFlowStep, 'loginQrCode');
  for (const f of ['qrCode', 'qrCodeLink', 'qrCodeLinkIOS']) {
    assert.equal(typeof c1[f], 'string', f);
    assert.ok(c1[f].length > 0, f);
  }
  assert.match(c1.qrCodeLink, /^https:\/\//);
  assertSucceeded(await authenticate(api, 'user 1', { ...body, authFlowStep: 'loginQrCode' }));

  const other = meshClient(t, { suffix: 'b' });
  assert.equal((await authenticate(other, 'user 1', body)).status, 'qrCodeRequired');
  await advanceClock(60);
  const c2 = await authenticate(other, 'user 1', { ...body, authFlowStep: 'loginQrCode' });
  assert.equal(c2.status, 'qrCodeExpired', JSON.stringify(c2));
});

scenarioTest('authenticate face@example.com: faceVerification with qrCode, then succeeded', ['mesh-face'], async (t) => {
  const api = meshClient(t);
  const c1 = await authenticate(api, 'user 1', creds('face@example.com'));
  assert.equal(c1.status, 'faceVerification');
  assert.equal(typeof c1.qrCode, 'string');
  assert.ok(c1.qrCode.length > 0);
  assertSucceeded(await authenticate(api, 'user 1', creds('face@example.com')));
});

scenarioTest('authenticate device.verified@example.com: deviceLoginVerified, then succeeded', ['mesh-device-verified'], async (t) => {
  const api = meshClient(t);
  assert.equal((await authenticate(api, 'user 1', creds('device.verified@example.com'))).status, 'deviceLoginVerified');
  assertSucceeded(await authenticate(api, 'user 1', creds('device.verified@example.com')));
});

const SINGLE_STEP = [
  ['captcha@example.com', 'mesh-captcha', 'captchaChallenge'],
  ['bindmfa@example.com', 'mesh-bind-mfa', 'bindMfaRequired'],
  ['delayed@example.com', 'mesh-delayed', 'delayed'],
  ['broker.module@example.com', 'mesh-broker-module', 'openInBrokerModule'],
];
for (const [user, scenario, status] of SINGLE_STEP) {
  scenarioTest(`authenticate ${user}: ${status}`, [scenario], async (t) => {
    const api = meshClient(t);
    const c = await authenticate(api, 'user 1', creds(user));
    assert.equal(c.status, status, JSON.stringify(c));
    assert.equal(c.accountTokens == null || c.accountTokens.length === 0, true, 'no tokens');
  });
}

scenarioTest('authenticate apikey.error@example.com: apiKeyGenerationError at the createAPIKey step', ['mesh-apikey-error'], async (t) => {
  const api = meshClient(t);
  const c = await authenticate(api, 'user 1', creds('apikey.error@example.com'));
  assert.equal(c.status, 'apiKeyGenerationError');
  assert.equal(c.authFlowStep, 'createAPIKey');
  assert.equal(typeof c.errorMessage, 'string');
});

scenarioTest('authenticate slow@example.com: succeeded after 2 s without holding up other requests', ['mesh-slow'], async (t) => {
  const api = meshClient(t, { suffix: 'slow' });
  const other = meshClient(t, { suffix: 'other' });
  const t0 = Date.now();
  const slow = authenticate(api, 'user 1', creds('slow@example.com')).then((c) => ({ c, ms: Date.now() - t0 }));
  await new Promise((r) => setTimeout(r, 100));
  const t1 = Date.now();
  assertSucceeded(await authenticate(other, 'user 1', creds('ok@example.com')));
  const otherMs = Date.now() - t1;
  const { c, ms } = await slow;
  assertSucceeded(c);
  assert.ok(ms >= 1900, `slow answered after ${ms} ms, expected about 2000`);
  assert.ok(ms < 8000, `slow answered after ${ms} ms`);
  assert.ok(otherMs < 1000, `a concurrent request took ${otherMs} ms while slow@ was pending`);
});

scenarioTest('authenticate unknown user on a usernamePassword broker: failed with errorMessage', ['mesh-default'], async (t) => {
  const api = meshClient(t);
  const c = await authenticate(api, 'user 1', creds('nobody@example.com'));
  assert.equal(c.status, 'failed');
  assert.equal(typeof c.errorMessage, 'string');
  assert.ok(c.errorMessage.length > 0);
});

scenarioTest('authenticate on an oAuth broker (coinbase): failed, pointing to the OAuth link', ['mesh-oauth'], async (t) => {
  const api = meshClient(t);
  const c = await authenticate(api, 'user 1', { type: 'coinbase', username: 'ok@example.com', password: PASSWORD });
  assert.equal(c.status, 'failed');
  assert.equal(typeof c.errorMessage, 'string');
});

async function brokerOfScheme(api, scheme) {
  const res = await api.selfManagedAccountAuthentication.v1AuthenticationSchemesList();
  assertSchema(res, 'get', '/api/v1/authenticationSchemes');
  const s = res.data.content.find((x) => x.authenticationSchemeType === scheme);
  assert.ok(s, `a broker with scheme ${scheme}`);
  return s;
}

scenarioTest('authenticate on a blockchainAddress broker: an address in username succeeds, none fails', ['mesh-blockchain-address'], async (t) => {
  const api = meshClient(t);
  const { brokerType } = await brokerOfScheme(api, 'blockchainAddress');
  assertSucceeded(await authenticate(api, 'user 1', { type: brokerType, username: '0x52908400098527886E0F7030069857D2E4169EE7' }));
  const c = await authenticate(api, 'user 2', { type: brokerType });
  assert.equal(c.status, 'failed');
});

scenarioTest('authenticate on a trueAuth broker: trueAuthAuthRequest succeeds, without it fails', ['mesh-true-auth'], async (t) => {
  const api = meshClient(t);
  const scheme = await brokerOfScheme(api, 'trueAuth');
  const trueAuthAuthRequest = { requestHeaders: { Cookie: 'sid=1' }, cookies: [{ sid: '1' }], userAgent: 'node-test' };
  assertSucceeded(await authenticate(api, 'user 1', { type: scheme.brokerType, trueAuthAuthRequest }));
  const c = await authenticate(api, 'user 2', { type: scheme.brokerType, username: 'ok@example.com', password: PASSWORD });
  assert.equal(c.status, 'failed');
});

scenarioTest('apiKey broker binanceInternational: test-api-key/test-api-secret succeeds, another key fails', ['mesh-api-key'], async (t) => {
  const api = meshClient(t);
  const ok = await authenticate(api, 'user 1', { type: 'binanceInternational', username: 'test-api-key', password: 'test-api-secret' });
  assertSucceeded(ok);
  const bad = await authenticate(api, 'user 1', { type: 'binanceInternational', username: 'other-key', password: 'test-api-secret' });
  assert.equal(bad.status, 'failed');
  assert.equal(typeof bad.errorMessage, 'string');
});

/* ------------------------------------------------------------------------ */
/* Envelope errors seen through the client                                   */
/* ------------------------------------------------------------------------ */

scenarioTest('locked@example.com: AxiosError, HTTP 423, envelope locked', ['mesh-locked'], async (t) => {
  const api = meshClient(t);
  const res = await httpError(api.selfManagedAccountAuthentication.v1AuthenticateCreate({ userId: 'user 1' }, creds('locked@example.com')));
  assert.equal(res.status, 423);
  const body = assertSchema(res, 'post', A);
  assert.equal(body.status, 'locked');
  assert.equal(body.content ?? null, null);
  assert.equal(typeof body.message, 'string');
});

scenarioTest('ratelimited@example.com: AxiosError, HTTP 429 with Retry-After, envelope tooManyRequest', ['mesh-rate-limited'], async (t) => {
  const api = meshClient(t);
  const res = await httpError(api.selfManagedAccountAuthentication.v1AuthenticateCreate({ userId: 'user 1' }, creds('ratelimited@example.com')));
  assert.equal(res.status, 429);
  const ra = res.headers['retry-after'];
  assert.ok(ra !== undefined, `Retry-After header: ${JSON.stringify(res.headers)}`);
  assert.match(String(ra), /^\d+$/);
  assert.ok(Number(ra) > 0);
  const body = assertSchema(res, 'post', A);
  assert.equal(body.status, 'tooManyRequest');
});

scenarioTest('legal@example.com: AxiosError, HTTP 451, envelope unavailableForLegalReasons', ['mesh-legal'], async (t) => {
  const api = meshClient(t);
  const res = await httpError(api.selfManagedAccountAuthentication.v1AuthenticateCreate({ userId: 'user 1' }, creds('legal@example.com')));
  assert.equal(res.status, 451);
  assert.equal(assertSchema(res, 'post', A).status, 'unavailableForLegalReasons');
});

scenarioTest('server.error@example.com: AxiosError, HTTP 500 with no content (as SPEC lists it)', ['mesh-server-error'], async (t) => {
  const api = meshClient(t);
  const res = await httpError(api.selfManagedAccountAuthentication.v1AuthenticateCreate({ userId: 'user 1' }, creds('server.error@example.com')));
  assert.equal(res.status, 500);
  assert.equal(res.data, '');
});

test('wrong password: failed 5 times, then HTTP 429 tooManyRequest for 60 s', async (t) => {
  const api = meshClient(t);
  const body = creds('ok@example.com', { password: 'wrong-password' });
  for (let i = 1; i <= 5; i++) {
    const c = await authenticate(api, 'user 1', body);
    assert.equal(c.status, 'failed', `attempt ${i}: ${JSON.stringify(c)}`);
    assert.equal(typeof c.errorMessage, 'string');
  }
  const res = await httpError(api.selfManagedAccountAuthentication.v1AuthenticateCreate({ userId: 'user 1' }, body));
  assert.equal(res.status, 429);
  assert.equal(assertSchema(res, 'post', A).status, 'tooManyRequest');
  const ra = Number(res.headers['retry-after']);
  assert.ok(ra > 0 && ra <= 60, `Retry-After on the lockout: ${res.headers['retry-after']}`);
  // Blocked even with the right password, for the same userId+type only.
  const blocked = await httpError(api.selfManagedAccountAuthentication.v1AuthenticateCreate({ userId: 'user 1' }, creds('ok@example.com')));
  assert.equal(blocked.status, 429);
  assertSucceeded(await authenticate(api, 'user 2', creds('ok@example.com')));
  await advanceClock(30);
  const later = await httpError(api.selfManagedAccountAuthentication.v1AuthenticateCreate({ userId: 'user 1' }, creds('ok@example.com')));
  assert.equal(later.status, 429, 'still blocked 30 s later');
  assert.ok(Number(later.headers['retry-after']) <= 30, `Retry-After counts down: ${later.headers['retry-after']}`);
  await advanceClock(31);
  assertSucceeded(await authenticate(api, 'user 1', creds('ok@example.com')));
});

test('isSensitiveFieldsEncrypted: Base64 username/password (and mfaCode, challengeAnswer) are decoded', async (t) => {
  const api = meshClient(t);
  const b64 = (s) => Buffer.from(s, 'utf8').toString('base64');
  const c = await authenticate(api, 'user 1', {
    type: 'robinhood',
    username: b64('ok@example.com'),
    password: b64(PASSWORD),
    isSensitiveFieldsEncrypted: true,
  });
  assertSucceeded(c);
  // mfaCode and challengeAnswer are among the encoded fields too.
  const enc = (extra) => ({
    type: 'robinhood',
    username: b64('mfa.totp@example.com'),
    password: b64(PASSWORD),
    isSensitiveFieldsEncrypted: true,
    ...extra,
  });
  assert.equal((await authenticate(api, 'user 2', enc({}))).status, 'mfaRequired');
  assertSucceeded(await authenticate(api, 'user 2', enc({ mfaCode: b64(CODE), mfaType: 'totp' })));
  const q = (extra) => ({ ...enc(extra), username: b64('question@example.com') });
  assert.equal((await authenticate(api, 'user 3', q({}))).status, 'challengeIssued');
  const q2 = await authenticate(api, 'user 3', q({ challengeAnswer: b64('blue') }));
  assert.equal(q2.mfaType, 'requireNextSecurityQuestion', JSON.stringify(q2));
  assertSucceeded(await authenticate(api, 'user 3', q({ challengeAnswer: b64('green') })));
});

/* ------------------------------------------------------------------------ */
/* 400 ProblemDetails from /authenticate                                    */
/* ------------------------------------------------------------------------ */

async function problem(promise, field, template = A, method = 'post') {
  const res = await httpError(promise);
  assert.equal(res.status, 400);
  assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
  const body = assertSchema(res, method, template);
  assert.equal(body.status, 400);
  assert.ok(body.errors && typeof body.errors === 'object', `errors map: ${JSON.stringify(body)}`);
  assert.ok(
    // ASP.NET names a model-binding error by the field, a JSON conversion
    // error by its JSON path ("$.type"): accept both.
    Object.keys(body.errors).some((k) => k.replace(/^\$\./, '').toLowerCase() === field.toLowerCase()),
    `errors should name ${field}: ${JSON.stringify(body.errors)}`,
  );
  return body;
}

test('authenticate 400 ProblemDetails: missing/long userId, missing/unknown type, malformed JSON, wrong JSON type', async (t) => {
  const api = meshClient(t);
  const sm = api.selfManagedAccountAuthentication;
  await problem(sm.v1AuthenticateCreate({}, creds('ok@example.com')), 'userId');
  await problem(sm.v1AuthenticateCreate({ userId: 'x'.repeat(51) }, creds('ok@example.com')), 'userId');
  await problem(sm.v1AuthenticateCreate({ userId: 'user 1' }, { username: 'ok@example.com', password: PASSWORD }), 'type');
  await problem(sm.v1AuthenticateCreate({ userId: 'user 1' }, { type: 'noSuchBroker', username: 'ok@example.com' }), 'type');
  await problem(sm.v1AuthenticateCreate({ userId: 'user 1' }, { type: 'robinhood', username: 123, password: PASSWORD }), 'username');
  // Send the text as is (axios would otherwise JSON-encode a non-JSON string).
  const raw = { transformRequest: [(data) => data] };
  await problem(sm.v1AuthenticateCreate({ userId: 'user 1' }, '{"type":"robinhood",', raw), '$');
  // A userId of exactly 50 characters is fine.
  const c = await authenticate(api, 'y'.repeat(50), creds('ok@example.com'));
  assertSucceeded(c);
});

/* ------------------------------------------------------------------------ */
/* GET /api/v1/authenticate/{brokerType}                                    */
/* ------------------------------------------------------------------------ */

test('v1AuthenticateDetail: coinbase gives a redirect link, robinhood fails, no userId is 400', async (t) => {
  const api = meshClient(t);
  const T = '/api/v1/authenticate/{brokerType}';
  const res = await api.selfManagedAccountAuthentication.v1AuthenticateDetail('coinbase', { userId: 'user 1' });
  assert.equal(res.status, 200);
  const body = assertSchema(res, 'get', T);
  assert.equal(body.status, 'ok');
  assert.equal(body.content.status, 'redirect');
  assert.equal(typeof body.content.redirectLink, 'string');
  assert.match(body.content.redirectLink, /^https:\/\//);
  assert.ok(new URL(body.content.redirectLink));

  const rh = await api.selfManagedAccountAuthentication.v1AuthenticateDetail('robinhood', { userId: 'user 1' });
  assert.equal(rh.status, 200);
  const rb = assertSchema(rh, 'get', T);
  assert.equal(rb.content.status, 'failed');
  assert.equal(typeof rb.content.errorMessage, 'string');

  await problem(api.selfManagedAccountAuthentication.v1AuthenticateDetail('coinbase', {}), 'userId', T, 'get');
});

/* ------------------------------------------------------------------------ */
/* Managed Account Authentication                                            */
/* ------------------------------------------------------------------------ */

test('v1LinktokenCreate: a Base64 link token for an https URL; no userId is 400 badRequest', async (t) => {
  const api = meshClient(t);
  const T = '/api/v1/linktoken';
  const res = await api.managedAccountAuthentication.v1LinktokenCreate({ userId: 'user 1' });
  assert.equal(res.status, 200);
  const body = assertSchema(res, 'post', T);
  assert.equal(body.status, 'ok');
  const tok = body.content.linkToken;
  assert.equal(typeof tok, 'string');
  assert.match(tok, /^[A-Za-z0-9+/]+={0,2}$/, 'standard Base64');
  const url = Buffer.from(tok, 'base64').toString('utf8');
  assert.match(url, /^https:\/\//, `decoded link token: ${url}`);
  assert.equal(new URL(url).protocol, 'https:');

  const bad = await httpError(api.managedAccountAuthentication.v1LinktokenCreate({}));
  assert.equal(bad.status, 400);
  const bb = assertSchema(bad, 'post', T);
  assert.equal(bb.status, 'badRequest');
});

async function login(api, userId = 'user 1') {
  const c = await authenticate(api, userId, creds('ok@example.com'));
  assertSucceeded(c);
  return c.accountTokens[0];
}

test('v1TokenRefreshCreate: rotates tokens; the old refresh token is then refused with 400 badRequest', async (t) => {
  const api = meshClient(t);
  const mm = api.managedAccountAuthentication;
  const T = '/api/v1/token/refresh';
  const first = await login(api);

  const res = await mm.v1TokenRefreshCreate({ type: 'robinhood', refreshToken: first.refreshToken });
  assert.equal(res.status, 200);
  const body = assertSchema(res, 'post', T);
  assert.equal(body.status, 'ok');
  assert.equal(body.content.status, 'succeeded');
  assert.ok(Array.isArray(body.content.brokerAccountTokens) && body.content.brokerAccountTokens.length === 1);
  const next = body.content.brokerAccountTokens[0];
  assert.equal(typeof next.accessToken, 'string');
  assert.equal(typeof next.refreshToken, 'string');
  assert.notEqual(next.accessToken, first.accessToken);
  assert.notEqual(next.refreshToken, first.refreshToken);

  const reuse = await httpError(mm.v1TokenRefreshCreate({ type: 'robinhood', refreshToken: first.refreshToken }));
  assert.equal(reuse.status, 400);
  assert.equal(assertSchema(reuse, 'post', T).status, 'badRequest');

  const again = await mm.v1TokenRefreshCreate({ type: 'robinhood', refreshToken: next.refreshToken });
  assert.equal(again.status, 200);
  assert.equal(assertSchema(again, 'post', T).content.status, 'succeeded');
});

test('v1AccountDelete: 200 ok; the connection refresh token then fails; deleting again is 400', async (t) => {
  const api = meshClient(t);
  const mm = api.managedAccountAuthentication;
  const T = '/api/v1/account';
  const tok = await login(api);

  const res = await mm.v1AccountDelete({ authToken: tok.accessToken, type: 'robinhood' });
  assert.equal(res.status, 200);
  const body = assertSchema(res, 'delete', T);
  assert.equal(body.status, 'ok');

  const refresh = await httpError(mm.v1TokenRefreshCreate({ type: 'robinhood', refreshToken: tok.refreshToken }));
  assert.equal(refresh.status, 400);
  assert.equal(assertSchema(refresh, 'post', '/api/v1/token/refresh').status, 'badRequest');

  const again = await httpError(mm.v1AccountDelete({ authToken: tok.accessToken, type: 'robinhood' }));
  assert.equal(again.status, 400);
  assert.equal(assertSchema(again, 'delete', T).status, 'badRequest');
});

test('v1StatusList: 57 integrations, bittrex is down', async (t) => {
  const api = meshClient(t);
  const res = await api.managedAccountAuthentication.v1StatusList();
  assert.equal(res.status, 200);
  const body = assertSchema(res, 'get', '/api/v1/status');
  assert.equal(body.status, 'ok');
  assert.equal(body.content.length, 57);
  const bittrex = body.content.find((s) => s.type === 'bittrex');
  assert.ok(bittrex, 'bittrex listed');
  assert.equal(bittrex.isUp, false);
  const rh = body.content.find((s) => s.type === 'robinhood');
  assert.equal(rh.isUp, true);
});

test('v1IntegrationsList: 57 items, the same integrations as /status and /authenticationSchemes', async (t) => {
  const api = meshClient(t);
  const res = await api.managedAccountAuthentication.v1IntegrationsList();
  assert.equal(res.status, 200);
  const body = assertSchema(res, 'get', '/api/v1/integrations');
  assert.equal(body.status, 'ok');
  assert.equal(body.content.items.length, 57);
  const types = new Set(body.content.items.map((i) => i.type));
  assert.equal(types.size, 57);
  for (const i of body.content.items) assert.match(i.id, UUID_RE);
  // The same 57 integrations as /status and /authenticationSchemes.
  const status = await api.managedAccountAuthentication.v1StatusList();
  assert.deepEqual(new Set(assertSchema(status, 'get', '/api/v1/status').content.map((s) => s.type)), types);
  const schemes = await api.selfManagedAccountAuthentication.v1AuthenticationSchemesList();
  const schemeTypes = assertSchema(schemes, 'get', '/api/v1/authenticationSchemes').content.map((s) => s.brokerType);
  assert.deepEqual(new Set(schemeTypes), types);
});

/* ------------------------------------------------------------------------ */
/* Client credentials                                                        */
/* ------------------------------------------------------------------------ */

test('missing or wrong client credentials: HTTP 401 on every mesh endpoint', async (t) => {
  const calls = [
    ['get', '/api/v1/authenticationSchemes', (a) => a.selfManagedAccountAuthentication.v1AuthenticationSchemesList()],
    ['post', A, (a) => a.selfManagedAccountAuthentication.v1AuthenticateCreate({ userId: 'user 1' }, creds('ok@example.com'))],
    ['get', '/api/v1/authenticate/{brokerType}', (a) => a.selfManagedAccountAuthentication.v1AuthenticateDetail('coinbase', { userId: 'user 1' })],
    ['post', '/api/v1/linktoken', (a) => a.managedAccountAuthentication.v1LinktokenCreate({ userId: 'user 1' })],
    ['post', '/api/v1/token/refresh', (a) => a.managedAccountAuthentication.v1TokenRefreshCreate({ type: 'robinhood', refreshToken: 'x' })],
    ['delete', '/api/v1/account', (a) => a.managedAccountAuthentication.v1AccountDelete({ authToken: 'x', type: 'robinhood' })],
    ['get', '/api/v1/status', (a) => a.managedAccountAuthentication.v1StatusList()],
    ['get', '/api/v1/integrations', (a) => a.managedAccountAuthentication.v1IntegrationsList()],
  ];
  const variants = {
    none: {},
    'id only': { 'X-Client-Id': 'test-client-id' },
    'wrong secret': { 'X-Client-Id': 'test-client-id', 'X-Client-Secret': 'wrong' },
    'wrong id': { 'X-Client-Id': 'nobody', 'X-Client-Secret': 'test-client-secret' },
  };
  for (const [label, headers] of Object.entries(variants)) {
    const api = meshClient(t, { headers, suffix: label.replace(/ /g, '-') });
    for (const [method, template, call] of calls) {
      const res = await httpError(call(api));
      assert.equal(res.status, 401, `${label}: ${method.toUpperCase()} ${template}`);
      // /integrations documents no 401 at all; the others declare schema {}.
      assertSchema(res, method, template);
    }
  }
});

/* ------------------------------------------------------------------------ */
/* Coverage of the bundled scenarios and of the 17 content.status values     */
/* ------------------------------------------------------------------------ */

test('every bundled mesh scenario is walked and all 17 content.status values were seen', () => {
  const names = fs
    .readdirSync(SCENARIO_DIR)
    .filter((f) => f.endsWith('.json'))
    .map((f) => JSON.parse(fs.readFileSync(path.join(SCENARIO_DIR, f), 'utf8')))
    .filter((s) => s.api === 'mesh')
    .map((s) => s.name);
  assert.ok(names.length > 0, `no scenarios in ${SCENARIO_DIR}`);
  const missing = names.filter((n) => !coveredScenarios.has(n));
  assert.deepEqual(missing, [], 'bundled scenarios without a test in this file');
  const unseen = AUTH_STATUSES.filter((s) => !seenStatuses.has(s));
  assert.deepEqual(unseen, [], 'content.status values never answered (see failures above)');
});

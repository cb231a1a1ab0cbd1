// authmock dashboard. Plain JS, no build step: it reads the admin API the
// tests use and the event stream of GET /__admin/events, and writes nothing
// but what a person asks for (force a state, reset, move the clock).
'use strict';

// ---- small helpers --------------------------------------------------------

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

// h('tag.class', {attr: value, onclick: fn}, child...) builds an element.
function h(spec, attrs, ...children) {
  const [tag, ...classes] = spec.split('.');
  const el = document.createElement(tag);
  if (classes.length) el.className = classes.join(' ');
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k.startsWith('aria-') || k.startsWith('data-')) el.setAttribute(k, String(v));
    else if (v === false) continue;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else if (k in el && k !== 'list' && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  append(el, children);
  return el;
}

function append(el, ...children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

// Replaces el's children (arrays flattened, null and false left out).
function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

const SVGNS = 'http://www.w3.org/2000/svg';
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) el.setAttribute(k, v);
  return append(el, children);
}

const json = (v) => JSON.stringify(v);
const pretty = (v) => JSON.stringify(v, null, 2);
const timeOf = (iso) => (iso ? iso.slice(11, 23) : '');
const debounce = (fn, ms) => {
  let t = 0;
  return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); };
};

function statusClass(st) {
  return 's' + String(st || 0)[0];
}

// ---- the admin API, with the token asked once and kept for the tab --------

const TOKEN_KEY = 'authmock.adminToken';
let token = sessionStorage.getItem(TOKEN_KEY) || '';
let asking = null;

function askToken(message) {
  if (asking) return asking;
  const dialog = $('#token-dialog');
  const form = $('#token-form');
  const err = $('#token-error');
  err.hidden = !message;
  err.textContent = message || '';
  form.token.value = '';
  asking = new Promise((resolve) => {
    dialog.addEventListener('close', function done() {
      dialog.removeEventListener('close', done);
      asking = null;
      if (dialog.returnValue === 'ok' && form.token.value) {
        token = form.token.value;
        sessionStorage.setItem(TOKEN_KEY, token);
        resolve(true);
        connectEvents();
      } else {
        resolve(false);
      }
    });
    dialog.showModal();
  });
  return asking;
}

async function api(path, opts = {}) {
  for (let attempt = 0; ; attempt++) {
    const headers = Object.assign({}, opts.headers);
    if (token) headers.Authorization = 'Bearer ' + token;
    if (opts.body !== undefined && typeof opts.body !== 'string') {
      headers['Content-Type'] = 'application/json';
      opts = Object.assign({}, opts, { body: json(opts.body) });
    }
    const r = await fetch('/__admin' + path, Object.assign({}, opts, { headers }));
    if (r.status === 401 && attempt < 3) {
      const ok = await askToken(token ? 'That token was refused.' : '');
      if (ok) continue;
    }
    const text = await r.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (e) { body = text; }
    if (!r.ok) {
      const msg = body && body.error ? body.error : r.status + ' ' + r.statusText;
      const e = new Error(msg);
      e.status = r.status;
      e.body = body;
      throw e;
    }
    return { body, headers: r.headers };
  }
}

const get = async (path) => (await api(path)).body;

function flash(el, text, bad) {
  const note = h('span.' + (bad ? 'error' : 'muted'), { role: 'status' }, text);
  el.append(' ', note);
  setTimeout(() => note.remove(), 4000);
}

// ---- describing scenario steps in words ----------------------------------

function condText(field, c) {
  if (field === 'counter' && c && typeof c === 'object') {
    return Object.entries(c).map(([name, r]) => rangeText('counter ' + name, r)).join(', ');
  }
  if (field === 'stateAge') return rangeText('state age', c, ' s');
  if (c === null || typeof c !== 'object' || Array.isArray(c)) return `${field} = ${fmt(c)}`;
  if ('equals' in c) return `${field} = ${fmt(c.equals)}`;
  if (c.present) return `${field} present`;
  if (c.absent) return `${field} absent`;
  if ('regex' in c) return `${field} ~ /${c.regex}/`;
  if ('oneOf' in c) return `${field} one of ${c.oneOf.map(fmt).join(' | ')}`;
  if ('var' in c) return `${field} = \${${c.var}}`;
  return `${field} ${json(c)}`;
}

function rangeText(name, r, unit = '') {
  const parts = [];
  if (r && r.atLeast !== undefined) parts.push(`≥ ${r.atLeast}${unit}`);
  if (r && r.below !== undefined) parts.push(`< ${r.below}${unit}`);
  return `${name} ${parts.join(' and ') || json(r)}`;
}

function fmt(v) {
  return typeof v === 'string' ? v : json(v);
}

function whenText(when) {
  if (!when || !Object.keys(when).length) return 'otherwise';
  return Object.entries(when).map(([k, v]) => condText(k, v)).join(', ');
}

function replyText(reply) {
  if (!reply) return '';
  if (reply.fault) return 'fault ' + reply.fault;
  if (reply.error) return typeof reply.error === 'string' ? reply.error : reply.error.message || 'error';
  const c = reply.content || {};
  let t = reply.outcome || c.status || reply.status || (reply.http ? 'HTTP ' + reply.http : '');
  if (c.mfaType) t += ' (' + c.mfaType + ')';
  if (reply.status && reply.status !== t) t += ' ' + reply.status;
  for (const k of ['token', 'tfaAuth', 'tfaActivation', 'smsAuth', 'phoneActivation']) if (reply[k]) t = t || k;
  if (reply.delayMs) t += ` after ${reply.delayMs} ms`;
  return t || 'reply';
}

function stepLabel(step, i) {
  let t = `${i + 1}: ${whenText(step.when)} → ${replyText(step.reply)}`;
  const count = step.count ? [].concat(step.count) : [];
  if (count.length) t += ' +' + count.join(' +');
  return t;
}

function limitText(l) {
  let t = `limit ${l.counter}: ${l.max} in ${l.windowSeconds} s`;
  if (l.blockSeconds) t += ` → blocked ${l.blockSeconds} s`;
  if (l.blockOn) t += ` (from the ${l.blockOn} request)`;
  return t;
}

// The journal entry's `match` in words: which scenario, why, which step.
function explain(e) {
  const m = e.match;
  const out = { lines: [], scenario: (m && m.scenario) || e.scenario || null, step: null };
  if (!m) {
    if (e.scenario) {
      out.lines.push(`scenario ${e.scenario}: state ${e.stateFrom || '?'} → ${e.stateTo || '?'}` +
        (e.outcome ? ` → ${e.outcome}` : ''));
    } else {
      out.lines.push('No scenario ran for this request (it was answered before one was chosen).');
    }
    return out;
  }
  const said = (b) => (b && Object.keys(b).length ? Object.entries(b).map(([k, v]) => condText(k, v)).join(', ') : '');
  const binding = said(m.binding);
  let bound;
  switch (m.boundBy) {
    case 'header': bound = 'bound by the X-Authmock-Scenario header'; break;
    case 'session': {
      // The request that bound the session, when the page saw it, says why.
      const first = m.session && firstBinding.get(`${e.namespace || ''}|${m.session}`);
      bound = first ? `bound by ${said(first)} (kept by its session)` : 'kept by the session an earlier request bound';
      break;
    }
    case 'fallback': bound = 'bound as the fallback' + (binding ? ` (${binding})` : ''); break;
    case 'binding': bound = binding ? 'bound by ' + binding : 'bound by the catch-all binding'; break;
    default: bound = m.boundBy ? 'bound by ' + m.boundBy : '';
  }
  const outcome = e.outcome || (e.response && e.response.status) || e.status;
  let step;
  if (m.step) {
    // The journal masks a secret's expected value ("mfaCode = ***"); the
    // scenario itself, public to the admin API, says what the step expects.
    const state = m.step.state || m.stateBefore;
    const doc = docReady.get(m.scenario);
    const written = doc && doc.states && doc.states[state] && doc.states[state][m.step.index];
    const when = written ? written.when : m.step.when;
    out.step = m.step.index + 1;
    step = `state ${state}, step ${m.step.index + 1} \`${whenText(when)}\` → ${outcome}`;
  } else if (m.limit) {
    step = `state ${m.stateBefore}, no step: the limit answered → ${outcome}`;
  } else if (m.scenario) {
    step = `state ${m.stateBefore}: no step matched → ${outcome}`;
  } else {
    step = `no scenario bound → ${outcome}`;
  }
  out.lines.push([m.scenario ? `scenario ${m.scenario}` : null, bound, step].filter(Boolean).join('; '));
  if (m.step && m.step.description) out.lines.push(`(${m.step.description})`);
  if (m.stateAfter && m.stateAfter !== m.stateBefore) out.lines.push(`now in state ${m.stateAfter}`);
  if (m.limit) {
    const l = m.limit;
    out.lines.push(`limit ${l.name}: ${l.count} of ${l.max}` + (l.windowSeconds ? ` in ${l.windowSeconds} s` : ''));
  }
  if (m.blockStarted) out.lines.push(`blocked until ${typeof m.blockStarted === 'string' ? m.blockStarted : json(m.blockStarted)}`);
  if (m.counters && Object.keys(m.counters).length) {
    out.lines.push('counters: ' + Object.entries(m.counters).map(([k, v]) => `${k} ${fmt(v)}`).join(', '));
  }
  for (const c of m.candidates || []) {
    const why = (c.failed || []).map((f) =>
      `${f.field} ${f.condition && f.condition !== 'equals' ? f.condition + ' ' : ''}expected ${fmt(f.expected)}, got ${fmt(f.actual)}`).join('; ');
    out.lines.push(`not ${c.scenario}` + (why ? `: ${why}` : ''));
  }
  return out;
}

// ---- tabs ------------------------------------------------------------------

const views = {};
let current = 'requests';

function showTab(name, focus) {
  for (const tab of $$('[role=tab]')) {
    const on = tab.id === 'tab-' + name;
    tab.setAttribute('aria-selected', on);
    tab.tabIndex = on ? 0 : -1;
    $('#' + tab.getAttribute('aria-controls')).hidden = !on;
    if (on && focus) tab.focus();
  }
  current = name;
  if (location.hash !== '#' + name) history.replaceState(null, '', '#' + name);
  if (views[name] && views[name].show) views[name].show();
}

function setupTabs() {
  const tabs = $$('[role=tab]');
  tabs.forEach((tab, i) => {
    tab.addEventListener('click', () => showTab(tab.id.slice(4)));
    tab.addEventListener('keydown', (ev) => {
      let j = null;
      if (ev.key === 'ArrowRight') j = (i + 1) % tabs.length;
      else if (ev.key === 'ArrowLeft') j = (i - 1 + tabs.length) % tabs.length;
      else if (ev.key === 'Home') j = 0;
      else if (ev.key === 'End') j = tabs.length - 1;
      if (j !== null) {
        ev.preventDefault();
        showTab(tabs[j].id.slice(4), true);
      }
    });
  });
}

// One row of a table is in the tab order (the selected one, else the first);
// arrows move between rows, Enter or a click selects.
function rove(tbody) {
  const rows = tbody.children;
  const keep = tbody.querySelector('tr[aria-selected="true"]') || rows[0];
  for (const r of rows) r.tabIndex = r === keep ? 0 : -1;
}

function rowKeys(tbody, select) {
  new MutationObserver(() => rove(tbody)).observe(tbody, { childList: true });
  tbody.addEventListener('keydown', (ev) => {
    const tr = ev.target.closest('tr');
    if (!tr) return;
    let next = null;
    if (ev.key === 'ArrowDown') next = tr.nextElementSibling;
    else if (ev.key === 'ArrowUp') next = tr.previousElementSibling;
    else if (ev.key === 'Home') next = tbody.firstElementChild;
    else if (ev.key === 'End') next = tbody.lastElementChild;
    else if (ev.key === 'Enter' || ev.key === ' ') {
      ev.preventDefault();
      select(tr);
      return;
    }
    if (next) {
      ev.preventDefault();
      next.focus();
      select(next);
    }
  });
  tbody.addEventListener('click', (ev) => {
    const tr = ev.target.closest('tr');
    if (tr && !ev.target.closest('button, a, input, select')) select(tr);
  });
}

function markSelected(tbody, tr) {
  for (const r of tbody.children) r.setAttribute('aria-selected', r === tr);
  rove(tbody);
}

// ---- namespaces seen, offered in every namespace field --------------------

const namespaces = new Set();
const noteNamespace = debounce(() => {
  const dl = $('#namespaces');
  fill(dl, ...[...namespaces].filter(Boolean).sort().map((n) => h('option', { value: n })));
}, 300);
function seeNamespace(ns) {
  if (ns && !namespaces.has(ns)) {
    namespaces.add(ns);
    noteNamespace();
  }
}

// ---- live requests -------------------------------------------------------

const MAX_ROWS = 500;
const entries = []; // newest first
const byId = new Map();
let selectedId = null;
let newestId = 0;
const lastMatch = new Map(); // "ns|session" (or "ns|api|user") → the newest entry with a match
const firstBinding = new Map(); // "ns|session" → the binding of the request that bound it

function filterOf() {
  const f = $('#filters');
  return { api: f.api.value, namespace: f.namespace.value.trim(), user: f.user.value.trim(), status: f.status.value.trim() };
}

function passes(e, f) {
  if (f.api && e.api !== f.api) return false;
  if (f.namespace && (e.namespace || '') !== f.namespace) return false;
  if (f.user && !(e.user || '').includes(f.user)) return false;
  if (f.status) {
    const st = String(e.status);
    if (/^\dxx$/i.test(f.status) ? st[0] !== f.status[0] : st !== f.status) return false;
  }
  return true;
}

function outcomeOf(e) {
  if (e.outcome) return e.outcome;
  const b = e.response && e.response.body;
  if (b && typeof b === 'object' && b.content && b.content.status) return b.content.status;
  return '';
}

function requestRow(e, fresh) {
  const st = e.status;
  const moved = e.stateTo && e.stateTo !== e.stateFrom ? ' → ' + e.stateTo : '';
  return h('tr' + (fresh ? '.fresh' : ''), { tabindex: -1, 'data-id': e.id, 'aria-selected': e.id === selectedId },
    h('td.num.muted', { text: e.id }),
    h('td.mono', { text: timeOf(e.time), title: e.time }),
    h('td', {}, h('span.path.nowrap', { text: `${e.method} ${e.path}` }), e.query ? h('div.path.muted', { text: '?' + e.query }) : null),
    h('td', {}, h('div', { text: e.user || '' }), e.namespace ? h('div.muted', { text: 'ns ' + e.namespace }) : null),
    h('td', {}, h('span.badge.' + statusClass(st), { text: st || 'dropped' }), outcomeOf(e) ? h('div', { text: outcomeOf(e) }) : null),
    h('td', {}, e.scenario ? [h('div', { text: e.scenario }), h('div.muted', { text: (e.stateFrom || '') + moved })] : ''));
}

function renderRequests() {
  const f = filterOf();
  const tbody = $('#requests tbody');
  const shown = entries.filter((e) => passes(e, f));
  fill(tbody, ...shown.map((e) => requestRow(e, false)));
  $('#req-count').textContent = `${shown.length} of ${entries.length} shown`;
}

function addEntry(e, live) {
  if (byId.has(e.id)) return;
  byId.set(e.id, e);
  newestId = Math.max(newestId, e.id);
  seeNamespace(e.namespace);
  const m = e.match;
  if (m) {
    // By session id where the journal gives it, else by API and user.
    const k = m.session ? `${e.namespace || ''}|${m.session}` : `${e.namespace || ''}|${e.api}|${e.user}`;
    const old = lastMatch.get(k);
    if (!old || old.id < e.id) lastMatch.set(k, e);
    if (m.session && m.boundBy === 'binding' && m.binding) firstBinding.set(`${e.namespace || ''}|${m.session}`, m.binding);
  }
  // Keep newest first (a reconnect may bring older ones).
  let i = 0;
  while (i < entries.length && entries[i].id > e.id) i++;
  entries.splice(i, 0, e);
  while (entries.length > MAX_ROWS) byId.delete(entries.pop().id);
  if (live && i === 0 && passes(e, filterOf())) {
    const tbody = $('#requests tbody');
    tbody.prepend(requestRow(e, true));
    while (tbody.children.length > MAX_ROWS) tbody.lastElementChild.remove();
    const shown = tbody.children.length;
    $('#req-count').textContent = `${shown} of ${entries.length} shown`;
  } else if (live) {
    renderRequests();
  }
}

function kv(pairs) {
  return h('dl.kv', {}, pairs.filter(([, v]) => v !== undefined && v !== null && v !== '')
    .map(([k, v]) => [h('dt', { text: k }), h('dd', {}, v)]));
}

// Headers fold away (a browser sends a dozen); the body stays in view.
function headersTable(hd) {
  if (!hd || typeof hd !== 'object') return null;
  const pairs = Array.isArray(hd) ? hd.map((x) => [x.name || x[0], x.value || x[1]]) : Object.entries(hd);
  return h('details', {}, h('summary', { text: `headers (${pairs.length})` }),
    kv(pairs.map(([k, v]) => [k, h('span.mono', { text: Array.isArray(v) ? v.join(', ') : fmt(v) })])));
}

function bodyBlock(body, bytes, truncated) {
  if (body === undefined || body === null) return h('p.muted', { text: bytes ? `${bytes} bytes, not kept` : 'no body' });
  return [h('pre', { text: typeof body === 'string' ? body : pretty(body) }),
    truncated ? h('p.muted', { text: `cut to the first bytes of ${bytes}` }) : null];
}

function showRequest(id) {
  selectedId = id;
  markSelected($('#requests tbody'), $(`#requests tr[data-id="${id}"]`));
  const e = byId.get(id);
  const pane = $('#req-detail');
  if (!e) {
    fill(pane, h('p.muted', { text: 'This entry is no longer in the list.' }));
    return;
  }
  const ex = explain(e);
  const resp = e.response;
  if (e.match && e.match.scenario && !docReady.has(e.match.scenario)) {
    scenarioDoc(e.match.scenario).then(() => { if (selectedId === id) showRequest(id); }, () => {});
  }
  fill(pane,
    h('h2', {}, `${e.method} `, h('span.path', { text: e.path + (e.query ? '?' + e.query : '') })),
    kv([['id', String(e.id)], ['time', e.time], ['namespace', e.namespace || '(none)'], ['api', e.api],
      ['user', e.user], ['status', h('span.badge.' + statusClass(e.status), { text: e.status || 'dropped' })],
      ['outcome', outcomeOf(e)], ['latency', e.latencyMs !== undefined ? e.latencyMs.toFixed(2) + ' ms' : '']]),
    h('div.explain', { id: 'explanation', 'data-scenario': ex.scenario || '', 'data-step': ex.step || '' },
      ex.lines.map((l) => h('p', { text: l }))),
    h('h3', { text: 'Request' }),
    headersTable(e.requestHeaders),
    bodyBlock(e.body, e.bodyBytes, e.bodyTruncated),
    h('h3', { text: 'Response' }),
    resp ? [kv([['status', String(resp.status)]]), headersTable(resp.headers), bodyBlock(resp.body, resp.bodyBytes, resp.bodyTruncated)]
      : h('p.muted', { text: 'This server does not record responses in its journal.' }),
    e.match ? h('details', {}, h('summary', { text: 'match (raw)' }), h('pre', { text: pretty(e.match) })) : null,
    h('details', {}, h('summary', { text: 'journal entry (raw)' }), h('pre', { text: pretty(e) })));
}

let gapNote = 0;
function noteGap(g) {
  const p = $('#req-gap');
  gapNote += Math.max(0, (g.before || 0) - (g.after || 0) - 1);
  p.hidden = false;
  p.textContent = `The server was busier than a page can show: up to ${gapNote} entries were not streamed ` +
    '(GET /__admin/requests has them).';
}

views.requests = {
  async load() {
    const { requests } = await get('/requests?limit=200');
    for (const e of requests.reverse()) addEntry(e, false);
    renderRequests();
  },
};

// ---- the event stream --------------------------------------------------------

let source = null;
let retry = 0;
const refreshOnEvent = debounce(() => {
  if (current === 'sessions') views.sessions.refresh();
  if (current === 'sms') views.sms.refresh();
}, 150);

function setLive(cls, text) {
  const el = $('#live');
  el.className = 'live ' + cls;
  el.textContent = text;
}

function connectEvents() {
  if (source) source.close();
  clearTimeout(retry);
  let url = '/__admin/events?after=' + newestId;
  if (token) url += '&token=' + encodeURIComponent(token);
  source = new EventSource(url);
  source.addEventListener('hello', (ev) => {
    const hello = JSON.parse(ev.data);
    setLive('on', hello.journal ? 'live' : 'live (the journal is off)');
    if (hello.latest < newestId) {
      // A new server (ids start again): what the table holds is another's.
      entries.length = 0;
      byId.clear();
      lastMatch.clear();
      firstBinding.clear();
      newestId = 0;
      views.requests.load().catch(() => {});
    }
  });
  source.addEventListener('request', (ev) => {
    addEntry(JSON.parse(ev.data), true);
    refreshOnEvent();
  });
  source.addEventListener('gap', (ev) => noteGap(JSON.parse(ev.data)));
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) {
      // Refused (401, 503) or the server went away: ask why, then try again.
      setLive('off', 'disconnected');
      source.close();
      retry = setTimeout(async () => {
        try {
          await get('/health');
          await views.requests.load();
        } catch (e) { /* still down: try again later */ }
        connectEvents();
      }, 3000);
    } else {
      setLive('off', 'reconnecting…');
    }
  };
}

// ---- state machines drawn as SVG --------------------------------------------

// Lays a scenario out left to right: states ranked by their distance from the
// initial state, steps between states as labelled curves (steps that keep the
// state are listed under it), limits below.
function drawGraph(doc, opts = {}) {
  const names = Object.keys(doc.states || {});
  const initial = doc.initial || names[0];
  const edges = new Map(); // "from\u0000to" → {from, to, labels, taken}
  const loops = new Map(); // state → [{label, taken}]
  for (const from of names) {
    (doc.states[from] || []).forEach((step, i) => {
      const to = step.next && names.includes(step.next) ? step.next : from;
      const label = stepLabel(step, i);
      const taken = !!(opts.taken && opts.taken.state === from && opts.taken.index === i);
      if (to === from) {
        if (!loops.has(from)) loops.set(from, []);
        loops.get(from).push({ label, taken });
      } else {
        const k = from + '\u0000' + to;
        if (!edges.has(k)) edges.set(k, { from, to, labels: [], taken: false });
        const ed = edges.get(k);
        ed.labels.push(label);
        ed.taken = ed.taken || taken;
      }
    });
  }
  // Ranks: breadth first from the initial state; unreachable ones after.
  const rank = new Map([[initial, 0]]);
  const queue = [initial];
  while (queue.length) {
    const at = queue.shift();
    for (const ed of edges.values()) {
      if (ed.from === at && !rank.has(ed.to)) {
        rank.set(ed.to, rank.get(at) + 1);
        queue.push(ed.to);
      }
    }
  }
  let maxRank = Math.max(0, ...rank.values());
  for (const n of names) if (!rank.has(n)) rank.set(n, ++maxRank);
  const columns = [];
  for (const n of names) (columns[rank.get(n)] = columns[rank.get(n)] || []).push(n);

  const CH = 6.7; // an average character of the 11px monospace labels
  const LINE = 13;
  const MAXC = 46;
  const clip = (t) => (t.length > MAXC ? t.slice(0, MAXC - 1) + '…' : t);
  // A long label breaks before its answer: "1: mfaCode = 123456" / "→ succeeded".
  const wrap = (t, lead = '') => {
    const at = t.indexOf(' → ');
    if (lead.length + t.length <= 34 || at < 0) return [clip(lead + t)];
    return [clip(lead + t.slice(0, at)), clip((lead ? ' '.repeat(lead.length + 3) : '') + t.slice(at + 1))];
  };
  const textW = (lines) => Math.max(0, ...lines.map((l) => l.length)) * CH;
  const loopLines = (n) => (loops.get(n) || []).flatMap((l) => wrap(l.label, '↺ ').map((text) => ({ text, taken: l.taken })));
  const NODE_H = 38;
  const nodeW = (n) => Math.max(96, n.length * 8.5 + 28);
  const forward = [...edges.values()].filter((ed) => rank.get(ed.to) > rank.get(ed.from));
  const back = [...edges.values()].filter((ed) => rank.get(ed.to) <= rank.get(ed.from));

  // Columns left to right; in a column, each state with the steps that keep
  // it listed under it.
  const pos = new Map();
  let x = 16;
  let right = 0;
  let bottom = 0;
  for (const col of columns) {
    if (!col) continue;
    let y = 0;
    let colW = 0;
    for (const n of col) {
      const w = nodeW(n);
      const ls = loopLines(n).map((l) => l.text);
      colW = Math.max(colW, w, textW(ls));
      pos.set(n, { x, y, w, h: NODE_H });
      y += NODE_H + ls.length * LINE + 34;
    }
    bottom = Math.max(bottom, y);
    right = x + colW;
    const out = forward.filter((ed) => col.includes(ed.from));
    x += colW + Math.max(70, Math.max(0, ...out.map((ed) => textW(ed.labels.flatMap((l) => wrap(l))))) + 24);
  }
  const width = Math.max(right + 16, 280);

  // Steps that go back arch over the states, the nearest first; the space
  // they take is above the states.
  let top = 10;
  const arcs = back.map((ed) => {
    const lines = ed.labels.flatMap((l) => wrap(l));
    top += lines.length * LINE + 22;
    return { ed, lines, apex: 0 };
  });
  let level = top;
  for (const arc of arcs) {
    level -= arc.lines.length * LINE + 22;
    arc.apex = level + arc.lines.length * LINE + 12;
  }
  const off = top + 14; // the states' top
  for (const p of pos.values()) p.y += off;

  const parts = [];
  const defs = s('defs', {}, s('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' },
    s('path', { d: 'M0,0 L10,5 L0,10 z', class: 'arrow' })));
  const edgeGroup = (ed, d, lx, ly, lines) => s('g', { class: 'edge' + (ed.taken ? ' taken' : ''), 'data-from': ed.from, 'data-to': ed.to },
    s('title', {}, ed.labels.join('\n')),
    s('path', { d, 'marker-end': 'url(#arrow)' }),
    s('text', { x: lx, y: ly, 'text-anchor': 'middle' }, lines.map((l, k) => s('tspan', { x: lx, dy: k ? LINE : 0 }, l))));
  for (const ed of forward) {
    const a = pos.get(ed.from);
    const b = pos.get(ed.to);
    const lines = ed.labels.flatMap((l) => wrap(l));
    const x1 = a.x + a.w;
    const y1 = a.y + a.h / 2;
    const x2 = b.x - 2;
    const y2 = b.y + b.h / 2;
    const mx = (x1 + x2) / 2;
    const lx = Math.max(mx, x1 + textW(lines) / 2 + 6);
    parts.push(edgeGroup(ed, `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, lx, Math.min(y1, y2) - 8 - (lines.length - 1) * LINE, lines));
  }
  for (const { ed, lines, apex } of arcs) {
    const a = pos.get(ed.from);
    const b = pos.get(ed.to);
    const x1 = a.x + a.w * 0.35;
    const x2 = b.x + b.w * 0.65;
    const y1 = a.y;
    const y2 = b.y - 2;
    const ctrl = Math.min(y1, y2) - (Math.min(y1, y2) - apex) / 0.75;
    const half = textW(lines) / 2 + 4;
    const lx = Math.min(Math.max((x1 + x2) / 2, half), width - half);
    parts.push(edgeGroup(ed, `M${x1},${y1} C${x1},${ctrl} ${x2},${ctrl} ${x2},${y2}`, lx, apex - 6 - (lines.length - 1) * LINE, lines));
  }
  for (const n of names) {
    const p = pos.get(n);
    const cur = n === opts.current;
    const steps = (doc.states[n] || []).length;
    const g = s('g', { class: ['node', n === initial ? 'initial' : '', cur ? 'current' : ''].join(' ').trim(), 'data-state': n,
      'aria-label': `state ${n}${cur ? ' (current)' : ''}`, role: opts.onPick ? 'button' : 'img' },
    s('title', {}, `${n}: ${steps} step${steps === 1 ? '' : 's'}${n === initial ? ', initial' : ''}`),
    s('rect', { x: p.x, y: p.y, width: p.w, height: p.h, rx: 8 }),
    s('text', { x: p.x + p.w / 2, y: p.y + 17, 'text-anchor': 'middle' }, n),
    s('text', { class: 'sub', x: p.x + p.w / 2, y: p.y + 31, 'text-anchor': 'middle' },
      (n === initial ? 'initial · ' : '') + `${steps} step${steps === 1 ? '' : 's'}`));
    if (cur) g.setAttribute('aria-current', 'true');
    if (opts.onPick) {
      g.setAttribute('tabindex', '0');
      g.addEventListener('click', () => opts.onPick(n));
      g.addEventListener('keydown', (ev) => {
        if (ev.key === 'Enter' || ev.key === ' ') {
          ev.preventDefault();
          opts.onPick(n);
        }
      });
    }
    parts.push(g);
    const ls = loops.get(n) || [];
    if (ls.length) {
      const lx = p.x + 2;
      parts.push(s('g', { class: 'loop edge' + (ls.some((l) => l.taken) ? ' taken' : ''), 'data-from': n, 'data-to': n },
        s('title', {}, 'steps that keep the state:\n' + ls.map((l) => l.label).join('\n')),
        s('text', { x: lx, y: p.y + p.h + 15 },
          loopLines(n).map((l, k) => s('tspan', { x: lx, dy: k ? LINE : 0, class: l.taken ? 'taken' : null }, l.text)))));
    }
  }
  let y = off + bottom;
  const limits = (doc.limits || []).map((l) => {
    y += 16;
    return s('text', { x: 16, y }, '⊘ ' + limitText(l));
  });
  if (limits.length) parts.push(s('g', { class: 'limit' }, limits));
  const svg = s('svg', { viewBox: `0 0 ${width} ${y + 12}`, width, height: y + 12, role: 'group', 'aria-label': `state machine of ${doc.name}` }, defs, parts);
  return h('div.graph', { id: opts.id }, svg);
}

const scenarioDocs = new Map(); // name → the promise of its document
const docReady = new Map(); // name → the document, once it came
async function scenarioDoc(name) {
  if (!scenarioDocs.has(name)) {
    scenarioDocs.set(name, get('/scenarios/' + encodeURIComponent(name)).then((d) => {
      docReady.set(name, d);
      return d;
    }, (e) => {
      scenarioDocs.delete(name);
      throw e;
    }));
  }
  return scenarioDocs.get(name);
}

// ---- sessions -------------------------------------------------------------------

let sessions = [];
let selectedSession = null; // {id, namespace}

function sessionUser(s) {
  // mesh: "userId:type"; onlyoffice: "name|ip".
  const id = s.identity || s.id.slice(s.id.indexOf(':') + 1);
  if (s.api === 'onlyoffice') return id.split('|')[0];
  const k = id.lastIndexOf(':');
  return k > 0 ? id.slice(0, k) : id;
}

function sessionRow(sel) {
  return $$('#sessions tbody tr').find((r) => r.dataset.id === sel.id && r.dataset.namespace === (sel.namespace || ''));
}

views.sessions = {
  show() { this.refresh(); },
  async refresh() {
    const f = $('#session-filters');
    const q = new URLSearchParams({ limit: '200' });
    if (f.namespace.value.trim()) q.set('namespace', f.namespace.value.trim());
    if (f.api.value) q.set('api', f.api.value);
    try {
      sessions = await get('/sessions?' + q);
    } catch (e) {
      fill($('#session-detail'), h('p.error', { text: e.message }));
      return;
    }
    const tbody = $('#sessions tbody');
    const focused = document.activeElement && document.activeElement.closest && document.activeElement.closest('#sessions tr');
    const focusKey = focused ? focused.dataset.namespace + '\u0000' + focused.dataset.id : null;
    fill(tbody, ...sessions.map((x) => {
      seeNamespace(x.namespace);
      const sel = selectedSession && selectedSession.id === x.id && selectedSession.namespace === x.namespace;
      return h('tr', { tabindex: -1, 'data-id': x.id, 'data-namespace': x.namespace || '', 'aria-selected': !!sel },
        h('td.path', { text: x.id }), h('td', { text: x.namespace || '' }), h('td', { text: x.scenario }),
        h('td', {}, h('strong', { text: x.state })), h('td.mono', { text: timeOf(x.updatedAt) }),
        h('td', {}, x.blockedUntil ? h('span.badge.s5', { text: 'until ' + timeOf(x.blockedUntil) }) : ''));
    }));
    if (focusKey) {
      const tr = sessionRow({ namespace: focusKey.split('\u0000')[0], id: focusKey.split('\u0000')[1] });
      if (tr) tr.focus();
    }
    if (!selectedSession && sessions.length) selectedSession = { id: sessions[0].id, namespace: sessions[0].namespace };
    if (selectedSession) this.detail();
  },
  async detail() {
    const x = sessions.find((v) => v.id === selectedSession.id && v.namespace === selectedSession.namespace);
    const pane = $('#session-detail');
    markSelected($('#sessions tbody'), sessionRow(selectedSession));
    if (!x) {
      fill(pane, h('p.muted', { text: `${selectedSession.id} is gone (reset, or forgotten).` }));
      return;
    }
    let doc;
    try { doc = await scenarioDoc(x.scenario); } catch (e) {
      fill(pane, h('p.error', { text: `scenario ${x.scenario}: ${e.message}` }));
      return;
    }
    const last = lastMatch.get(`${x.namespace || ''}|${x.id}`) || lastMatch.get(`${x.namespace || ''}|${x.api}|${sessionUser(x)}`);
    const m = last && last.match && last.match.scenario === x.scenario ? last.match : null;
    const counters = x.counters || (m && m.counters) || null;
    const taken = m && m.step && m.stateAfter === x.state ? { state: m.step.state || m.stateBefore, index: m.step.index } : null;
    const vars = x.vars && Object.keys(x.vars).length ? x.vars : null;
    const stateSel = h('select', { id: 'force-state', 'aria-label': 'State to force' },
      Object.keys(doc.states).map((n) => h('option', { value: n, selected: n === x.state, text: n })));
    const force = async (state) => {
      const btn = $('#force-button');
      try {
        await api('/sessions/' + encodeURIComponent(x.id) + '?namespace=' + encodeURIComponent(x.namespace || ''),
          { method: 'PUT', body: { state } });
        flash(btn.parentNode, `forced into ${state}`);
        await this.refresh();
      } catch (e) { flash(btn.parentNode, e.message, true); }
    };
    fill(pane,
      h('h2', { text: x.id }),
      h('div.session-head', {},
        kv([['namespace', x.namespace || '(none)'], ['scenario', x.scenario], ['description', doc.description],
          ['state', h('strong', { id: 'session-state', text: x.state })], ['entered', x.enteredAt]]),
        kv([['changed', x.updatedAt],
          ['blocked', x.blockedUntil ? h('span.badge.s5', { text: 'until ' + x.blockedUntil }) : 'no'],
          ['counters', counters ? Object.entries(counters).map(([k, v]) => `${k} ${fmt(v)}`).join(', ') : null],
          ['variables', vars ? h('span.mono', { text: json(vars) }) : null],
          ['last step', last ? explain(last).lines[0] : null]])),
      drawGraph(doc, { id: 'session-graph', current: x.state, taken, onPick: (n) => { stateSel.value = n; stateSel.focus(); } }),
      h('div.actions', {},
        h('label', {}, 'Force into ', stateSel),
        h('button', { type: 'button', id: 'force-button', onclick: () => force(stateSel.value) }, 'Force state')),
      h('p.muted', { text: 'Forcing restarts the state\'s clock and counters and ends a block. Click a state in the graph to pick it.' }));
  },
  select(tr) {
    selectedSession = { id: tr.dataset.id, namespace: tr.dataset.namespace };
    this.detail();
  },
};

async function resetNamespace() {
  const f = $('#session-filters');
  const ns = f.namespace.value.trim() || (selectedSession && selectedSession.namespace) || '';
  const what = ns ? `namespace "${ns}"` : 'every namespace (the whole server)';
  if (!confirm(`Forget all state of ${what}: sessions, counters, tokens, SMS codes, the journal and its clock?`)) return;
  try {
    await api('/reset' + (ns ? '?namespace=' + encodeURIComponent(ns) : ''), { method: 'POST' });
    flash($('#reset-namespace').parentNode, `${what} reset`);
    selectedSession = null;
    views.sessions.refresh();
  } catch (e) { flash($('#reset-namespace').parentNode, e.message, true); }
}

// ---- the mock clock -----------------------------------------------------------

// The shared clock's offset from this browser's clock, for the TOTP codes.
let clockSkew = 0;
async function syncClock() {
  const c = await get('/clock');
  clockSkew = Date.parse(c.now) / 1000 - Date.now() / 1000;
  return c;
}
const mockNow = () => Date.now() / 1000 + clockSkew;

function offsetText(s) {
  if (!s) return 'real time';
  const sign = s < 0 ? '−' : '+';
  let a = Math.abs(s);
  const parts = [];
  for (const [n, u] of [[86400, 'd'], [3600, 'h'], [60, 'min'], [1, 's']]) {
    if (a >= n) {
      parts.push(Math.floor(a / n) + ' ' + u);
      a -= Math.floor(a / n) * n;
    }
  }
  if (a > 0.0005 || !parts.length) parts.push(a.toFixed(3).replace(/\.?0+$/, '') + ' s');
  return sign + parts.join(' ');
}

function clockCard(ns) {
  const card = h('section.card', { 'aria-label': ns === null ? 'The shared clock' : 'A namespace\'s clock' });
  const q = () => {
    const n = ns === null ? null : card.querySelector('input[name=ns]').value.trim();
    return n ? '?namespace=' + encodeURIComponent(n) : '';
  };
  const now = h('div.clock-now', { 'data-role': 'now' }, '…');
  const info = h('div.muted', {});
  let c = null;
  let base = 0;
  const show = async () => {
    if (ns !== null && !q()) {
      c = null;
      now.textContent = '—';
      info.textContent = 'Name a namespace to see and move its own clock.';
      return;
    }
    try {
      c = await get('/clock' + q());
      base = Date.parse(c.now) / 1000 - Date.now() / 1000;
      info.textContent = `offset ${offsetText(c.offsetSeconds)}` + (c.namespace ? ` (namespace ${c.namespace}, with the shared clock's)` : '');
      if (ns === null) clockSkew = base;
    } catch (e) { info.textContent = e.message; }
  };
  const move = async (body) => {
    if (ns !== null && !q()) {
      flash(info, 'name a namespace first', true);
      return;
    }
    try {
      await api('/clock' + q(), { method: 'POST', body });
      await show();
      if (ns !== null) await syncClock();
      views.accounts.tick(true);
    } catch (e) { flash(info, e.message, true); }
  };
  const adv = h('input', { type: 'number', name: 'advance', value: '60', step: 'any', size: 8, 'aria-label': 'seconds to advance' });
  const set = h('input', { type: 'text', name: 'set', placeholder: '2030-01-01T00:00:00Z', size: 22, 'aria-label': 'instant to set (RFC 3339)' });
  append(card,
    h('h3', { text: ns === null ? 'Shared clock' : 'Namespace clock' }),
    ns === null ? h('p.muted', { text: 'Every namespace without a clock of its own follows it.' })
      : h('label', {}, 'Namespace ', h('input', { name: 'ns', list: 'namespaces', placeholder: 'name', size: 14, onchange: show })),
    now, info,
    h('div.actions', {},
      [['+30 s', 30], ['+5 min', 300], ['+1 h', 3600], ['+1 day', 86400]].map(([t, n]) =>
        h('button.quiet', { type: 'button', onclick: () => move({ advanceSeconds: n }) }, t))),
    h('div.actions', {}, h('label', {}, 'Advance ', adv, ' s'),
      h('button', { type: 'button', onclick: () => move({ advanceSeconds: Number(adv.value) }) }, 'Advance')),
    h('div.actions', {}, h('label', {}, 'Set ', set),
      h('button', { type: 'button', onclick: () => move({ set: set.value.trim() }) }, 'Set')),
    h('div.actions', {}, h('button.quiet', { type: 'button', onclick: () => move({ set: 'now' }) }, 'Back to real time')));
  card.tick = () => {
    if (c) now.textContent = new Date((Date.now() / 1000 + base) * 1000).toISOString().replace('T', ' ').slice(0, 19) + ' UTC';
  };
  card.show = show;
  return card;
}

views.clock = {
  cards: null,
  show() {
    if (!this.cards) {
      this.cards = [clockCard(null), clockCard('')];
      fill($('#clocks'), ...this.cards);
    }
    this.cards.forEach((c) => c.show());
  },
  tick() { if (this.cards && current === 'clock') this.cards.forEach((c) => c.tick()); },
};

// ---- the SMS outbox ---------------------------------------------------------------

views.sms = {
  show() { this.refresh(); },
  async refresh() {
    const ns = $('#sms-filters').namespace.value.trim();
    let list;
    try { list = await get('/onlyoffice/sms' + (ns ? '?namespace=' + encodeURIComponent(ns) : '')); } catch (e) {
      fill($('#sms tbody'), h('tr', {}, h('td.error', { colspan: 5, text: e.message })));
      return;
    }
    const now = mockNow();
    fill($('#sms tbody'), ...(list.length ? list.map((m) => {
      const expired = Date.parse(m.expiresAt) / 1000 < now;
      return h('tr', {}, h('td.mono', { text: m.phone }), h('td', {}, h('strong.mono', { text: m.code })),
        h('td.mono', { text: m.sentAt }), h('td.mono' + (expired ? '.muted' : ''), { text: m.expiresAt + (expired ? ' (expired)' : '') }),
        h('td', { text: m.namespace || '' }));
    }) : [h('tr', {}, h('td.muted', { colspan: 5, text: 'No SMS sent yet.' }))]));
  },
};

// ---- scenarios -------------------------------------------------------------------------

views.scenarios = {
  list: [],
  show() { this.refresh(); },
  async refresh() {
    try {
      const [list, reload] = await Promise.all([get('/scenarios'), get('/reload').catch(() => null)]);
      this.list = list;
      this.dir = reload ? reload.directory.replace(/\/*$/, '/') : '';
      scenarioDocs.clear();
      docReady.clear();
      this.reload(reload);
    } catch (e) {
      $('#reload').textContent = e.message;
      return;
    }
    fill($('#scenarios tbody'), ...this.list.map((x) => h('tr', { tabindex: -1, 'data-name': x.name },
      h('td.nowrap', {}, h('strong', { text: x.name })), h('td', { text: x.api }),
      h('td.mono', { text: whenText(x.bind).replace(/^otherwise$/, 'any') }),
      h('td.path.nowrap', { text: this.short(x.origin), title: x.origin }),
      h('td.muted', { text: x.description || '' }))));
  },
  // A file's origin relative to the scenario directory.
  short(origin) {
    return this.dir && origin.startsWith(this.dir) ? origin.slice(this.dir.length) : origin;
  },
  reload(r) {
    const el = $('#reload');
    if (!r) {
      el.textContent = 'This server does not report its scenario reloads.';
      return;
    }
    const head = `Scenario directory ${r.directory}` + (r.watching ? ', watched for changes' : ', not watched');
    if (!r.at) {
      fill(el, h('p', { text: head + '. No reload since start.' }));
    } else if (r.refused) {
      fill(el, h('p.error', { text: `${head}. The last reload (${r.at}) was refused; the previous scenarios keep serving:` }),
        h('ul', { id: 'reload-problems' }, r.problems.map((p) => h('li.mono', { text: p }))));
    } else {
      fill(el, h('p', { text: `${head}. Last reload ${r.at}: ${r.loaded} scenarios.` }));
    }
  },
  async select(tr) {
    markSelected($('#scenarios tbody'), tr);
    const name = tr.dataset.name;
    const meta = this.list.find((x) => x.name === name) || {};
    const pane = $('#scenario-detail');
    try {
      const doc = await scenarioDoc(name);
      fill(pane, h('h2', { text: name }),
        kv([['api', meta.api], ['origin', meta.origin], ['description', doc.description], ['binding', h('span.mono', { text: whenText(doc.bind).replace(/^otherwise$/, 'any request') })]]),
        drawGraph(doc, { id: 'scenario-graph', current: null }),
        h('details', { open: true }, h('summary', { text: 'JSON' }), h('pre', { id: 'scenario-json', text: pretty(doc) })));
    } catch (e) { fill(pane, h('p.error', { text: e.message })); }
  },
};

// ---- accounts ---------------------------------------------------------------------

// A shell-quoted word.
const sq = (t) => "'" + String(t).replace(/'/g, "'\\''") + "'";

function meshFirstBody(doc, fixtures) {
  const bind = doc.bind || {};
  let type = typeof bind.type === 'string' ? bind.type : null;
  if (!type) {
    // The README's example broker of each scheme, else the first one.
    const scheme = typeof bind.schemeType === 'string' ? bind.schemeType : 'usernamePassword';
    const usual = { usernamePassword: 'robinhood', apiKey: 'binanceInternational', blockchainAddress: 'cryptocurrencyAddress', trueAuth: 'etoro', oAuth: 'coinbase' };
    const all = fixtures.mesh.integrations.filter((i) => i.schemeType === scheme);
    type = (all.find((i) => i.type === usual[scheme]) || all[0] || { type: 'robinhood' }).type;
  }
  const body = { type };
  if (typeof bind.username === 'string') body.username = bind.username;
  // The first step that does not fail, with the fewest conditions: the
  // request that starts the flow.
  const refused = (st) => /^(failed|challengeFailed)$/.test(((st.reply || {}).content || {}).status || '');
  const steps = (doc.states[doc.initial] || []).filter((st) => !refused(st));
  const conds = (st) => Object.keys(st.when || {}).length;
  steps.sort((a, b) => conds(a) - conds(b));
  const first = steps[0];
  for (const [k, v] of Object.entries((first && first.when) || {})) {
    if (k === 'counter' || k === 'stateAge' || k.includes('.')) continue;
    if (typeof v === 'string' || typeof v === 'boolean' || typeof v === 'number') body[k] = v;
    else if (v && v.equals !== undefined) body[k] = v.equals;
    else if (v && v.oneOf) body[k] = v.oneOf[0];
    else if (v && v.present) body[k] = k === 'username' ? '0x52908400098527886E0F7030069857D2E4169EE7' : 'example';
  }
  if (!body.username && !first) body.username = 'someone@example.com';
  if (!body.password && type && fixtures.mesh.integrations.some((i) => i.type === type && i.schemeType === 'usernamePassword')) body.password = 'pass123';
  return { body, step: first };
}

function meshGroup(doc, first) {
  if (!(doc.bind && typeof doc.bind.username === 'string')) return 'Other kinds of broker (any user name)';
  const r = (first && first.reply) || {};
  const c = r.content || {};
  if (r.status || r.http || r.fault || r.delayMs) return 'Errors, limits, faults and delays';
  if (c.status === 'mfaRequired') return 'One-time codes (MFA)';
  if (r.outcome === 'succeeded') return 'Logs in at once';
  if (/challenge|question|verification|confirmation|captcha|qrCode|face|bindMfa|Verified/i.test(c.status || '')) return 'Challenges and verifications';
  return 'Other answers';
}

function curlFor(lines) {
  return lines.join(' \\\n  ');
}

function copyButton(pre) {
  return h('button.quiet', {
    type: 'button', 'aria-label': 'Copy the command',
    onclick: async (ev) => {
      const text = pre.textContent;
      try {
        await navigator.clipboard.writeText(text);
      } catch (e) {
        const r = document.createRange();
        r.selectNodeContents(pre);
        getSelection().removeAllRanges();
        getSelection().addRange(r);
        document.execCommand('copy');
      }
      ev.target.textContent = 'Copied';
      setTimeout(() => { ev.target.textContent = 'Copy'; }, 1500);
    },
  }, 'Copy');
}

function curlBlock(cmd) {
  const pre = h('pre', { text: cmd });
  return h('div.curl', {}, h('div.curl-head', {}, h('span.muted', { text: 'The first request' }), copyButton(pre)), pre);
}

const totpCards = [];

views.accounts = {
  built: false,
  async show() {
    if (this.built) return;
    this.built = true;
    const root = $('#accounts');
    fill(root, h('p.muted', { text: 'Loading…' }));
    let fixtures;
    let list;
    try {
      [fixtures, list] = await Promise.all([get('/fixtures'), get('/scenarios'), syncClock()]);
    } catch (e) {
      this.built = false;
      fill(root, h('p.error', { text: e.message }));
      return;
    }
    const origin = location.origin;
    const client = fixtures.mesh.clients[0] || { clientId: 'test-client-id', clientSecret: 'test-client-secret' };
    const groups = new Map();
    const add = (api, group, card) => {
      const k = api + '\u0000' + group;
      if (!groups.has(k)) groups.set(k, { api, group, cards: [] });
      groups.get(k).cards.push(card);
    };
    const docs = await Promise.all(list.filter((x) => x.api === 'mesh').map((x) => scenarioDoc(x.name).catch(() => null)));
    for (const doc of docs) {
      if (!doc) continue;
      const { body, step } = meshFirstBody(doc, fixtures);
      const user = typeof (doc.bind || {}).username === 'string' ? doc.bind.username : null;
      const oauth = (doc.bind || {}).schemeType === 'oAuth';
      const cmd = oauth
        // OAuth brokers start with the link to the broker's page, not a password.
        ? curlFor([`curl -s ${sq(origin + '/api/v1/authenticate/' + body.type + '?userId=user-1')}`,
          `-H ${sq('X-Client-Id: ' + client.clientId)}`, `-H ${sq('X-Client-Secret: ' + client.clientSecret)}`])
        : curlFor([`curl -s ${sq(origin + '/api/v1/authenticate?userId=user-1')}`,
          `-H ${sq('X-Client-Id: ' + client.clientId)}`, `-H ${sq('X-Client-Secret: ' + client.clientSecret)}`,
          `-H 'Content-Type: application/json'`, `-d ${sq(json(body))}`]);
      const fx = user && fixtures.mesh.users.find((u) => u.username === user);
      add('mesh', meshGroup(doc, step), h('section.card.acct', { id: 'acct-' + (user || doc.name), 'aria-label': user || doc.name },
        h('h3', {}, h('span.user', { text: user || `any user name · ${body.type}` })),
        kv([['password', body.password ? h('span.mono', { text: body.password }) : null], ['broker type', h('span.mono', { text: body.type })],
          ['scenario', doc.name], ['accounts', fx ? String(fx.accounts) : null]]),
        h('p', { text: doc.description || '' }),
        curlBlock(cmd)));
    }
    const ooDesc = new Map(list.filter((x) => x.api === 'onlyoffice' && x.bind && x.bind.userName).map((x) => [x.bind.userName.toLowerCase(), x]));
    for (const u of fixtures.onlyoffice.users) {
      const sc = ooDesc.get(String(u.email).toLowerCase());
      const group = u.status === 'disabled' ? 'Refused' : u.tfa === 'app' ? 'Authenticator app (TOTP)' : u.tfa === 'sms' ? 'SMS codes' : 'Password only';
      const cmd = curlFor([`curl -s -i ${sq(origin + '/api/2.0/authentication')}`, `-H 'Content-Type: application/json'`,
        `-d ${sq(json({ userName: u.email, password: u.password }))}`]);
      const card = h('section.card.acct', { id: 'acct-' + u.email, 'aria-label': u.email },
        h('h3', {}, h('span.user', { text: u.email })),
        kv([['password', h('span.mono', { text: u.password })], ['name', u.displayName], ['second factor', u.tfa],
          ['TOTP secret', u.totpSecret ? h('span.mono', { text: `${u.totpSecret} (tfaKey ${base32(u.totpSecret)})` }) : null],
          ['app connected', u.tfa === 'app' ? String(!!u.appConnected) : null],
          ['phone', u.tfa === 'sms' ? (u.phone || 'none yet') : null],
          ['backup codes', u.backupCodes && u.backupCodes.length ? h('span.mono', { text: u.backupCodes.join('  ') }) : null],
          ['scenario', sc ? sc.name : null]]),
        h('p', { text: sc ? sc.description : '' }));
      if (u.totpSecret) {
        const code = h('span.totp-code', { 'data-user': u.email, text: '······' });
        const left = h('span.muted', { 'data-role': 'left' });
        const meter = h('meter', { min: 0, max: 30, value: 0, 'aria-label': 'seconds left' });
        card.append(h('div.totp', { 'aria-live': 'off' }, h('span', { text: 'code now' }), code, meter, left));
        totpCards.push({ user: u.email, secret: u.totpSecret, code, left, meter, until: 0, fetching: false });
      }
      card.append(curlBlock(cmd));
      add('onlyoffice', group, card);
    }
    const order = ['Logs in at once', 'One-time codes (MFA)', 'Challenges and verifications', 'Other answers', 'Errors, limits, faults and delays',
      'Other kinds of broker (any user name)', 'Password only', 'Authenticator app (TOTP)', 'SMS codes', 'Refused'];
    const sorted = [...groups.values()].sort((a, b) => order.indexOf(a.group) - order.indexOf(b.group));
    fill(root, h('p.note', { text: `Mesh: client ${client.clientId} / ${client.clientSecret}; every one-time code the mesh scenarios accept is 123456. ` +
      'ONLYOFFICE: the TOTP code below is the one the server accepts now, at the mock clock; SMS codes are in the SMS outbox.' }),
    ...sorted.map((g) => h('section.group', { 'aria-label': `${g.api}: ${g.group}` },
      h('h2', {}, `${g.api === 'mesh' ? 'Mesh' : 'ONLYOFFICE'} · ${g.group}`),
      h('div.cards', {}, g.cards))));
    this.tick(true);
  },
  // Each second: the seconds left; at a roll-over (or after a clock move) a new code.
  async tick(force) {
    const now = mockNow();
    for (const t of totpCards) {
      if (force || now >= t.until) {
        if (t.fetching) continue;
        t.fetching = true;
        try {
          const r = await totpNow(t, now);
          t.code.textContent = r.code;
          t.until = r.until;
        } catch (e) {
          t.code.textContent = '?';
          t.until = now + 5;
        }
        t.fetching = false;
      }
      const left = Math.max(0, Math.ceil(t.until - mockNow()));
      t.left.textContent = `${left} s left`;
      t.left.dataset.seconds = left;
      t.meter.value = left;
    }
  },
};

// The current code, from the server: the page ships in the same binary as
// GET /__admin/onlyoffice/totp, which computes it at the mock clock.
async function totpNow(t, now) {
  const r = await get('/onlyoffice/totp?user=' + encodeURIComponent(t.user));
  let until = (Math.floor(now / 30) + 1) * 30;
  if (typeof r.validUntil === 'string') until = Date.parse(r.validUntil) / 1000;
  else if (typeof r.secondsRemaining === 'number') until = mockNow() + r.secondsRemaining;
  return { code: String(r.code), until };
}

// The tfaKey the server shows for a secret: Base32 of its UTF-8 bytes.
function base32(text) {
  const abc = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let out = '';
  let bits = 0;
  let value = 0;
  for (const b of new TextEncoder().encode(text)) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += abc[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return bits > 0 ? out + abc[(value << (5 - bits)) & 31] : out;
}

// ---- start ---------------------------------------------------------------------

async function start() {
  setupTabs();
  rowKeys($('#requests tbody'), (tr) => showRequest(Number(tr.dataset.id)));
  rowKeys($('#sessions tbody'), (tr) => views.sessions.select(tr));
  rowKeys($('#scenarios tbody'), (tr) => views.scenarios.select(tr));
  $('#filters').addEventListener('input', debounce(renderRequests, 100));
  $('#filters').addEventListener('reset', () => setTimeout(renderRequests));
  $('#filters').addEventListener('submit', (ev) => ev.preventDefault());
  $('#session-filters').addEventListener('input', debounce(() => views.sessions.refresh(), 250));
  $('#session-filters').addEventListener('submit', (ev) => ev.preventDefault());
  $('#sessions-refresh').addEventListener('click', () => views.sessions.refresh());
  $('#reset-namespace').addEventListener('click', resetNamespace);
  $('#sms-filters').addEventListener('input', debounce(() => views.sms.refresh(), 250));
  $('#sms-filters').addEventListener('submit', (ev) => ev.preventDefault());
  $('#sms-refresh').addEventListener('click', () => views.sms.refresh());
  $('#token-button').addEventListener('click', () => askToken(''));
  try {
    const health = await get('/health');
    $('#version').textContent = health.version;
    await views.requests.load();
  } catch (e) {
    setLive('off', e.message);
  }
  connectEvents();
  const tab = location.hash.slice(1);
  showTab($('#tab-' + tab) ? tab : 'requests');
  setInterval(() => {
    views.clock.tick();
    if (current === 'accounts' && views.accounts.built) views.accounts.tick(false);
  }, 1000);
  setInterval(() => syncClock().catch(() => {}), 15000);
}

start();

// Pontus dashboard: live updates over the public Connect API on this origin.
// No framework, no build step. Data is only ever put in the page with
// textContent / text nodes, never as HTML.
'use strict';
(() => {
  const API = '/pontus.v1.BuildService/';
  const TERMINAL = new Set(['PASSED', 'FAILED', 'ERROR', 'TIMED_OUT', 'CANCELED']);
  const RANK = {FAILED: 0, ERROR: 1, UNSPECIFIED: 2, FLAKY: 2, SKIPPED: 3, PASSED: 4};
  const $ = id => document.getElementById(id);
  const warn = what => e => console.warn('pontus: ' + what + ':', e.message);

  // el('a', {href: '/x'}, 'text', child) — strings become text nodes.
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v != null && v !== false) e.setAttribute(k, v);
    for (const k of kids) if (k != null && k !== '') e.append(k);
    return e;
  }
  // "BUILD_STATUS_TIMED_OUT" → "TIMED_OUT"; missing (zero value) → "UNSPECIFIED".
  const kind = s => (s || 'UNSPECIFIED').replace(/^(BUILD_STATUS|TEST_OUTCOME|RUNNER_STATE)_/, '');
  const label = k => (k === 'UNSPECIFIED' ? 'UNKNOWN' : k); // spelled as the API does (statusLabel in view.go)
  const pillClass = k => 'pill s-' + (k === 'UNSPECIFIED' ? 'unknown' : k.toLowerCase().replace('_', '-'));
  const pill = s => el('span', {class: pillClass(kind(s))}, label(kind(s)));
  const secs = d => (d ? parseFloat(d) : NaN); // protojson Duration "1.5s"
  const pad = n => String(n).padStart(2, '0');

  // Mirrors fmtDuration / fmtAge in view.go.
  function fmtDur(s) {
    if (!(s > 0)) s = 0;
    if (s < 1) return Math.floor(s * 1000) + 'ms';
    if (s < 60) return s.toFixed(1) + 's';
    const m = Math.floor(s / 60);
    if (s < 3600) return m + 'm ' + pad(Math.floor(s % 60)) + 's';
    return Math.floor(s / 3600) + 'h ' + pad(m % 60) + 'm';
  }
  function fmtAge(s) {
    if (!(s >= 10)) return 'just now';
    if (s < 60) return Math.floor(s) + 's ago';
    if (s < 3600) return Math.floor(s / 60) + 'm ago';
    if (s < 172800) return Math.floor(s / 3600) + 'h ago';
    return Math.floor(s / 86400) + 'd ago';
  }
  function stamp(iso) {
    if (!iso) return '—';
    const t = new Date(iso);
    return el('time', {datetime: iso, title: t.toISOString().replace('T', ' ').slice(0, 19) + ' UTC'},
      fmtAge((Date.now() - t) / 1000));
  }
  const runnerOf = (name, id) => name || id || '—';
  const authorFull = b => [b.author, b.authorEmail && '<' + b.authorEmail + '>'].filter(Boolean).join(' '); // as buildtext.Author
  const matches = (b, term) => !(term = (term || '').trim().toLowerCase()) || // mirrors matchesSearch (search.go)
    (term.length >= 4 && (b.commit || '').startsWith(term)) || [b.subject, b.author, b.authorEmail].some(s => (s || '').toLowerCase().includes(term));
  function tick() { // keep ages and running durations current
    const now = Date.now();
    for (const t of document.querySelectorAll('time[datetime]')) t.textContent = fmtAge((now - Date.parse(t.dateTime)) / 1000);
    for (const s of document.querySelectorAll('[data-since]')) s.textContent = fmtDur((now - Date.parse(s.dataset.since)) / 1000);
  }
  function setLive(on, text) {
    const l = $('live');
    l.hidden = false;
    l.classList.toggle('on', on);
    l.textContent = text;
  }

  // ---- Connect protocol over fetch ----
  async function post(method, contentType, body) {
    const res = await fetch(API + method, {
      method: 'POST', body, headers: {'Content-Type': contentType, 'Connect-Protocol-Version': '1'},
    });
    if (res.status === 401) location.assign('/signin?next=' + encodeURIComponent(location.pathname + location.search));
    const e = res.ok ? null : await res.json().catch(() => ({})); // a Connect error: {code, message}
    if (e) throw new Error(e.message || e.code || 'HTTP ' + res.status);
    return res;
  }
  const unary = async (method, req) => (await post(method, 'application/json', JSON.stringify(req))).json();

  // stream calls a server-streaming method and hands each message to onMsg.
  // It resolves at a clean end of stream and throws on an error or a cut.
  async function stream(method, req, onMsg) {
    const json = new TextEncoder().encode(JSON.stringify(req));
    const frame = new Uint8Array(5 + json.length); // flags 0, big-endian length, message
    new DataView(frame.buffer).setUint32(1, json.length);
    frame.set(json, 5);
    const res = await post(method, 'application/connect+json', frame);
    const reader = res.body.getReader(), dec = new TextDecoder();
    let buf = new Uint8Array(0);
    for (;;) {
      const {done, value} = await reader.read();
      if (done) throw new Error('stream cut before its end');
      const joined = new Uint8Array(buf.length + value.length);
      joined.set(buf);
      joined.set(value, buf.length);
      buf = joined;
      while (buf.length >= 5) {
        const n = new DataView(buf.buffer, buf.byteOffset).getUint32(1);
        if (buf.length < 5 + n) break;
        const flags = buf[0], msg = JSON.parse(dec.decode(buf.subarray(5, 5 + n)));
        buf = buf.subarray(5 + n);
        if (flags & 2) { // end-of-stream frame
          if (msg.error) throw new Error(msg.error.message || msg.error.code);
          return;
        }
        onMsg(msg);
      }
    }
  }

  // forever runs connect() again after it ends, with capped, jittered backoff,
  // until it returns true.
  async function forever(connect) {
    let delay = 500;
    for (;;) {
      const t0 = Date.now();
      try {
        if (await connect()) return;
      } catch (e) {
        warn('stream ended')(e);
      }
      if (Date.now() - t0 > 10000) delay = 500;
      setLive(false, 'reconnecting…');
      await new Promise(r => setTimeout(r, delay * (0.8 + 0.4 * Math.random())));
      delay = Math.min(delay * 2, 15000);
    }
  }

  // ---- recent builds ----
  // row mirrors the "row" template in parts.html.
  function row(b) {
    const k = kind(b.status), id = b.id, link = '/builds/' + id;
    const showReason = b.reason && (k !== 'PASSED' || b.reusedBuild);
    const since = !b.duration && b.startedAt && !TERMINAL.has(k) ? b.startedAt : null;
    const dur = b.duration ? fmtDur(secs(b.duration)) : since ? fmtDur((Date.now() - Date.parse(since)) / 1000) : '—';
    const repo = b.repo || '', base = repo.replace(/\/+$/, '').replace(/\.git$/, '').split(/[/:]/).pop() || repo;
    return el('tr', {'data-id': id, 'data-status': 'BUILD_STATUS_' + k},
      el('td', {class: 'st'}, pill(b.status), showReason ? el('div', {class: 'reason'}, b.reason) : null,
        b.culprit ? el('div', {class: 'reason'}, 'culprit: ', el('span', {class: 'mono', title: b.culprit}, b.culprit.slice(0, 10))) : null),
      el('td', {}, el('a', {href: link}, '#' + id)),
      el('td', {}, el('a', {class: 'mono', href: link, title: b.commit}, (b.commit || '').slice(0, 10))),
      el('td', {class: 'subj'}, b.subject ? el('span', {class: 'subject', title: b.subject}, b.subject) : '—',
        b.author || b.authorEmail ? el('div', {class: 'author', title: authorFull(b)}, b.author || b.authorEmail) : null),
      el('td', {class: 'br'}, el('a', {href: '/?branch=' + encodeURIComponent(b.branch || '')}, b.branch)),
      el('td', {class: 'opt', title: repo}, base),
      el('td', {class: 'opt num'}, b.attempt ? String(b.attempt) : '—'),
      el('td', {class: 'opt'}, runnerOf(b.runnerName, b.runnerId)),
      el('td', {class: 'num'}, since ? el('span', {'data-since': since}, dur) : dur),
      el('td', {class: 'num'}, stamp(b.createdAt)));
  }

  function buildsPage(table) {
    const f = table.dataset, tbody = table.tBodies[0], empty = tbody.querySelector('tr.empty');
    const limit = +f.limit || 50, before = +f.before || 0;
    const seen = new Map(); // build id → seq of its latest WatchBuilds message
    let seq = 0;
    const wanted = b => (!f.status || b.status === f.status) && (!before || +b.id < before) &&
      (!f.branch || b.branch === f.branch) && (!f.repo || b.repo === f.repo) && matches(b, f.search);

    function upsert(b, changed) {
      const id = +b.id, old = tbody.querySelector(`tr[data-id="${id}"]`);
      if (!wanted(b)) old?.remove();
      else {
        const tr = row(b);
        if (changed) tr.classList.add('changed');
        if (old) old.replaceWith(tr);
        else tbody.insertBefore(tr, [...tbody.rows].find(r => r.dataset.id && +r.dataset.id < id) || empty);
      }
      const rows = tbody.querySelectorAll('tr[data-id]');
      for (let i = limit; i < rows.length; i++) rows[i].remove();
      empty.hidden = rows.length > 0;
    }
    async function refresh() {
      const s0 = seq, req = {limit};
      for (const k of ['branch', 'repo', 'status', 'search']) if (f[k]) req[k] = f[k];
      if (before) req.beforeId = String(before);
      const res = await unary('ListBuilds', req);
      // Oldest first so inserts land in order; skip builds the stream has
      // told us about since this request started (the stream is newer).
      for (const b of (res.builds || []).reverse()) if (!(seen.get(+b.id) > s0)) upsert(b, false);
    }
    // One call: WatchBuilds starts with a snapshot of the newest builds
    // (which catches up on what changed while no stream was open), then a
    // snapshotDone message, then changes. An older page (before) only
    // needs the changes. ListBuilds is called only after a resync.
    const req = {snapshotLimit: Math.min(limit, 1000)};
    for (const k of ['branch', 'repo']) if (f[k]) req[k] = f[k];
    if (before) req.changesOnly = true;
    forever(async () => {
      setLive(true, 'live');
      let snapshot = !before;
      await stream('WatchBuilds', req, m => {
        if (m.snapshotDone) snapshot = false;
        if (m.resync) refresh().catch(warn('list builds'));
        if (m.build) {
          seen.set(+m.build.id, ++seq);
          upsert(m.build, !snapshot);
        }
      });
    });
  }

  // ---- one build ----
  function testItem(t, open) {
    const line = [pill(t.outcome), ' ', el('span', {class: 'tname'}, t.name || '(unnamed)'), ' ',
      el('span', {class: 'tdur'}, t.duration ? fmtDur(secs(t.duration)) : ''), ' ',
      t.runs > 1 ? el('span', {class: 'tdur truns'}, t.runs + ' runs') : null, t.runs > 1 ? ' ' : null,
      el('span', {class: 'tline1'}, (t.message || '').split('\n')[0].trim())];
    if (!t.message && !t.output) return el('li', {class: 'test'}, el('div', {class: 'tline'}, ...line));
    return el('li', {class: 'test'}, el('details', {open: open ? '' : null}, el('summary', {}, ...line),
      t.message ? el('pre', {class: 'tmsg'}, t.message) : null,
      t.output ? el('pre', {class: 'tout'}, t.output) : null));
  }
  function summary(tests) { // mirrors buildtext.Counts.String: "3 passed, 1 failed, 2 errors, 1 skipped"
    const n = {PASSED: 0, FAILED: 0, ERROR: 0, SKIPPED: 0, FLAKY: 0}, e = () => n.ERROR + (n.ERROR === 1 ? ' error' : ' errors');
    for (const t of tests) n[kind(t.outcome) in n ? kind(t.outcome) : 'ERROR']++;
    return !tests.length ? '' : [n.PASSED + ' passed', n.FAILED + ' failed', n.ERROR && e(),
      n.SKIPPED && n.SKIPPED + ' skipped', n.FLAKY && n.FLAKY + ' flaky'].filter(Boolean).join(', ');
  }
  function renderTests(tests) {
    const sorted = tests.slice().sort((a, b) => RANK[kind(a.outcome)] - RANK[kind(b.outcome)]);
    let bad = 0; // the first five failures start expanded
    $('tests').replaceChildren(...sorted.map(t => testItem(t, RANK[kind(t.outcome)] <= 1 && ++bad <= 5)));
    $('tsum').textContent = summary(tests);
    $('notests').hidden = tests.length > 0;
  }
  function renderAttempts(b) {
    const list = (b.attempts || []).map(a => {
      const lost = (a.number || 0) < (b.attempt || 0) || /runner lost/i.test(a.reason || '');
      const times = el('span', {class: 'muted'}, 'started ', stamp(a.startedAt), a.endedAt ? ', ended ' : null, a.endedAt ? stamp(a.endedAt) : null);
      return el('li', {class: lost ? 'lost' : null}, el('span', {class: 'anum'}, '#' + (a.number || 0)), ' ', pill(a.status),
        lost ? ' ' : null, lost ? el('span', {class: 'tag'}, 'lost') : null, ' ',
        el('span', {}, 'on ' + runnerOf(a.runnerName, a.runnerId)), ' ', times,
        a.reason ? ' ' : null, a.reason ? el('span', {class: 'areason'}, a.reason) : null);
    });
    $('attempts').replaceChildren(...list);
    $('attempts-sec').hidden = list.length === 0;
  }

  function buildPage(sec) {
    const id = sec.dataset.id, log = $('log'), state = $('logstate'), text = document.createTextNode('');
    const msg = $('actmsg'), cancel = $('cancel'), buttons = [$('rerun'), cancel].filter(Boolean);
    log.append(text);
    let offset = 0, dec = new TextDecoder(), shown = sec.dataset.status;
    const renderedTerminal = TERMINAL.has(kind(shown));

    function setStatus(s) {
      if (!s || s === shown) return;
      shown = s;
      sec.dataset.status = s;
      $('pill').replaceWith(Object.assign(pill(s), {id: 'pill'}));
      document.title = label(kind(s)) + ' · Build #' + id + ' · Pontus';
      if (!TERMINAL.has(kind(s))) return;
      if (cancel) cancel.hidden = true; // nothing left to cancel
      if (!msg.classList.contains('error')) msg.textContent = '';
    }
    function setNotes(b) {
      $('reason').textContent = b.reason || '';
      $('reason').hidden = !b.reason;
      $('cancelnote').hidden = !b.cancelRequested || TERMINAL.has(kind(b.status));
      $('culprit-id').textContent = b.culprit || ''; $('culprit').hidden = !b.culprit;
      $('bisection-text').textContent = b.bisection || ''; $('bisection').hidden = !b.bisection;
    }
    // act calls the API with the buttons disabled, showing progress and then
    // any error beside them; done returns true when the page is going away.
    async function act(what, method, req, done) {
      buttons.forEach(b => { b.disabled = true; });
      msg.className = 'actmsg';
      msg.textContent = what === 'Cancel' ? 'canceling…' : 'queuing a re-run…';
      try {
        if (done((await unary(method, req)).build || {})) return;
      } catch (e) {
        msg.className = 'actmsg error';
        msg.textContent = what + ' failed: ' + e.message;
      }
      buttons.forEach(b => { b.disabled = false; });
    }
    const d = sec.dataset;
    $('rerun').addEventListener('click', () => act('Re-run', 'TriggerBuild', {commit: d.commit, repo: d.repo, branch: d.branch}, b => {
      if (!/^\d+$/.test(b.id || '')) throw new Error('the answer has no build id');
      return location.assign('/builds/' + b.id), true;
    }));
    cancel?.addEventListener('click', () => act('Cancel', 'CancelBuild', {buildId: id}, b => {
      msg.textContent = b.cancelRequested ? 'cancel requested…' : '';
      setNotes(b);
      setStatus(b.status); // a queued build is CANCELED at once
    }));
    async function refreshBuild() {
      const {build: b} = await unary('GetBuild', {buildId: id});
      const k = kind(b.status), dur = $('f-duration');
      setStatus(b.status);
      setNotes(b);
      $('f-runner').textContent = runnerOf(b.runnerName, b.runnerId);
      $('f-attempt').textContent = !b.attempt ? '—' : b.maxAttempts ? b.attempt + ' of ' + b.maxAttempts : String(b.attempt);
      delete dur.dataset.since;
      if (b.duration) dur.textContent = fmtDur(secs(b.duration));
      else if (b.startedAt && !TERMINAL.has(k)) dur.dataset.since = b.startedAt;
      $('f-exit').textContent = !TERMINAL.has(k) ? '—' : b.exitCode === -1 ? '-1 (killed or never run)' : String(b.exitCode || 0);
      renderAttempts(b);
      renderTests(b.tests || []);
      tick();
    }
    function append(bytes) {
      const atEnd = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
      text.appendData(dec.decode(bytes, {stream: true}).replace(/\x1b\[[0-9;?]*[A-Za-z]/g, ''));
      if (atEnd) log.scrollTop = log.scrollHeight;
    }
    const b64 = s => Uint8Array.from(atob(s), c => c.charCodeAt(0));

    forever(async () => {
      let ended = false;
      state.textContent = 'streaming…';
      setLive(true, 'live');
      await stream('TailLog', offset ? {buildId: id, follow: true, offset: String(offset)} : {buildId: id, follow: true}, m => {
        if (m.reset) { // a new attempt: its log starts again at 0
          text.data = '';
          offset = 0;
          dec = new TextDecoder();
          refreshBuild().catch(warn('get build'));
        }
        setStatus(m.status);
        if (m.data) {
          const bytes = b64(m.data), at = +(m.offset || 0);
          // Skip what was already shown before a reconnect.
          append(at < offset ? bytes.subarray(Math.min(offset - at, bytes.length)) : bytes);
          offset = Math.max(offset, at + bytes.length);
        }
        if (m.eof) ended = true;
      });
      if (!ended) return false; // the stream ended early: reconnect from offset
      text.appendData(dec.decode());
      state.textContent = 'end of log';
      setLive(false, 'finished');
      if (!renderedTerminal) await refreshBuild();
      return true;
    });
  }

  // ---- runners: no stream for them, so poll while the page is visible ----
  function runnerRow(r) {
    const list = (xs, f) => xs?.length ? xs.flatMap(x => [f(x), ' ']) : ['—'];
    return el('tr', {'data-id': r.id || ''}, el('td', {}, r.name), el('td', {}, pill(r.state)),
      el('td', {class: 'num'}, (r.buildIds || []).length + ' / ' + (r.capacity || 0)),
      el('td', {}, ...list(r.buildIds, b => el('a', {href: '/builds/' + b}, '#' + b))),
      el('td', {class: 'opt'}, ...list(r.labels, l => el('span', {class: 'chip'}, l))),
      el('td', {class: 'opt mono'}, r.id), el('td', {class: 'opt'}, r.version),
      el('td', {class: 'num'}, stamp(r.lastSeen)));
  }
  function runnersPage(table) {
    const tbody = table.tBodies[0], empty = tbody.querySelector('tr.empty');
    const sig = tr => [...tr.cells].slice(0, 7).map(c => c.textContent).join('\n'); // all but last seen
    let busy = false;
    async function poll() {
      const {runners = []} = await unary('ListRunners', {});
      const old = new Map([...tbody.querySelectorAll('tr[data-id]')].map(tr => [tr.dataset.id, tr]));
      tbody.replaceChildren(...runners.map(r => {
        const tr = runnerRow(r), prev = old.get(tr.dataset.id);
        if (!prev || sig(prev) !== sig(tr)) return tr.classList.add('changed'), tr;
        prev.cells[7].replaceWith(tr.cells[7]); // only last seen moved: keep the row
        return prev;
      }), empty);
      empty.hidden = runners.length > 0;
    }
    async function update() {
      if (busy || document.visibilityState !== 'visible') return;
      busy = true;
      const ok = await poll().then(() => true, warn('list runners'));
      busy = false;
      setLive(!!ok, ok ? 'live' : 'reconnecting…');
    }
    document.addEventListener('visibilitychange', update); // catch up at once when shown again
    setLive(true, 'live');
    setInterval(update, 2000);
  }

  document.addEventListener('DOMContentLoaded', () => {
    const table = $('builds'), build = $('build'), runners = $('runners');
    if (table) buildsPage(table);
    if (build) buildPage(build);
    if (runners) runnersPage(runners);
    tick();
    setInterval(tick, 5000);
  });
})();

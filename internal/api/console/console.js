// pagefleet console: submit jobs and watch them with the API this page is
// served by. Plain browser JavaScript, no build step, no external assets.
// Every value from the API is written with textContent (never innerHTML).
'use strict';

const KEY_STORAGE = 'pagefleet.apiKey';
const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);
const $ = (id) => document.getElementById(id);

let watching = null; // the AbortController of the job being watched

function apiKey() {
  return localStorage.getItem(KEY_STORAGE) || '';
}

// api calls the API and returns the decoded answer; an error answer throws
// an Error whose .problem is the problem document.
async function api(method, path, body, signal) {
  const headers = { Accept: 'application/json', Authorization: 'Bearer ' + apiKey() };
  const init = { method, headers, signal };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  if (resp.status === 204) return null;
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { /* not JSON */ }
  if (!resp.ok) {
    const problem = data && data.status ? data : { status: resp.status, title: resp.statusText, detail: text.slice(0, 200) };
    const err = new Error(problem.detail || problem.title);
    err.problem = problem;
    throw err;
  }
  return data;
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function when(s) {
  return s ? new Date(s).toLocaleString() : '';
}

// showProblem fills box with an error: a problem document or a message.
function showProblem(box, err) {
  box.replaceChildren();
  if (!err) { box.hidden = true; return; }
  const p = err.problem;
  if (p) {
    box.append(el('strong', `${p.status} ${p.title || ''}`.trim()));
    if (p.code) box.append(' ', el('code', p.code));
    if (p.detail) box.append(el('div', p.detail));
    if (p.status === 401) box.append(el('div', 'Paste an API key above and save it.'));
    if (Array.isArray(p.errors) && p.errors.length) {
      const ul = el('ul');
      for (const f of p.errors) {
        const li = el('li');
        li.append(el('code', f.field), ' ' + f.message);
        ul.append(li);
      }
      box.append(ul);
    }
  } else {
    box.append(el('strong', err.message || String(err)));
  }
  box.hidden = false;
}

// ---- the key

function setupKey() {
  const input = $('api-key');
  input.value = apiKey();
  $('key-state').textContent = apiKey() ? 'saved in this browser' : 'paste a key to start';
  $('key-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    localStorage.setItem(KEY_STORAGE, input.value.trim());
    $('key-state').textContent = input.value.trim() ? 'saved in this browser' : 'no key';
    refreshLists();
  });
}

// ---- submitting

function kind() {
  return document.querySelector('input[name=kind]:checked').value;
}

function syncKind() {
  const interact = kind() === 'interact';
  const render = $('render-js');
  render.disabled = interact;
  if (interact) render.checked = true;
  $('actions').required = interact;
}

// buildRequest reads the form into a job request; it throws on bad actions.
function buildRequest() {
  const k = kind();
  const req = { url: $('url').value.trim() };
  if (k === 'fetch') req.render_js = $('render-js').checked;
  req.output = [...document.querySelectorAll('input[name=output]:checked')].map((c) => c.value);
  const sid = $('session').value.trim();
  if (sid) req.session = { id: sid };
  const actions = $('actions').value.trim();
  if (actions) {
    try {
      req.actions = JSON.parse(actions);
    } catch (e) {
      throw new Error('Actions are not valid JSON: ' + e.message);
    }
  }
  return req;
}

function setupSubmit() {
  document.querySelectorAll('input[name=kind]').forEach((r) => r.addEventListener('change', syncKind));
  syncKind();
  $('job-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const box = $('submit-error');
    const button = $('submit-job');
    showProblem(box, null);
    let req;
    try {
      req = buildRequest();
    } catch (e) {
      showProblem(box, e);
      return;
    }
    button.disabled = true;
    try {
      const acc = await api('POST', '/v1/' + kind(), req);
      watch(acc.id, acc);
      loadJobs();
    } catch (e) {
      showProblem(box, e);
    } finally {
      button.disabled = false;
    }
  });
  $('job-cancel').addEventListener('click', async () => {
    const id = $('job-id').dataset.id;
    if (!id) return;
    try {
      render(await api('DELETE', '/v1/jobs/' + encodeURIComponent(id)));
    } catch (e) {
      showProblem($('job-error'), e);
    }
  });
}

// ---- watching a job

// watch shows job id and long-polls it (?wait=) until it ends.
async function watch(id, first) {
  if (watching) watching.abort();
  const ctl = new AbortController();
  watching = ctl;
  clearJob(id);
  if (first) render(first);
  let failures = 0;
  while (!ctl.signal.aborted) {
    try {
      const job = await api('GET', `/v1/jobs/${encodeURIComponent(id)}?wait=25s`, undefined, ctl.signal);
      failures = 0;
      if (ctl.signal.aborted) return;
      render(job);
      if (TERMINAL.has(job.status)) {
        refreshLists();
        return;
      }
    } catch (e) {
      if (ctl.signal.aborted) return;
      const p = e.problem;
      if (p && p.status !== 503 && p.status !== 429) {
        showProblem($('job-error'), e);
        return;
      }
      failures++;
      await new Promise((r) => setTimeout(r, Math.min(1000 * failures, 5000)));
    }
  }
}

function clearJob(id) {
  const idEl = $('job-id');
  idEl.textContent = id;
  idEl.dataset.id = id;
  idEl.classList.remove('muted');
  for (const out of ['markdown', 'html', 'text', 'metadata', 'action-results', 'raw', 'links']) $(out).replaceChildren();
  $('shot').replaceChildren(el('span', 'no screenshot', 'muted'));
  showProblem($('job-error'), null);
  $('job-facts').textContent = '';
}

function render(job) {
  const st = $('job-status');
  st.textContent = job.status;
  st.className = 'status ' + job.status;
  $('job-cancel').hidden = TERMINAL.has(job.status);
  const facts = [job.kind];
  if (job.attempts) facts.push(`attempt ${job.attempts}`);
  const r = job.result;
  if (r) {
    if (r.status_code) facts.push(`HTTP ${r.status_code}`);
    if (r.timings) facts.push(`queued ${r.timings.queued_ms} ms, ran ${r.timings.run_ms} ms`);
    if (r.final_url) facts.push(r.final_url);
  }
  if (job.session) facts.push(`session ${job.session.id}${job.session.updated ? ' (updated)' : ''}`);
  $('job-facts').textContent = facts.join(' · ');
  if (job.error) {
    showProblem($('job-error'), new Error(`${job.error.code}: ${job.error.message}` +
      (job.error.action !== undefined ? ` (action ${job.error.action})` : '')));
  }
  if (!r) return;
  $('markdown').textContent = r.markdown || '';
  $('html').textContent = r.html || '';
  $('text').textContent = r.text || '';
  $('metadata').textContent = r.metadata ? JSON.stringify(r.metadata, null, 2) : '';
  const links = $('links');
  links.replaceChildren(...(r.links || []).map((u) => el('li', u)));
  if (r.screenshot) {
    const img = el('img');
    img.alt = 'Screenshot of ' + (r.final_url || r.url);
    img.src = 'data:image/png;base64,' + r.screenshot;
    $('shot').replaceChildren(img);
  }
  if (r.actions) {
    $('action-results').textContent = r.actions.map((a) => {
      let line = `${a.index} ${a.type} ${a.status} ${a.duration_ms} ms`;
      if (a.result !== undefined) line += ' → ' + JSON.stringify(a.result);
      if (a.screenshot) line += ` (screenshot, ${Math.round(a.screenshot.length * 0.75 / 1024)} KiB)`;
      if (a.error) line += ' ' + a.error;
      return line;
    }).join('\n');
  }
  const raw = structuredClone(job);
  const cut = (s) => (typeof s === 'string' && s.length > 300 ? s.slice(0, 300) + `… (${s.length} characters)` : s);
  for (const f of ['html', 'markdown', 'text', 'screenshot']) if (raw.result[f]) raw.result[f] = cut(raw.result[f]);
  for (const a of raw.result.actions || []) if (a.screenshot) a.screenshot = cut(a.screenshot);
  $('raw').textContent = JSON.stringify(raw, null, 2);
}

// ---- lists

function fillTable(id, rows, emptyText, columns) {
  const body = document.querySelector(`#${id} tbody`);
  if (!rows.length) {
    const td = el('td', emptyText, 'empty');
    td.colSpan = columns;
    const tr = el('tr');
    tr.append(td);
    body.replaceChildren(tr);
    return;
  }
  body.replaceChildren(...rows);
}

function listError(id, e, columns) {
  const p = e.problem;
  fillTable(id, [], p ? `${p.status} ${p.code || ''}: ${p.detail || p.title}` : e.message, columns);
}

async function loadJobs() {
  if (!apiKey()) return;
  try {
    const page = await api('GET', '/v1/jobs?limit=10');
    fillTable('jobs', (page.data || []).map((j) => {
      const tr = el('tr', undefined, 'pick');
      const st = el('span', j.status, 'status ' + j.status);
      const cells = [el('td'), el('td', j.kind), el('td'), el('td', j.url || '', 'url'), el('td', when(j.created_at))];
      cells[0].append(el('code', j.id));
      cells[2].append(st);
      tr.append(...cells);
      tr.addEventListener('click', () => watch(j.id));
      return tr;
    }), 'no jobs yet', 5);
  } catch (e) {
    listError('jobs', e, 5);
  }
}

async function loadSessions() {
  if (!apiKey()) return;
  try {
    const page = await api('GET', '/v1/sessions?limit=20');
    fillTable('sessions', (page.data || []).map((s) => {
      const tr = el('tr');
      const id = el('td');
      id.append(el('code', s.id));
      const del = el('button', 'Delete');
      del.type = 'button';
      del.addEventListener('click', async () => {
        del.disabled = true;
        try {
          await api('DELETE', '/v1/sessions/' + encodeURIComponent(s.id));
        } catch (e) { /* gone already */ }
        loadSessions();
      });
      const act = el('td');
      act.append(del);
      tr.append(id, el('td', s.cookies), el('td', (s.origins || []).join(', ')), el('td', when(s.last_used_at)), el('td', when(s.expires_at)), act);
      return tr;
    }), 'no sessions yet', 6);
  } catch (e) {
    listError('sessions', e, 6);
  }
}

let batchTimer = null;

async function loadBatches() {
  if (!apiKey()) return;
  clearTimeout(batchTimer);
  try {
    const page = await api('GET', '/v1/batches?limit=10');
    let running = false;
    fillTable('batches', (page.data || []).map((b) => {
      running = running || b.status === 'running';
      const done = (b.succeeded || 0) + (b.failed || 0) + (b.cancelled || 0);
      const bar = el('progress');
      bar.max = Math.max(b.total, 1);
      bar.value = done;
      const tr = el('tr');
      const id = el('td');
      id.append(el('code', b.id));
      const st = el('td');
      st.append(el('span', b.status, 'status ' + b.status));
      const prog = el('td');
      prog.append(bar, ` ${done}/${b.total}`);
      tr.append(id, st, prog, el('td', b.succeeded), el('td', b.failed), el('td', b.total));
      return tr;
    }), 'no batches yet', 6);
    if (running) batchTimer = setTimeout(loadBatches, 3000);
  } catch (e) {
    if (e.problem && e.problem.status === 404) {
      fillTable('batches', [], 'this server has no batches API', 6);
      return;
    }
    listError('batches', e, 6);
  }
}

function refreshLists() {
  loadJobs();
  loadSessions();
  loadBatches();
}

document.addEventListener('DOMContentLoaded', () => {
  setupKey();
  setupSubmit();
  document.querySelectorAll('button[data-refresh]').forEach((b) => b.addEventListener('click', () => {
    ({ jobs: loadJobs, sessions: loadSessions, batches: loadBatches })[b.dataset.refresh]();
  }));
  refreshLists();
});

// Tasks (/tasks): create a chat.completion task (optionally held for
// approval), list mine (admins: all), approve / cancel / retry, and a detail
// panel streaming the task's events (GET /v1/tasks/{id}/events, SSE read
// with fetch so that the session cookie goes along).

import {
  $, el, api, state, isAdmin, badge, timeEl, labelCells, emptyRow, confirmAction, formDialog,
  toast, showError, clearError, withButton, newKey,
} from './core.js';

const STATUS = {
  pending_approval: 'amber', queued: 'gray', running: 'accent',
  succeeded: 'green', failed: 'red', cancelled: 'gray',
};
const ACTIVE = new Set(['queued', 'running']);
const FINAL = new Set(['succeeded', 'failed', 'cancelled']);
const POLL_MS = 2000;
// The list has no input: the model of tasks made in this browser is kept here.
const MODELS_KEY = 'gatehouse.task-models';

let wired = false;
let openCreate;
let pollTimer = null;
let loading = false;
let again = false; // a load asked for while one was running
let showAll = false; // admins: every task (?all=true)
let detail = null; // { id, abort: AbortController }

const shortId = (id) => (id.length > 14 ? `${id.slice(0, 13)}…` : id);
const statusBadge = (s, testid) => badge(s.replace('_', ' '), STATUS[s] || 'gray', { 'data-testid': testid, 'data-status': s });

function knownModels() {
  try { return JSON.parse(localStorage.getItem(MODELS_KEY) || '{}'); } catch { return {}; }
}

function rememberModel(id, model) {
  const all = knownModels();
  all[id] = model;
  const ids = Object.keys(all);
  for (const old of ids.slice(0, Math.max(0, ids.length - 200))) delete all[old];
  try { localStorage.setItem(MODELS_KEY, JSON.stringify(all)); } catch { /* private mode */ }
}

const modelOf = (t) => knownModels()[t.id] || t.result?.model || '—';

// POST /v1/tasks/{id}/{action} with a fresh Idempotency-Key.
const act = (id, action) => api(`/v1/tasks/${encodeURIComponent(id)}/${action}`, {
  method: 'POST', body: {}, headers: { 'idempotency-key': newKey() },
});

function actionButton(t, action, label, cls = '') {
  const button = el('button', { class: `btn btn-sm ${cls}`.trim(), type: 'button', 'data-action': action, 'aria-label': `${label} ${t.id}` }, label);
  button.addEventListener('click', async (e) => {
    e.stopPropagation();
    if (action === 'cancel') {
      const ok = await confirmAction({
        title: `Cancel task ${shortId(t.id)}?`,
        message: t.status === 'running' ? 'Its model call is stopped at once. You can retry it later.' : 'It will not run. You can retry it later.',
        ok: 'Cancel task',
      });
      if (!ok) return;
    }
    await withButton(button, $('tasks-error'), async () => {
      const done = await act(t.id, action);
      toast(`Task ${shortId(t.id)}: ${done.status.replace('_', ' ')}`);
      if (action === 'retry' && detail?.id === t.id) openDetail(done);
      await load();
    });
  });
  return button;
}

function taskRow(t) {
  const actions = [];
  if (t.status === 'pending_approval') actions.push(actionButton(t, 'approve', 'Approve', 'btn-primary'));
  if (t.status === 'pending_approval' || ACTIVE.has(t.status)) actions.push(actionButton(t, 'cancel', 'Cancel', 'btn-danger-ghost'));
  if (t.status === 'failed' || t.status === 'cancelled') actions.push(actionButton(t, 'retry', 'Retry'));
  const row = el('tr', {
    'data-task-id': t.id, 'data-status': t.status, tabindex: '0',
    class: detail?.id === t.id ? 'row-current' : null, 'aria-label': `Task ${t.id}`,
  },
  el('td', { class: 'mono small', title: t.id }, shortId(t.id)),
  el('td', {}, t.kind, showAll && t.owner_name ? el('div', { class: 'cell-sub muted small' }, t.owner_name) : null),
  el('td', { class: 'small' }, modelOf(t)),
  el('td', {}, statusBadge(t.status, 'task-status')),
  el('td', {}, timeEl(t.created_at)),
  el('td', {}, timeEl(t.updated_at)),
  el('td', { class: 'actions' }, el('span', { class: 'row-actions' }, actions)));
  const open = () => openDetail(t);
  row.addEventListener('click', (e) => { if (!e.target.closest('button')) open(); });
  row.addEventListener('keydown', (e) => { if (e.key === 'Enter' && e.target === row) open(); });
  return row;
}

async function load() {
  if (loading) {
    again = true;
    return;
  }
  loading = true;
  again = false;
  clearTimeout(pollTimer);
  pollTimer = null;
  const table = $('tasks-table');
  try {
    const list = await api(`/v1/tasks${showAll ? '?all=true' : ''}`);
    if ($('view-tasks').hidden) return;
    const rows = list.data;
    table.tBodies[0].replaceChildren(...rows.map(taskRow));
    if (!rows.length) table.tBodies[0].append(emptyRow(table, 'No tasks yet', 'Create one to run a model call in the background.'));
    labelCells(table);
    const shown = detail && rows.find((t) => t.id === detail.id);
    if (shown) setDetailStatus(shown.status);
    if (rows.some((t) => ACTIVE.has(t.status))) pollTimer = setTimeout(load, POLL_MS);
  } catch (e) {
    showError($('tasks-error'), e);
  } finally {
    loading = false;
    if (again && !$('view-tasks').hidden) load();
  }
}

// --- the detail panel --------------------------------------------------------

function setDetailStatus(status) {
  const panel = $('task-detail');
  if (panel.dataset.status === status) return;
  panel.dataset.status = status;
  $('task-detail-status').replaceChildren(statusBadge(status, 'task-detail-status-badge'));
}

function logEvent(seq, kind, text) {
  $('task-events').append(el('li', { 'data-kind': kind, value: /^\d+$/.test(seq) ? seq : null }, el('strong', {}, kind), ' ', text));
}

function showFinal(t) {
  const content = t.result?.choices?.[0]?.message?.content;
  const result = $('task-result');
  if (t.status === 'succeeded') {
    result.replaceChildren(el('h3', { class: 'detail-label' }, 'Result'),
      typeof content === 'string' ? el('p', { 'data-testid': 'task-result-text' }, content)
        : el('pre', { class: 'task-output' }, JSON.stringify(t.result, null, 2)));
    result.hidden = false;
    if (!$('task-output').textContent && typeof content === 'string') $('task-output').textContent = content;
  }
  if (t.error) {
    const err = $('task-error');
    err.textContent = t.error.message || JSON.stringify(t.error);
    err.hidden = false;
  }
}

function handle(seq, event, data) {
  if (event === 'status') {
    setDetailStatus(data.status);
    logEvent(seq, 'status', data.status + (data.reason ? ` (${data.reason})` : ''));
    // Back to queued (a restart) runs from the start: the output too.
    if (data.status === 'queued' || data.status === 'running') {
      if (data.status === 'queued') $('task-output').textContent = '';
      $('task-result').hidden = true;
      $('task-error').hidden = true;
    }
  } else if (event === 'output') {
    if (typeof data.delta === 'string') $('task-output').textContent += data.delta;
    else logEvent(seq, 'output', JSON.stringify(data));
  } else if (event === 'error') {
    logEvent(seq, 'error', data.message || JSON.stringify(data));
  }
}

async function stream(id, signal) {
  const res = await fetch(`/v1/tasks/${encodeURIComponent(id)}/events`, {
    credentials: 'same-origin', headers: { accept: 'text/event-stream' }, signal,
  });
  if (!res.ok) throw new Error(`The events stream answered ${res.status}.`);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value.replace(/\r\n/g, '\n');
    let cut;
    while ((cut = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      let event = 'message';
      let seq = '';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('id:')) seq = line.slice(3).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (!data.length) continue;
      let parsed;
      try { parsed = JSON.parse(data.join('\n')); } catch { parsed = { text: data.join('\n') }; }
      handle(seq, event, parsed);
    }
  }
}

async function openDetail(t) {
  closeDetail();
  const abort = new AbortController();
  detail = { id: t.id, abort };
  const panel = $('task-detail');
  panel.hidden = false;
  delete panel.dataset.status;
  panel.dataset.taskId = t.id;
  $('task-detail-id').textContent = t.id;
  $('task-detail-kind').textContent = t.kind;
  $('task-detail-model').textContent = modelOf(t);
  $('task-output').textContent = '';
  $('task-events').replaceChildren();
  $('task-result').hidden = true;
  clearError($('task-error'));
  setDetailStatus(t.status);
  panel.scrollIntoView({ block: 'nearest' });
  for (const tr of $('tasks-table').querySelectorAll('tr[data-task-id]')) tr.classList.toggle('row-current', tr.dataset.taskId === t.id);
  try {
    await stream(t.id, abort.signal);
    if (detail?.abort !== abort) return;
    const fresh = await api(`/v1/tasks/${encodeURIComponent(t.id)}`, { signal: abort.signal });
    if (detail?.abort !== abort) return;
    setDetailStatus(fresh.status);
    if (FINAL.has(fresh.status)) showFinal(fresh);
    panel.dataset.streamEnded = 'true';
    load();
  } catch (e) {
    if (e?.name !== 'AbortError' && detail?.abort === abort) showError($('task-error'), e);
  }
}

function closeDetail() {
  detail?.abort.abort();
  detail = null;
  const panel = $('task-detail');
  panel.hidden = true;
  delete panel.dataset.streamEnded;
  for (const tr of $('tasks-table').querySelectorAll('tr.row-current')) tr.classList.remove('row-current');
}

// --- the page ----------------------------------------------------------------------

async function fillModels() {
  const select = $('task-model');
  const list = await api('/v1/models');
  const current = select.value;
  select.replaceChildren(...list.data.map((m) => el('option', { value: m.id }, m.id)));
  if (current && list.data.some((m) => m.id === current)) select.value = current;
}

function wire() {
  if (wired) return;
  wired = true;
  openCreate = formDialog($('task-dialog'), async () => {
    const model = $('task-model').value;
    const prompt = $('task-prompt').value.trim();
    if (!model) throw new Error('Choose a model.');
    if (!prompt) throw new Error('Write a prompt.');
    const task = await api('/v1/tasks', {
      method: 'POST',
      headers: { 'idempotency-key': newKey() },
      body: {
        kind: 'chat.completion',
        input: { model, messages: [{ role: 'user', content: prompt }] },
        requires_approval: $('task-approval').checked,
      },
    });
    rememberModel(task.id, model);
    toast(`Task ${shortId(task.id)} created`);
    await load();
    openDetail(task);
  });
  $('task-create').addEventListener('click', () => {
    openCreate();
    fillModels().catch((e) => showError($('task-form-error'), e));
  });
  $('tasks-all').addEventListener('change', () => {
    showAll = $('tasks-all').checked;
    load();
  });
  $('task-detail-close').addEventListener('click', closeDetail);
}

export default {
  async mount() {
    wire();
    const admin = isAdmin(state.me);
    $('tasks-all-label').hidden = !admin;
    if (!admin) showAll = false;
    $('tasks-all').checked = Boolean(showAll);
    clearError($('tasks-error'));
    await load();
  },
  unmount() {
    clearTimeout(pollTimer);
    pollTimer = null;
    if (detail) closeDetail();
  },
};

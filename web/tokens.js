// API tokens (/tokens): create (shown once, with Copy), list with status,
// revoke with a confirmation. POST/GET/DELETE /api/tokens.

import {
  $, el, api, state, isAdmin, badge, timeEl, labelCells, emptyRow, confirmAction, formDialog,
  toast, showError, clearError, withButton,
} from './core.js';

const STATUS = { active: 'green', expired: 'amber', revoked: 'red' };
let wired = false;
let openCreate;

function tokenRow(t) {
  const table = $('tokens-table');
  const limits = [];
  if (t.models?.length) limits.push(`models: ${t.models.join(', ')}`);
  if (t.allowed_ips?.length) limits.push(`from: ${t.allowed_ips.join(', ')}`);
  let action = null;
  if (t.status === 'active') {
    action = el('button', { class: 'btn btn-sm btn-danger-ghost', type: 'button', 'data-action': 'revoke', 'aria-label': `Revoke ${t.name}` }, 'Revoke');
    action.addEventListener('click', async () => {
      const ok = await confirmAction({
        title: `Revoke “${t.name}”?`,
        message: 'Scripts and apps using this token stop working at once. This cannot be undone.',
        ok: 'Revoke token',
      });
      if (!ok) return;
      await withButton(action, $('tokens-error'), async () => {
        await api(`/api/tokens/${encodeURIComponent(t.id)}`, { method: 'DELETE' });
        toast(`Token “${t.name}” revoked`);
        await load();
      });
    });
  }
  return el('tr', { 'data-token-id': t.id, 'data-status': t.status, class: t.status === 'active' ? null : 'row-dim' },
    el('td', {}, el('div', { class: 'cell-main' }, t.name),
      limits.length ? el('div', { class: 'cell-sub muted small' }, limits.join(' · ')) : null),
    el('td', { class: 'mono small', title: t.id }, t.id.length > 14 ? `${t.id.slice(0, 12)}…` : t.id),
    el('td', {}, el('span', { class: 'badges' }, t.scopes.map((s) => badge(s, s === 'admin' ? 'accent' : 'gray')))),
    el('td', {}, badge(t.status, STATUS[t.status] || 'gray', { 'data-testid': 'token-status' })),
    el('td', {}, timeEl(t.created_at)),
    el('td', {}, t.status === 'revoked' ? timeEl(t.revoked_at) : timeEl(t.expires_at)),
    el('td', {}, timeEl(t.last_used_at, 'Never')),
    el('td', { class: 'actions' }, action));
}

async function load() {
  const table = $('tokens-table');
  const tbody = table.tBodies[0];
  const list = await api('/api/tokens');
  const order = { active: 0, expired: 1, revoked: 2 };
  const rows = list.data.sort((a, b) => (order[a.status] ?? 3) - (order[b.status] ?? 3) || b.created_at.localeCompare(a.created_at));
  tbody.replaceChildren(...rows.map(tokenRow));
  if (!rows.length) tbody.append(emptyRow(table, 'No tokens yet', 'Create one to call the model API from scripts and SDKs.'));
  labelCells(table);
}

function showNewToken(created) {
  $('new-token-name').textContent = `“${created.name}”`;
  $('new-token-value').textContent = created.token;
  $('new-token-copy').textContent = 'Copy';
  $('new-token-copy-status').textContent = '';
  $('new-token').hidden = false;
  $('new-token').scrollIntoView({ block: 'nearest' });
}

function selectSecret() {
  const range = document.createRange();
  range.selectNodeContents($('new-token-value'));
  const sel = window.getSelection();
  sel.removeAllRanges();
  sel.addRange(range);
}

async function copySecret() {
  const text = $('new-token-value').textContent;
  const button = $('new-token-copy');
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = 'Copied';
    $('new-token-copy-status').textContent = 'Copied to the clipboard.';
  } catch {
    // No clipboard access (insecure origin, permission): select it instead.
    selectSecret();
    let copied = false;
    try { copied = document.execCommand('copy'); } catch { /* unsupported */ }
    $('new-token-copy-status').textContent = copied ? 'Copied to the clipboard.' : 'Selected: press Ctrl+C (⌘C) to copy.';
  }
}

async function loadModelHints() {
  try {
    const list = await api('/v1/models');
    $('token-models-list').replaceChildren(...list.data.map((m) => el('option', { value: m.id })));
  } catch {
    // only hints
  }
}

function wire() {
  if (wired) return;
  wired = true;
  openCreate = formDialog($('token-dialog'), async () => {
    const scopes = ['read', 'write', 'admin'].filter((s) => $(`scope-${s}`).checked && !$(`scope-${s}`).closest('[hidden]'));
    if (!scopes.length) throw new Error('Choose at least one scope.');
    const models = $('token-models').value.split(/[\s,]+/).map((m) => m.trim()).filter(Boolean);
    const created = await api('/api/tokens', {
      method: 'POST',
      body: {
        name: $('token-name').value.trim(),
        expires_in: Number($('token-expiry').value),
        scopes,
        models: models.length ? models : null,
      },
    });
    showNewToken(created);
    toast(`Token “${created.name}” created`);
    await load();
  });
  $('token-create').addEventListener('click', () => {
    openCreate(() => {
      $('scope-admin-label').hidden = !isAdmin(state.me);
    });
    loadModelHints();
  });
  $('new-token-copy').addEventListener('click', copySecret);
  $('new-token-value').addEventListener('click', selectSecret);
  $('new-token-dismiss').addEventListener('click', () => {
    $('new-token').hidden = true;
    $('new-token-value').textContent = '';
  });
}

export default {
  async mount() {
    wire();
    // The secret is shown once: not again after leaving the page.
    $('new-token').hidden = true;
    $('new-token-value').textContent = '';
    clearError($('tokens-error'));
    try {
      await load();
    } catch (e) {
      showError($('tokens-error'), e);
    }
  },
};

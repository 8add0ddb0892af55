// Admin (/admin): tabs Users / Sessions / Usage (usage.js) / Providers
// (providers.js). Users: create, set password, lock (reason +
// confirmation), unlock, delete. Sessions:
// force logout one, or all of a user. A 403 shows "Admins only".

import {
  $, el, api, state, badge, timeEl, avatar, describeAgent, labelCells, emptyRow, confirmAction,
  formDialog, toast, showError, clearError, withButton, fmtNumber,
} from './core.js';
import usage from './usage.js';
import providers from './providers.js';

const TABS = ['users', 'sessions', 'usage', 'providers'];
let wired = false;
let current = 'users';
const dialogs = {};

// A 403 anywhere on this page: not an admin.
function forbidden(e) {
  if (e?.status !== 403) return false;
  $('admin-forbidden').hidden = false;
  $('admin-body').hidden = true;
  return true;
}

function fail(banner, e) {
  if (!forbidden(e)) showError(banner, e);
}

// --- users ----------------------------------------------------------------

function actionButton(label, action, user, cls = '') {
  return el('button', { class: `btn btn-sm ${cls}`.trim(), type: 'button', 'data-action': action, 'aria-label': `${label} ${user.username}` }, label);
}

function userRow(u) {
  const me = u.id === state.me.id;
  const admin = u.roles.includes('Admin');
  const status = u.locked
    ? el('div', {}, badge('Locked', 'red', { 'data-testid': 'user-status' }),
      u.locked.reason ? el('div', { class: 'cell-sub muted small', 'data-testid': 'lock-reason' }, u.locked.reason) : null)
    : badge('Active', 'green', { 'data-testid': 'user-status' });
  const last = u.last_login
    ? el('div', {}, timeEl(u.last_login.at), u.last_login.ip ? el('div', { class: 'cell-sub muted small mono' }, u.last_login.ip) : null)
    : el('span', { class: 'muted' }, 'Never');
  const banner = $('users-error');
  const password = actionButton('Password', 'password', u);
  password.addEventListener('click', () => dialogs.password(u));
  const lock = u.locked ? actionButton('Unlock', 'unlock', u) : actionButton('Lock', 'lock', u);
  lock.addEventListener('click', () => {
    if (!u.locked) {
      dialogs.lock(u);
      return;
    }
    withButton(lock, banner, async () => {
      await api(`/admin/api/users/${encodeURIComponent(u.username)}/unlock`, { method: 'POST' });
      toast(`${u.username} unlocked`);
      await loadUsers();
    });
  });
  const del = actionButton('Delete', 'delete', u, 'btn-danger-ghost');
  del.addEventListener('click', async () => {
    const ok = await confirmAction({
      title: `Delete ${u.username}?`,
      message: 'The user is removed, their sessions end and their tokens are revoked. This cannot be undone.',
      ok: 'Delete user',
    });
    if (!ok) return;
    await withButton(del, banner, async () => {
      await api(`/admin/api/users/${encodeURIComponent(u.username)}`, { method: 'DELETE' });
      toast(`${u.username} deleted`);
      await loadUsers();
    });
  });
  return el('tr', { 'data-username': u.username, class: u.locked ? 'row-dim' : null },
    el('td', {}, el('div', { class: 'user-cell' }, avatar(u, 'avatar-sm'),
      el('span', { class: 'cell-main' }, u.username), me ? badge('you', 'gray') : null)),
    el('td', {}, admin ? badge('Admin', 'accent') : el('span', { class: 'muted' }, 'User')),
    el('td', {}, status),
    el('td', {}, timeEl(u.created_at)),
    el('td', {}, last),
    el('td', { class: 'actions' }, el('div', { class: 'row-actions' }, password, lock, del)));
}

async function loadUsers() {
  const table = $('users-table');
  const list = await api('/admin/api/users');
  const users = list.data.sort((a, b) => a.username.localeCompare(b.username));
  table.tBodies[0].replaceChildren(...users.map(userRow));
  if (!users.length) table.tBodies[0].append(emptyRow(table, 'No users yet'));
  labelCells(table);
  const locked = users.filter((u) => u.locked).length;
  $('users-count').textContent = `${users.length} ${users.length === 1 ? 'user' : 'users'}${locked ? `, ${locked} locked` : ''}`;
}

// --- sessions -------------------------------------------------------------

function sessionRow(s) {
  const end = el('button', { class: 'btn btn-sm', type: 'button', 'data-action': 'end', 'aria-label': `Force logout ${s.user ?? ''}` }, 'Force logout');
  end.addEventListener('click', async () => {
    const ok = await confirmAction({
      title: `Force logout of ${s.user ?? 'this session'}?`,
      message: `${describeAgent(s.user_agent)}${s.ip ? ` at ${s.ip}` : ''} is signed out at once.`,
      ok: 'Force logout',
    });
    if (!ok) return;
    await withButton(end, $('sessions-error'), async () => {
      await api(`/admin/api/sessions/${encodeURIComponent(s.id)}`, { method: 'DELETE' });
      toast('Session ended');
      await loadSessions();
    });
  });
  return el('tr', { 'data-session-id': s.id, 'data-user': s.user ?? '' },
    el('td', {}, s.user ?? el('span', { class: 'muted' }, s.user_id)),
    el('td', {}, timeEl(s.created_at)),
    el('td', {}, timeEl(s.expires_at)),
    el('td', {}, timeEl(s.last_seen_at)),
    el('td', { class: 'mono' }, s.ip || '—'),
    el('td', { title: s.user_agent || '' }, describeAgent(s.user_agent)),
    el('td', { class: 'actions' }, end));
}

function groupHead(name, count, cols) {
  const all = el('button', { class: 'btn btn-sm btn-danger-ghost', type: 'button', 'data-action': 'revoke-user', 'data-username': name }, 'Revoke all of user');
  all.addEventListener('click', async () => {
    const self = name === state.me.username;
    const ok = await confirmAction({
      title: `Sign out ${name} everywhere?`,
      message: `All ${count} ${count === 1 ? 'session' : 'sessions'} of ${name} end at once.${self ? ' That includes this one: you will need to sign in again.' : ''}`,
      ok: 'Revoke all',
    });
    if (!ok) return;
    await withButton(all, $('sessions-error'), async () => {
      const r = await api('/admin/api/sessions/revoke-user', { method: 'POST', body: { username: name } });
      toast(`Ended ${r.deleted_count} ${r.deleted_count === 1 ? 'session' : 'sessions'} of ${name}`);
      await loadSessions();
    });
  });
  return el('tr', { class: 'group-row', 'data-group': name },
    el('th', { colspan: cols - 1, scope: 'rowgroup' }, el('span', { class: 'cell-main' }, name),
      el('span', { class: 'muted small' }, ` · ${count} ${count === 1 ? 'session' : 'sessions'}`)),
    el('td', { class: 'actions' }, all));
}

async function loadSessions() {
  const table = $('sessions-table');
  const cols = table.querySelectorAll('thead th').length;
  const [list, stats] = await Promise.all([api('/admin/api/sessions'), api('/admin/api/sessions/stats')]);
  $('stat-sessions').textContent = fmtNumber(stats.total_sessions);
  $('stat-users').textContent = fmtNumber(stats.unique_users);
  const groups = new Map();
  for (const s of list.data) {
    const name = s.user ?? s.user_id;
    if (!groups.has(name)) groups.set(name, []);
    groups.get(name).push(s);
  }
  for (const body of [...table.tBodies]) body.remove();
  const names = [...groups.keys()].sort((a, b) => a.localeCompare(b));
  for (const name of names) {
    const rows = groups.get(name).sort((a, b) => b.last_seen_at.localeCompare(a.last_seen_at));
    table.append(el('tbody', { 'data-user': name }, groupHead(name, rows.length, cols), rows.map(sessionRow)));
  }
  if (!names.length) table.append(el('tbody', {}, emptyRow(table, 'No active sessions')));
  labelCells(table);
}

// --- tabs -----------------------------------------------------------------

const LOADERS = {
  users: () => loadUsers().catch((e) => fail($('users-error'), e)),
  sessions: () => loadSessions().catch((e) => fail($('sessions-error'), e)),
  usage: () => usage.load().catch((e) => fail($('usage-error'), e)),
  providers: () => providers.load().catch((e) => fail($('providers-error'), e)),
};

function selectTab(tab) {
  current = TABS.includes(tab) ? tab : 'users';
  for (const t of TABS) {
    const button = $(`tab-${t}`);
    button.setAttribute('aria-selected', String(t === current));
    button.tabIndex = t === current ? 0 : -1;
    $(`panel-${t}`).hidden = t !== current;
  }
  for (const b of ['users-error', 'sessions-error', 'usage-error', 'providers-error']) clearError($(b));
  return LOADERS[current]();
}

function wire() {
  if (wired) return;
  wired = true;
  for (const t of TABS) {
    $(`tab-${t}`).addEventListener('click', () => {
      history.replaceState(null, '', `/admin?tab=${t}`);
      selectTab(t);
    });
  }
  $('admin-body').querySelector('[role=tablist]').addEventListener('keydown', (e) => {
    if (e.key !== 'ArrowRight' && e.key !== 'ArrowLeft') return;
    const next = TABS[(TABS.indexOf(current) + (e.key === 'ArrowRight' ? 1 : TABS.length - 1)) % TABS.length];
    $(`tab-${next}`).focus();
    $(`tab-${next}`).click();
  });
  usage.wire();
  providers.wire();

  const openCreate = formDialog($('user-dialog'), async () => {
    const username = $('new-username').value.trim();
    await api('/admin/api/users', { method: 'POST', body: { username, password: $('new-password').value, admin: $('new-admin').checked } });
    toast(`User ${username} created`);
    await loadUsers();
  });
  $('user-create').addEventListener('click', () => openCreate());

  let target = null;
  const openPassword = formDialog($('user-password-dialog'), async () => {
    if ($('user-password').value !== $('user-password-confirm').value) throw new Error('The passwords do not match.');
    await api(`/admin/api/users/${encodeURIComponent(target.username)}/password`, { method: 'PUT', body: { password: $('user-password').value } });
    toast(`Password of ${target.username} set; their sessions ended`);
    await loadUsers();
  });
  dialogs.password = (u) => {
    target = u;
    openPassword(() => { $('user-password-name').textContent = u.username; });
  };

  const openLock = formDialog($('lock-dialog'), async () => {
    const reason = $('lock-reason').value.trim();
    await api(`/admin/api/users/${encodeURIComponent(target.username)}/lock`, { method: 'POST', body: reason ? { reason } : {} });
    toast(`${target.username} locked and signed out`);
    await loadUsers();
  });
  $('lock-confirm').addEventListener('change', () => { $('lock-submit').disabled = !$('lock-confirm').checked; });
  dialogs.lock = (u) => {
    target = u;
    openLock(() => {
      $('lock-username').textContent = u.username;
      $('lock-username-2').textContent = u.username;
      $('lock-submit').disabled = true;
    });
  };
}

export default {
  mount(_root, params) {
    wire();
    $('admin-forbidden').hidden = true;
    $('admin-body').hidden = false;
    return selectTab(params.get('tab') || current);
  },
};

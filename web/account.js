// My Account (/account): profile, avatar, password, and the user's own
// sessions (GET/DELETE /account/api/sessions, revoke-others).

import {
  $, el, api, state, badge, timeEl, fillAvatar, bumpAvatar, describeAgent, labelCells, emptyRow,
  confirmAction, formDialog, toast, showError, clearError, withButton,
} from './core.js';

const MAX_AVATAR = 1024 * 1024;
const IMAGE_TYPES = ['image/png', 'image/jpeg', 'image/webp'];
let wired = false;
let openPassword;
let hasOthers = false;

function renderProfile(me) {
  fillAvatar($('account-avatar'), me, 'account-avatar-img');
  $('profile-username').textContent = me.username;
  const roles = $('profile-roles');
  roles.replaceChildren(...(me.roles.length ? me.roles.map((r) => badge(r, r === 'Admin' ? 'accent' : 'gray')) : [badge('User')]));
  const auth = { credentials: 'Password', local: 'Local administrator', github: 'GitHub' }[me.auth] || me.auth;
  $('profile-auth').textContent = auth.startsWith('oidc:') ? `OpenID Connect (${auth.slice(5)})` : auth;
  $('profile-created').replaceChildren(timeEl(me.created_at));
  const last = me.last_login;
  $('profile-last-login').replaceChildren(...(last
    ? [timeEl(last.at), last.ip ? el('span', { class: 'muted' }, ` from ${last.ip}`) : '']
    : [el('span', { class: 'muted' }, 'Never')]));
  $('change-password').disabled = me.auth !== 'credentials';
  $('change-password').title = me.auth === 'credentials' ? '' : 'This account signs in without a password';
}

async function loadSessions() {
  const table = $('my-sessions');
  const tbody = table.tBodies[0];
  const list = await api('/account/api/sessions');
  const rows = list.data.sort((a, b) => Number(b.current) - Number(a.current) || b.last_seen_at.localeCompare(a.last_seen_at));
  tbody.replaceChildren(...rows.map((s) => {
    const end = s.current ? badge('This device', 'green', { 'data-testid': 'this-device' })
      : el('button', { class: 'btn btn-sm', type: 'button', 'data-action': 'end', 'aria-label': 'Sign out this session' }, 'Sign out');
    if (!s.current) {
      end.addEventListener('click', async () => {
        const ok = await confirmAction({
          title: 'Sign out this session?',
          message: `${describeAgent(s.user_agent)}${s.ip ? ` at ${s.ip}` : ''} is signed out at once.`,
          ok: 'Sign out',
        });
        if (!ok) return;
        await withButton(end, $('account-error'), async () => {
          await api(`/account/api/sessions/${encodeURIComponent(s.id)}`, { method: 'DELETE' });
          toast('Session signed out');
          await loadSessions();
        });
      });
    }
    return el('tr', { 'data-session-id': s.id, class: s.current ? 'row-current' : null },
      el('td', {}, el('div', { class: 'cell-main' }, describeAgent(s.user_agent)),
        el('div', { class: 'cell-sub muted small', title: s.user_agent || '' }, s.via === 'password' ? 'Password sign-in' : `Signed in with ${s.via}`)),
      el('td', { class: 'mono' }, s.ip || '—'),
      el('td', {}, timeEl(s.created_at)),
      el('td', {}, timeEl(s.last_seen_at)),
      el('td', { class: 'actions' }, end));
  }));
  if (!rows.length) tbody.append(emptyRow(table, 'No sessions'));
  labelCells(table);
  hasOthers = rows.some((s) => !s.current);
  $('revoke-others').disabled = !hasOthers;
}

async function uploadAvatar(file) {
  const error = $('avatar-error');
  clearError(error);
  if (file.size > MAX_AVATAR) {
    error.textContent = 'The image is larger than 1 MiB. Choose a smaller one.';
    return;
  }
  const button = $('avatar-change');
  button.disabled = true;
  button.textContent = 'Uploading…';
  try {
    const type = IMAGE_TYPES.includes(file.type) ? file.type : (file.type || 'application/octet-stream');
    await api('/account/api/avatar', { method: 'PUT', raw: file, contentType: type });
    bumpAvatar(state.me.id);
    state.me = await api('/account/api/me');
    renderProfile(state.me);
    document.dispatchEvent(new CustomEvent('gatehouse:me-changed'));
    toast('Avatar updated');
  } catch (e) {
    showError(error, e);
  } finally {
    button.disabled = false;
    button.textContent = 'Change avatar';
  }
}

function wire() {
  if (wired) return;
  wired = true;
  const input = $('avatar-input');
  $('avatar-change').addEventListener('click', () => input.click());
  input.addEventListener('change', async () => {
    const file = input.files?.[0];
    if (file) await uploadAvatar(file);
    input.value = '';
  });

  openPassword = formDialog($('password-dialog'), async () => {
    if ($('pw-new').value !== $('pw-confirm').value) {
      throw new Error('The new passwords do not match.');
    }
    await api('/account/api/password', { method: 'POST', body: { current: $('pw-current').value, new: $('pw-new').value } });
    toast('Password changed. Your other sessions were signed out.');
    loadSessions().catch(() => {});
  });
  $('change-password').addEventListener('click', () => openPassword());

  $('revoke-others').addEventListener('click', async (e) => {
    const button = e.currentTarget;
    const ok = await confirmAction({
      title: 'Sign out other sessions?',
      message: 'Every other browser and device signed in as you is signed out at once. This one stays signed in.',
      ok: 'Sign out others',
    });
    if (!ok) return;
    await withButton(button, $('account-error'), async () => {
      const r = await api('/account/api/sessions/revoke-others', { method: 'POST' });
      const n = r?.deleted_count ?? 0;
      toast(n === 1 ? 'Signed out 1 other session' : `Signed out ${n} other sessions`);
      await loadSessions();
    });
    button.disabled = !hasOthers;
  });
}

export default {
  async mount() {
    wire();
    renderProfile(state.me);
    try {
      const [me] = await Promise.all([api('/account/api/me'), loadSessions()]);
      state.me = me;
      renderProfile(me);
    } catch (e) {
      showError($('account-error'), e);
    }
  },
};

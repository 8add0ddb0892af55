// Entry point: who is signed in, the router (/, /account, /tasks, /tokens, /admin
// share one HTML shell), the top bar and the user menu.

import { $, api, state, isAdmin, fillAvatar, sessionEnded } from './core.js';
import { showSignIn } from './signin.js';
import chat from './chat.js';
import account from './account.js';
import tasks from './tasks.js';
import tokens from './tokens.js';
import admin from './admin.js';

const VIEWS = {
  '/': { section: 'view-chat', title: 'Chat', view: chat },
  '/account': { section: 'view-account', title: 'My Account', view: account },
  '/tasks': { section: 'view-tasks', title: 'Tasks', view: tasks },
  '/tokens': { section: 'view-tokens', title: 'API tokens', view: tokens },
  '/admin': { section: 'view-admin', title: 'Admin', view: admin },
};

const currentPath = () => location.pathname.replace(/\/+$/, '') || '/';

// --- header and menu --------------------------------------------------------

function renderHeader() {
  const me = state.me;
  const admin = isAdmin(me);
  $('whoami').textContent = me.username;
  $('menu-username').textContent = me.display_name || me.username;
  $('menu-roles').textContent = admin ? 'Admin' : 'User';
  $('nav-admin').hidden = !admin;
  $('menu-admin').hidden = !admin;
  fillAvatar($('avatar'), me, 'avatar-img');
}

function setMenu(open) {
  $('user-menu').hidden = !open;
  $('user-menu-button').setAttribute('aria-expanded', String(open));
  if (open) $('user-menu').querySelector('[role=menuitem]')?.focus();
}

function wireMenu() {
  const button = $('user-menu-button');
  const menu = $('user-menu');
  button.addEventListener('click', (e) => {
    e.stopPropagation();
    setMenu(menu.hidden);
  });
  document.addEventListener('click', (e) => {
    if (!menu.hidden && !menu.contains(e.target)) setMenu(false);
  });
  document.addEventListener('keydown', (e) => {
    if (menu.hidden) return;
    const items = [...menu.querySelectorAll('[role=menuitem]')].filter((i) => i.offsetParent !== null);
    const at = items.indexOf(document.activeElement);
    if (e.key === 'Escape') {
      setMenu(false);
      button.focus();
    } else if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      e.preventDefault();
      const step = e.key === 'ArrowDown' ? 1 : -1;
      items[(at + step + items.length) % items.length]?.focus();
    }
  });
  $('logout').addEventListener('click', async () => {
    setMenu(false);
    try {
      await fetch('/auth/logout', { method: 'POST', credentials: 'same-origin' });
    } finally {
      location.assign('/');
    }
  });
}

// --- router -------------------------------------------------------------------

function route() {
  const path = currentPath();
  const entry = VIEWS[path] || VIEWS['/'];
  for (const v of Object.values(VIEWS)) {
    $(v.section).hidden = v !== entry;
    if (v !== entry) v.view.unmount?.();
  }
  for (const a of document.querySelectorAll('.nav a[data-route]')) {
    if (VIEWS[a.dataset.route] === entry) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.body.dataset.view = entry.section;
  document.title = `${entry.title} · Gatehouse`;
  entry.view.mount($(entry.section), new URLSearchParams(location.search));
}

export function navigate(href, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', href);
  else if (href !== location.pathname + location.search) history.pushState(null, '', href);
  route();
}

function wireLinks() {
  document.addEventListener('click', (e) => {
    const a = e.target.closest?.('a[data-link]');
    if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    const url = new URL(a.href, location.href);
    if (url.origin !== location.origin || !VIEWS[url.pathname]) return;
    e.preventDefault();
    setMenu(false);
    navigate(url.pathname + url.search);
    window.scrollTo(0, 0);
  });
  window.addEventListener('popstate', route);
}

// --- start --------------------------------------------------------------------

function enterApp(user) {
  state.me = user;
  $('signed-out').hidden = true;
  $('topbar').hidden = false;
  $('app').hidden = false;
  document.body.classList.add('signed-in');
  renderHeader();
  route();
}

// After any change of the user (avatar, …): fetch it again, redraw the header.
document.addEventListener('gatehouse:me-changed', async () => {
  try {
    state.me = await api('/account/api/me');
    renderHeader();
  } catch {
    // a 401 already went to the sign-in view
  }
});

async function start() {
  let res = null;
  try {
    res = await fetch('/auth/session', { credentials: 'same-origin' });
  } catch {
    // offline: the sign-in view says so
  }
  if (res?.ok) {
    enterApp((await res.json()).user);
    return;
  }
  // Not a session: the single local admin (allow_anonymous_local) still
  // has an account view of itself.
  if (res && res.status === 401) {
    const me = await fetch('/account/api/me', { credentials: 'same-origin' }).catch(() => null);
    if (me?.ok) {
      const user = await me.json();
      if (user.auth === 'local') {
        enterApp(user);
        $('logout').hidden = true;
        return;
      }
    }
  }
  showSignIn({ online: Boolean(res), onSignedIn: start });
}

wireMenu();
wireLinks();
start().catch((e) => {
  if (e?.status === 401) sessionEnded();
  else throw e;
});

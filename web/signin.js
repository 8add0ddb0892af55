// The sign-in view: the password form and one button per sign-in method of
// GET /auth/providers. `?next=/path` (a local path) is where to go after.

import { $, el, sentence } from './core.js';

const SPA = new Set(['/', '/account', '/tokens', '/admin']);

function localPath(p) {
  return typeof p === 'string' && p.startsWith('/') && !p.startsWith('//') && !p.startsWith('/\\') ? p : null;
}

// Where to go once signed in: ?next=, else the page asked for (not /).
function nextPath() {
  const next = localPath(new URLSearchParams(location.search).get('next'));
  if (next) return next;
  const here = location.pathname.replace(/\/+$/, '') || '/';
  return here !== '/' && SPA.has(here) ? here + location.search : null;
}

async function message(res, fallback) {
  try {
    return sentence((await res.json()).error.message);
  } catch {
    return `${fallback} (${res.status})`;
  }
}

function renderProviders(list) {
  const box = $('providers');
  const next = nextPath();
  box.replaceChildren();
  for (const m of list) {
    if (m.type === 'password') continue;
    const a = el('a', { href: m.url + (next ? `?next=${encodeURIComponent(next)}` : ''), class: 'btn btn-block btn-provider' });
    if (m.id === 'github') {
      a.id = 'signin-github';
      a.classList.add('btn-github');
      a.append(el('span', { class: 'provider-mark', 'aria-hidden': 'true' }, 'GH'));
    } else {
      a.className += ' signin-oidc';
      a.dataset.provider = m.name;
      a.append(el('span', { class: 'provider-mark', 'aria-hidden': 'true' }, m.name.charAt(0).toUpperCase()));
    }
    a.append(`Sign in with ${m.id === 'github' ? 'GitHub' : m.name}`);
    box.append(a);
  }
  $('providers-sep').hidden = box.childElementCount === 0;
}

let wired = false;

function wire(onSignedIn) {
  if (wired) return;
  wired = true;
  $('login-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const button = $('login-submit');
    $('error').textContent = '';
    button.disabled = true;
    let res;
    try {
      res = await fetch('/auth/login', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        credentials: 'same-origin',
        body: JSON.stringify({ username: $('username').value, password: $('password').value }),
      });
    } catch {
      $('error').textContent = 'Cannot reach the server. Check your connection and try again.';
      button.disabled = false;
      return;
    }
    $('password').value = '';
    button.disabled = false;
    if (!res.ok) {
      $('error').textContent = await message(res, 'Sign-in failed');
      return;
    }
    const next = nextPath();
    const target = next ? new URL(next, location.origin) : null;
    if (target && !SPA.has(target.pathname)) {
      location.assign(next);
      return;
    }
    history.replaceState(null, '', next || '/');
    onSignedIn();
  });
}

export async function showSignIn({ online = true, onSignedIn }) {
  $('topbar').hidden = true;
  $('app').hidden = true;
  $('signed-out').hidden = false;
  document.body.classList.remove('signed-in');
  document.title = 'Sign in · Gatehouse';
  wire(onSignedIn);
  $('username').focus();
  if (!online) {
    $('notice').textContent = 'Cannot reach the server. Check your connection and reload.';
    return;
  }
  const providers = await fetch('/auth/providers', { credentials: 'same-origin' }).catch(() => null);
  if (providers?.ok) {
    $('notice').textContent = '';
    renderProviders((await providers.json()).data);
  } else if (providers) {
    $('notice').textContent = await message(providers, 'Sign-in is not available');
  }
}

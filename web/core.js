// Core helpers shared by every page: DOM building, the API wrapper (a 401
// sends the page to the sign-in view), time and number formatting, avatars,
// dialogs, confirmations and toasts. No dependencies, no build step.

export const $ = (id) => document.getElementById(id);

// The signed-in user (the API's `User`), set by app.js.
export const state = { me: null };

export const isAdmin = (user) => Boolean(user?.roles?.includes('Admin'));

// el('button', {class: 'btn', onclick: f, 'data-x': 1}, 'text', child…):
// children are nodes or strings (always text, never HTML).
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = String(v);
    else if (k.startsWith('on') && typeof v === 'function') node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  node.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

// --- the API ----------------------------------------------------------------

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const FALLBACK = {
  400: 'The request was not accepted.',
  403: 'You are not allowed to do that.',
  404: 'Not found.',
  409: 'That conflicts with the current state.',
  413: 'That is too large.',
  422: 'Some values are not valid.',
  429: 'Too many attempts. Wait a moment and try again.',
};

// "the current password is not correct" → "The current password is not correct."
export function sentence(text) {
  const t = String(text || '').trim();
  if (!t) return t;
  const s = t.charAt(0).toUpperCase() + t.slice(1);
  return /[.!?]$/.test(s) ? s : `${s}.`;
}

// The ApiError of a failed response (the API's `{"error": {…}}` shape).
export async function errorOf(res) {
  let code = `http_${res.status}`;
  let message = FALLBACK[res.status] || `The server answered ${res.status}.`;
  try {
    const body = await res.json();
    if (body?.error?.message) {
      message = sentence(body.error.message);
      code = body.error.code || code;
    }
  } catch {
    // not JSON: keep the fallback
  }
  return new ApiError(res.status, code, message);
}

let leaving = false;

// The session is gone (locked, deleted, signed out elsewhere): to the
// sign-in view at once, coming back here afterwards.
export function sessionEnded() {
  if (leaving) return;
  leaving = true;
  const here = location.pathname + location.search;
  location.assign(here === '/' ? '/' : `/?next=${encodeURIComponent(here)}`);
}

// fetch with the session cookie. `body` is sent as JSON, `raw` as is (with
// `contentType`); `headers` are added. Answers the parsed JSON, or null for
// 204; throws ApiError.
export async function api(path, { method = 'GET', body, raw, contentType, signal, headers } = {}) {
  const init = { method, credentials: 'same-origin', headers: { accept: 'application/json', ...headers }, signal };
  if (raw !== undefined) {
    init.body = raw;
    if (contentType) init.headers['content-type'] = contentType;
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['content-type'] = 'application/json';
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', 'Cannot reach the server. Check your connection and try again.');
  }
  if (res.status === 401) {
    sessionEnded();
    throw new ApiError(401, 'unauthenticated', 'Your session has ended.');
  }
  if (!res.ok) throw await errorOf(res);
  if (res.status === 204) return null;
  const type = res.headers.get('content-type') || '';
  return type.includes('json') ? res.json() : res.text();
}

// A fresh Idempotency-Key (a UUID; crypto.randomUUID needs a secure context).
export function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// Shows an error in a banner or form-error element (nothing for a 401: the
// page is already on its way to the sign-in view).
export function showError(target, e) {
  if (e?.status === 401) return;
  target.textContent = e?.message || String(e);
  if (target.classList.contains('banner')) target.hidden = false;
}

export function clearError(target) {
  target.textContent = '';
  if (target.classList.contains('banner')) target.hidden = true;
}

// --- formatting -----------------------------------------------------------

const rtf = new Intl.RelativeTimeFormat('en', { numeric: 'auto' });

// "3 minutes ago", "in 30 days", "just now".
export function relTime(iso, now = Date.now()) {
  const t = Date.parse(iso);
  if (!iso || Number.isNaN(t)) return '—';
  const s = (t - now) / 1000;
  const a = Math.abs(s);
  if (a < 45) return s <= 0 ? 'just now' : 'in a few seconds';
  const steps = [['minute', 60, 3600], ['hour', 3600, 86400], ['day', 86400, 30 * 86400],
    ['month', 30 * 86400, 365 * 86400], ['year', 365 * 86400, Infinity]];
  const [unit, size] = steps.find(([, , below]) => a < below);
  return rtf.format(Math.round(s / size) || Math.sign(s), unit);
}

export function fmtDate(iso) {
  const t = Date.parse(iso);
  if (!iso || Number.isNaN(t)) return '—';
  return new Date(t).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

// <time> showing a relative time, the exact one on hover; kept fresh.
export function timeEl(iso, empty = '—') {
  if (!iso) return el('span', { class: 'muted', text: empty });
  return el('time', { datetime: iso, title: fmtDate(iso), 'data-rel': '' }, relTime(iso));
}

setInterval(() => {
  for (const t of document.querySelectorAll('time[data-rel]')) t.textContent = relTime(t.dateTime);
}, 30000);

export const fmtNumber = (n) => Number(n || 0).toLocaleString('en-US');

export function fmtCost(c) {
  const n = Number(c || 0);
  const digits = n > 0 && n < 1 ? 4 : 2;
  return n.toLocaleString('en-US', { style: 'currency', currency: 'USD', minimumFractionDigits: 2, maximumFractionDigits: digits });
}

// "Chrome on Linux" from a user agent string.
export function describeAgent(ua) {
  if (!ua) return 'Unknown device';
  const browser = [[/Edg\//, 'Edge'], [/OPR\//, 'Opera'], [/HeadlessChrome\//, 'Headless Chrome'],
    [/Chrome\//, 'Chrome'], [/Firefox\//, 'Firefox'], [/Safari\//, 'Safari'], [/^curl\//, 'curl'],
    [/python/i, 'Python'], [/node/i, 'Node.js']].find(([re]) => re.test(ua));
  const os = [[/Windows/, 'Windows'], [/Android/, 'Android'], [/iPhone|iPad/, 'iOS'],
    [/Mac OS X/, 'macOS'], [/CrOS/, 'ChromeOS'], [/Linux/, 'Linux']].find(([re]) => re.test(ua));
  if (!browser) return ua.length > 40 ? `${ua.slice(0, 40)}…` : ua;
  return os ? `${browser[1]} on ${os[1]}` : browser[1];
}

export function badge(text, kind = 'gray', attrs = {}) {
  return el('span', { class: `badge badge-${kind}`, ...attrs }, text);
}

// Table cells carry their column's name, for the stacked layout on phones.
export function labelCells(table) {
  const names = [...table.querySelectorAll('thead th')].map((th) => (th.classList.contains('actions') ? '' : th.textContent.trim()));
  for (const tr of table.querySelectorAll('tbody tr:not(.group-row)')) {
    [...tr.children].forEach((td, i) => {
      if (td.tagName === 'TD' && names[i] && !td.hasAttribute('colspan')) td.dataset.label = names[i];
    });
  }
}

export function emptyRow(table, title, text = '') {
  const cols = table.querySelectorAll('thead th').length;
  return el('tr', { class: 'empty-row' }, el('td', { colspan: cols },
    el('div', { class: 'empty' }, el('strong', {}, title), text ? el('p', { class: 'muted' }, text) : null)));
}

// --- avatars ----------------------------------------------------------------

const AVATAR_V = 'gatehouse.avatar-v:';

// After an upload: new URL for this user's avatar (it is cached 5 min).
export function bumpAvatar(userId) {
  try { localStorage.setItem(AVATAR_V + userId, String(Date.now())); } catch { /* private mode */ }
}

export function avatarSrc(user) {
  const url = user?.avatar_url;
  if (!url) return null;
  let v = null;
  try { v = localStorage.getItem(AVATAR_V + user.id); } catch { /* private mode */ }
  return v && url.startsWith('/avatars/') ? `${url}?v=${v}` : url;
}

function hue(text) {
  let h = 0;
  for (const ch of String(text)) h = (h * 31 + ch.codePointAt(0)) % 360;
  return h;
}

// Fills an `.avatar` span: the user's image, or a coloured circle with
// their initial (also when the image fails to load).
export function fillAvatar(wrap, user, imgId) {
  const name = user?.display_name || user?.username || '?';
  const initial = el('span', { class: 'avatar-initial', 'aria-hidden': 'true' }, name.trim().charAt(0).toUpperCase() || '?');
  wrap.style.backgroundColor = `hsl(${hue(user?.username || name)} 45% 45%)`;
  wrap.title = user?.username || '';
  const src = avatarSrc(user);
  if (!src) {
    wrap.replaceChildren(initial);
    return;
  }
  const img = el('img', { src, alt: '', referrerpolicy: 'no-referrer', id: imgId || null });
  img.addEventListener('error', () => wrap.replaceChildren(initial), { once: true });
  wrap.replaceChildren(img);
}

export function avatar(user, cls = '') {
  const wrap = el('span', { class: `avatar ${cls}`.trim() });
  fillAvatar(wrap, user);
  return wrap;
}

// --- dialogs, confirmations, toasts ---------------------------------------

// A confirmation in the page (never window.confirm): resolves true on OK.
export function confirmAction({ title, message, ok = 'Confirm', danger = true }) {
  const d = $('confirm-dialog');
  $('confirm-title').textContent = title;
  $('confirm-message').textContent = message;
  const button = $('confirm-ok');
  button.textContent = ok;
  button.className = `btn ${danger ? 'btn-danger' : 'btn-primary'}`;
  d.returnValue = '';
  d.showModal();
  button.focus();
  return new Promise((resolve) => {
    d.addEventListener('close', () => resolve(d.returnValue === 'ok'), { once: true });
  });
}

// Wires a <dialog> holding a <form>: submit runs `submit(form)` with the
// submit button disabled; success closes it, an error shows in the dialog's
// .form-error. Answers open(prepare) which resets and shows the dialog.
export function formDialog(dialog, submit) {
  const form = dialog.querySelector('form');
  const error = dialog.querySelector('.form-error');
  const button = form.querySelector('[type=submit]');
  for (const b of dialog.querySelectorAll('[data-close]')) b.addEventListener('click', () => dialog.close());
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearError(error);
    button.disabled = true;
    dialog.setAttribute('aria-busy', 'true');
    try {
      await submit(form);
      dialog.close();
    } catch (err) {
      showError(error, err);
    } finally {
      dialog.removeAttribute('aria-busy');
      button.disabled = false;
    }
  });
  return (prepare) => {
    form.reset();
    clearError(error);
    button.disabled = false;
    if (prepare) prepare(form);
    dialog.showModal();
    form.querySelector('input:not([type=checkbox]):not([type=hidden]), textarea, select')?.focus();
  };
}

export function toast(message, kind = 'ok') {
  const box = $('toasts');
  const t = el('div', { class: `toast toast-${kind}`, role: 'status' }, message);
  box.append(t);
  setTimeout(() => t.classList.add('toast-out'), 3500);
  setTimeout(() => t.remove(), 4000);
}

// Runs `fn` with `button` disabled (a row action), showing errors in `banner`.
export async function withButton(button, banner, fn) {
  button.disabled = true;
  clearError(banner);
  try {
    await fn();
  } catch (e) {
    showError(banner, e);
  } finally {
    button.disabled = false;
  }
}

// The admin Providers tab: GET /admin/api/providers → a table of providers
// with their credential profiles' health (ok / cooling until … / failing;
// never a key), add or edit a run-time provider (PUT …/providers/{name}),
// remove one (DELETE; not those of the config file), add a key as a profile
// (PUT …/profiles/{profile}; the key field is emptied once sent) or remove
// one, and "Test": the provider's models listed live upstream, timed here.

import {
  $, el, api, badge, fmtDate, relTime, labelCells, emptyRow, confirmAction, formDialog, toast, withButton,
} from './core.js';

let wired = false;
let openProvider = null;
let openProfile = null;
// The last test of each provider (kept across reloads of the table).
const tests = new Map();

const path = (name) => `/admin/api/providers/${encodeURIComponent(name)}`;

function stateBadge(p) {
  if (p.state === 'ok') return badge('ok', 'green', { 'data-testid': 'profile-state', 'data-state': 'ok' });
  if (p.state === 'cooling') {
    const until = p.until ? ` until ${new Date(Date.parse(p.until)).toLocaleTimeString()}` : '';
    return badge(`cooling${until}`, 'amber', {
      'data-testid': 'profile-state', 'data-state': 'cooling', title: p.until ? `${fmtDate(p.until)} (${relTime(p.until)})` : null,
    });
  }
  return badge(p.state === 'failing' ? 'failing' : String(p.state), 'red', { 'data-testid': 'profile-state', 'data-state': p.state });
}

function profileItem(provider, p) {
  const item = el('li', { class: 'key-profile', 'data-profile': p.name, 'data-state': p.state },
    el('span', { class: 'key-profile-name mono' }, p.name),
    stateBadge(p),
    p.source === 'env' ? el('span', { class: 'muted small', title: 'From an environment variable' }, 'env') : null);
  if (p.source === 'api') {
    const remove = el('button', {
      class: 'btn btn-ghost btn-xs', type: 'button', 'data-action': 'remove-profile', 'aria-label': `Remove key ${p.name} of ${provider.name}`, title: 'Remove this key',
    }, '×');
    remove.addEventListener('click', async () => {
      const ok = await confirmAction({
        title: `Remove key ${p.name} of ${provider.name}?`,
        message: 'Requests stop using this key at once. The key itself is deleted and cannot be recovered.',
        ok: 'Remove key',
      });
      if (!ok) return;
      await withButton(remove, $('providers-error'), async () => {
        await api(`${path(provider.name)}/profiles/${encodeURIComponent(p.name)}`, { method: 'DELETE' });
        toast(`Key ${p.name} of ${provider.name} removed`);
        await load();
      });
    });
    item.append(remove);
  }
  return item;
}

function testResult(name) {
  const t = tests.get(name);
  if (!t) return null;
  if (t.running) {
    return el('div', { class: 'provider-test muted small', 'data-testid': 'provider-test', 'data-state': 'running' }, 'Asking the provider for its models…');
  }
  if (t.error) {
    return el('div', { class: 'provider-test provider-test-error small', 'data-testid': 'provider-test', 'data-state': 'error' },
      el('strong', {}, 'Test failed'), ` after ${t.ms} ms: `, el('span', { 'data-testid': 'provider-test-error' }, t.error));
  }
  const n = t.models.length;
  return el('div', { class: 'provider-test small', 'data-testid': 'provider-test', 'data-state': 'ok' },
    badge('answered', 'green'),
    el('span', {}, ` in `, el('strong', { 'data-testid': 'provider-test-ms' }, `${t.ms} ms`), ` · ${n} ${n === 1 ? 'model' : 'models'}${n ? ':' : ''} `),
    el('span', { class: 'badges', 'data-testid': 'provider-test-models' }, t.models.slice(0, 40).map((id) => badge(id, 'gray', { class: 'badge badge-gray mono' }))),
    n > 40 ? el('span', { class: 'muted' }, ` and ${n - 40} more`) : null);
}

async function runTest(p, button) {
  tests.set(p.name, { running: true });
  redrawTest(p.name);
  button.disabled = true;
  const started = performance.now();
  try {
    const r = await api(`${path(p.name)}/models`);
    const ms = Math.round(performance.now() - started);
    tests.set(p.name, { ms, models: (r?.data ?? []).map((m) => String(m.id)) });
  } catch (e) {
    const ms = Math.round(performance.now() - started);
    if (e?.status === 401) return;
    tests.set(p.name, { ms, error: e?.message || String(e) });
  } finally {
    button.disabled = false;
    redrawTest(p.name);
  }
}

function redrawTest(name) {
  const row = [...$('providers-table').querySelectorAll('tr.test-row')].find((r) => r.dataset.testFor === name);
  if (!row) return;
  const result = testResult(name);
  row.hidden = !result;
  row.firstChild.replaceChildren(...(result ? [result] : []));
}

function providerRows(p, cols) {
  const config = p.source === 'config';
  const banner = $('providers-error');
  const test = el('button', { class: 'btn btn-sm', type: 'button', 'data-action': 'test', 'aria-label': `Test ${p.name}` }, 'Test');
  test.addEventListener('click', () => runTest(p, test));
  const key = el('button', { class: 'btn btn-ghost btn-sm btn-add-key', type: 'button', 'data-action': 'add-profile', 'aria-label': `Add a key to ${p.name}` }, '+ Add key');
  key.addEventListener('click', () => openProfile(p));
  const edit = el('button', {
    class: 'btn btn-sm', type: 'button', 'data-action': 'edit', 'aria-label': `Edit ${p.name}`,
    disabled: config, title: config ? 'Defined in the configuration file: change it there' : null,
  }, 'Edit');
  edit.addEventListener('click', () => openProvider(p));
  const remove = el('button', {
    class: 'btn btn-sm btn-danger-ghost', type: 'button', 'data-action': 'remove', 'aria-label': `Remove ${p.name}`,
    disabled: config, title: config ? 'Defined in the configuration file: it cannot be removed here' : null,
  }, 'Remove');
  remove.addEventListener('click', async () => {
    const ok = await confirmAction({
      title: `Remove provider ${p.name}?`,
      message: `Its models (${p.name}/…) stop being offered at once, and its keys are deleted.`,
      ok: 'Remove provider',
    });
    if (!ok) return;
    await withButton(remove, banner, async () => {
      await api(path(p.name), { method: 'DELETE' });
      tests.delete(p.name);
      toast(`Provider ${p.name} removed`);
      await load();
    });
  });
  const profiles = [...p.profiles].sort((a, b) => (a.order ?? 0) - (b.order ?? 0) || a.name.localeCompare(b.name));
  const models = p.models ?? [];
  const row = el('tr', { 'data-provider': p.name, 'data-source': p.source },
    el('td', {}, el('span', { class: 'cell-main' }, p.name), p.local ? el('div', { class: 'cell-sub muted small' }, 'local') : null),
    el('td', {}, p.type === 'anthropic' ? 'Anthropic' : 'OpenAI'),
    el('td', {}, el('span', { class: 'mono url-cell', title: p.base_url }, p.base_url)),
    el('td', {}, config ? badge('config', 'gray', { 'data-testid': 'provider-source', title: 'From the configuration file' }) : badge('API', 'accent', { 'data-testid': 'provider-source' })),
    el('td', {}, p.offered ? badge('offered', 'green', { 'data-testid': 'provider-offered' }) : badge('not offered', 'gray', { 'data-testid': 'provider-offered', title: 'No usable key or no models' })),
    el('td', { class: 'num', title: models.join(', ') || null, 'data-testid': 'provider-models' }, String(models.length)),
    el('td', {}, el('div', { class: 'profiles-cell' }, profiles.length
      ? el('ul', { class: 'profiles', 'data-testid': 'provider-profiles' }, profiles.map((q) => profileItem(p, q)))
      : el('span', { class: 'muted', 'data-testid': 'provider-profiles' }, 'No keys'), key)),
    el('td', { class: 'actions' }, el('div', { class: 'row-actions' }, test, edit, remove)));
  const result = testResult(p.name);
  const testRow = el('tr', { class: 'test-row', 'data-test-for': p.name, hidden: !result },
    el('td', { colspan: cols }, result));
  return [row, testRow];
}

export async function load() {
  const table = $('providers-table');
  const cols = table.querySelectorAll('thead th').length;
  const list = await api('/admin/api/providers');
  const providers = list.data.sort((a, b) => a.name.localeCompare(b.name));
  table.tBodies[0].replaceChildren(...providers.flatMap((p) => providerRows(p, cols)));
  if (!providers.length) table.tBodies[0].append(emptyRow(table, 'No providers yet', 'Add one to offer its models.'));
  labelCells(table);
  const fromApi = providers.filter((p) => p.source !== 'config').length;
  $('providers-count').textContent = `${providers.length} ${providers.length === 1 ? 'provider' : 'providers'}${fromApi ? `, ${fromApi} added here` : ''}`;
}

export function wire() {
  if (wired) return;
  wired = true;
  let editing = null;
  const open = formDialog($('provider-dialog'), async () => {
    const name = $('provider-name').value.trim();
    const body = {
      type: $('provider-type').value,
      base_url: $('provider-url').value.trim(),
      models: $('provider-models').value.split(',').map((m) => m.trim()).filter(Boolean),
      local: $('provider-local').checked,
    };
    // Editing keeps the provider's timeouts.
    if (editing?.timeouts) body.timeouts = editing.timeouts;
    const created = await api(path(name), { method: 'PUT', body });
    toast(`Provider ${created?.name ?? name} ${editing ? 'saved' : 'added'}`);
    await load();
  });
  openProvider = (p) => {
    editing = p || null;
    open(() => {
      $('provider-title').textContent = p ? `Edit ${p.name}` : 'Add provider';
      $('provider-submit').textContent = p ? 'Save provider' : 'Add provider';
      $('provider-name').readOnly = Boolean(p);
      if (!p) return;
      $('provider-name').value = p.name;
      $('provider-type').value = p.type;
      $('provider-url').value = p.base_url;
      $('provider-models').value = (p.models ?? []).join(', ');
      $('provider-local').checked = Boolean(p.local);
    });
    if (p) $('provider-url').focus();
  };
  $('provider-add').addEventListener('click', () => openProvider(null));

  let target = null;
  const key = $('profile-key');
  const openKey = formDialog($('profile-dialog'), async () => {
    const name = $('profile-name').value.trim();
    const order = $('profile-order').value.trim();
    const body = { api_key: key.value };
    if (order !== '') body.order = Number(order);
    await api(`${path(target.name)}/profiles/${encodeURIComponent(name)}`, { method: 'PUT', body });
    key.value = '';
    toast(`Key ${name} saved for ${target.name}`);
    await load();
  });
  // Never leave a key in a closed dialog.
  $('profile-dialog').addEventListener('close', () => { key.value = ''; });
  openProfile = (p) => {
    target = p;
    openKey(() => {
      $('profile-provider').textContent = p.name;
      if (!p.profiles.length) $('profile-name').value = 'main';
    });
  };
}

export default { load, wire };

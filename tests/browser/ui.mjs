// The web UI in a real browser, in two parts (each within lib.mjs's limit),
// run by tests/api/browser_ui.rs against one gateway:
//
//   node tests/browser/ui.mjs '{"base":"http://127.0.0.1:PORT","part":"admin",
//        "password":"…","alice_password":"…","shot":"target/browser-shots/ui-admin-final.png"}'
//   node tests/browser/ui.mjs '{"base":…,"part":"account","password":"…",
//        "new_password":"…","shot":…}'
//
// part "admin": 1. admin signs in; 2. creates bob in Admin › Users; 3. bob
// signs in from a second browser context; 4. admin locks bob (reason +
// confirmation; and sees the API's 409 when locking themselves), bob's next
// click lands on the sign-in view; the Sessions tab; sets alice's password,
// creates and deletes carol; 5. admin creates a
// token, node calls GET /v1/models with it (200), admin revokes it in the UI
// (confirmation) and the next call is 401.
// part "account": signs in on the way to /account (?next=), ends one other
// session and then all the others; 6. admin changes their password in My Account (after a
// wrong current one and a short one); 7. uploads an avatar (a bad file
// first) and sees it in the header; 8. sees a never-ending reply (oa/endless)
// grow and stops it, then chats with oa/m1 and sees the streamed reply; 9. the Usage tab has a row for admin and oa/m1 and a
// chart; the pages at 400 px wide; 10. signs out.
// part "tasks" (node tests/browser/ui.mjs '{"base":…,"part":"tasks",
//        "password":"…","shot":…}'): 11. admin creates a chat.completion task
// for oa/m1 that requires approval in the Tasks page, sees it
// pending_approval, approves it and sees it succeed with its output streamed
// into the detail panel; cancels a second one (confirmation) and retries it.
// part "providers" (node tests/browser/ui.mjs '{"base":…,"part":"providers",
//        "password":"…","upstream":"http://127.0.0.1:PORT/v1","key":"…","shot":…}'):
// 12. in Admin › Providers the config file's providers cannot be edited or
// removed; admin adds provider "lab" pointing at `upstream` (refused with the
// API's egress message until "local" is checked), edits its models, adds a
// key as profile "main" (the key field is emptied, the key never shown) and
// sees it ok, tests it (latency and the upstream's models), removes it.
//
// Report (besides lib.mjs's): steps {name: {ok, …}} — a failed step has
// ok:false and error, and ends the flow — and shots [paths].

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { args, run, shoot, newPage } from './lib.mjs';

const opts = args();
const SHOTS = 'target/browser-shots';

// --- a small valid PNG, made here ------------------------------------------

const CRC = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k += 1) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function pngChunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

// size×size RGB: a diagonal indigo-to-teal gradient with a light disc.
function png(size) {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0);
  ihdr.writeUInt32BE(size, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  const row = size * 3 + 1;
  const raw = Buffer.alloc(row * size);
  for (let y = 0; y < size; y += 1) {
    for (let x = 0; x < size; x += 1) {
      const t = (x + y) / (2 * size);
      const d = Math.hypot(x - size / 2, y - size * 0.42) / size;
      const disc = d < 0.2 ? 0.75 : 0;
      const mix = (a, b) => Math.round((a + (b - a) * t) * (1 - disc) + 255 * disc);
      const at = y * row + 1 + x * 3;
      raw[at] = mix(79, 20);
      raw[at + 1] = mix(70, 184);
      raw[at + 2] = mix(229, 166);
    }
  }
  const sig = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return Buffer.concat([sig, pngChunk('IHDR', ihdr), pngChunk('IDAT', zlib.deflateSync(raw)), pngChunk('IEND', Buffer.alloc(0))]);
}

// --- helpers ------------------------------------------------------------------

function stepper(report) {
  report.steps = {};
  report.shots = [];
  return async (name, fn) => {
    const started = Date.now();
    try {
      const out = (await fn()) ?? {};
      report.steps[name] = { ok: true, ms: Date.now() - started, ...out };
    } catch (e) {
      report.steps[name] = { ok: false, ms: Date.now() - started, error: String(e?.stack || e) };
      throw e;
    }
  };
}

async function shot(page, report, name) {
  // Without the stack of "done" toasts of the steps before.
  await page.evaluate(() => document.getElementById('toasts')?.replaceChildren());
  await page.mouse.move(4, 696); // no hover left over from the last click
  report.shots.push(await shoot(page, `${SHOTS}/ui-${name}.png`));
}

const text = async (locator) => ((await locator.textContent()) ?? '').trim();

async function signIn(page, username, password, where = '/') {
  await page.goto(`${opts.base}${where}`);
  await page.locator('#login-form').waitFor({ state: 'visible' });
  await page.fill('#username', username);
  await page.fill('#password', password);
  await page.click('#login-submit');
  const who = page.locator('#whoami');
  await who.waitFor({ state: 'visible' });
  await page.waitForFunction((name) => document.getElementById('whoami')?.textContent === name, username);
  return text(who);
}

async function bearer(token) {
  const res = await fetch(`${opts.base}/v1/models`, { headers: { authorization: `Bearer ${token}` } });
  return res.status;
}

// Opens the user menu and clicks one of its items.
async function menu(page, item) {
  await page.click('#user-menu-button');
  await page.locator('#user-menu').waitFor({ state: 'visible' });
  await page.click(item);
}

// --- part "admin" ---------------------------------------------------------------

async function adminPart({ page, browser, context, report }) {
  const step = stepper(report);
  const bobErrors = [];
  report.bob_console_errors = bobErrors;
  let bob;

  await step('signin', async () => {
    await page.goto(`${opts.base}/`);
    await page.locator('#login-form').waitFor({ state: 'visible' });
    await page.locator('#username').focus();
    await shot(page, report, 'signin');
    const whoami = await signIn(page, 'admin', opts.password);
    return {
      whoami,
      admin_nav: await page.locator('#nav-admin').isVisible(),
      header_initial: await text(page.locator('#avatar .avatar-initial')),
      header_img: await page.locator('#avatar-img').count(),
    };
  });

  await step('create_bob', async () => {
    await page.click('#nav-admin');
    await page.locator('#panel-users').waitFor({ state: 'visible' });
    await page.locator('#users-table tr[data-username="admin"]').waitFor();
    await page.click('#user-create');
    await page.locator('#user-dialog').waitFor({ state: 'visible' });
    await page.fill('#new-username', 'bob');
    await page.fill('#new-password', opts.password);
    await page.click('#user-submit');
    const row = page.locator('#users-table tr[data-username="bob"]');
    await row.waitFor();
    await page.locator('#user-dialog').waitFor({ state: 'hidden' });
    return { status: await text(row.getByTestId('user-status')), url: page.url() };
  });

  await step('bob_signs_in', async () => {
    bob = await newPage(browser, bobErrors);
    const whoami = await signIn(bob.page, 'bob', opts.password);
    const adminNav = await bob.page.locator('#nav-admin').isVisible();
    // Not an admin: the admin page says so.
    await bob.page.goto(`${opts.base}/admin`);
    await bob.page.locator('#admin-forbidden').waitFor({ state: 'visible' });
    return { whoami, admin_nav: adminNav, admin_page: await text(bob.page.locator('#admin-forbidden h2')) };
  });

  await step('lock_self_refused', async () => {
    await page.click('#users-table tr[data-username="admin"] button[data-action="lock"]');
    await page.locator('#lock-dialog').waitFor({ state: 'visible' });
    const disabledBefore = await page.locator('#lock-submit').isDisabled();
    await page.fill('#lock-reason', 'testing');
    await page.check('#lock-confirm');
    await page.click('#lock-submit');
    const error = page.locator('#lock-error');
    await error.waitFor({ state: 'visible' });
    const message = await text(error);
    await page.click('#lock-dialog button[data-close]');
    await page.locator('#lock-dialog').waitFor({ state: 'hidden' });
    return { submit_disabled_until_confirmed: disabledBefore, error: message };
  });

  await step('lock_bob', async () => {
    await page.click('#users-table tr[data-username="bob"] button[data-action="lock"]');
    await page.locator('#lock-dialog').waitFor({ state: 'visible' });
    await page.fill('#lock-reason', 'left the team');
    await page.check('#lock-confirm');
    await page.click('#lock-submit');
    await page.locator('#lock-dialog').waitFor({ state: 'hidden' });
    const row = page.locator('#users-table tr[data-username="bob"]');
    await row.locator('[data-testid="lock-reason"]').waitFor();
    const out = { status: await text(row.getByTestId('user-status')), reason: await text(row.getByTestId('lock-reason')) };
    await shot(page, report, 'admin-users');
    return out;
  });

  await step('bob_sent_to_signin', async () => {
    await bob.page.click('#nav-tokens');
    await bob.page.locator('#login-form').waitFor({ state: 'visible' });
    const url = bob.page.url();
    // And signing in again says why not.
    await bob.page.fill('#username', 'bob');
    await bob.page.fill('#password', opts.password);
    await bob.page.click('#login-submit');
    const error = bob.page.locator('#error');
    await bob.page.waitForFunction(() => document.getElementById('error')?.textContent.trim() !== '');
    return { url, topbar_hidden: await bob.page.locator('#topbar').isHidden(), signin_error: await text(error) };
  });

  await step('sessions_tab', async () => {
    await page.click('#tab-sessions');
    await page.locator('#panel-sessions').waitFor({ state: 'visible' });
    await page.locator('#sessions-table tbody[data-user="admin"] tr[data-session-id]').first().waitFor();
    await page.waitForFunction(() => document.getElementById('stat-sessions')?.textContent.trim() !== '–');
    const out = {
      url: page.url(),
      total: await text(page.locator('#stat-sessions')),
      users: await text(page.locator('#stat-users')),
      groups: await page.locator('#sessions-table tbody[data-user]').evaluateAll((b) => b.map((x) => x.dataset.user)),
      revoke_user_buttons: await page.locator('#sessions-table button[data-action="revoke-user"]').count(),
    };
    await shot(page, report, 'admin-sessions');
    return out;
  });

  await step('manage_users', async () => {
    await page.click('#tab-users');
    const alice = page.locator('#users-table tr[data-username="alice"]');
    await alice.waitFor();
    // Set alice's password: a short one first (the API's 422 in the dialog).
    await alice.locator('button[data-action="password"]').click();
    await page.locator('#user-password-dialog').waitFor({ state: 'visible' });
    await page.fill('#user-password', 'short');
    await page.fill('#user-password-confirm', 'short');
    await page.click('#user-password-submit');
    await page.waitForFunction(() => document.getElementById('user-password-error')?.textContent.trim() !== '');
    const tooShort = await text(page.locator('#user-password-error'));
    await page.fill('#user-password', opts.alice_password);
    await page.fill('#user-password-confirm', opts.alice_password);
    await page.click('#user-password-submit');
    await page.locator('#user-password-dialog').waitFor({ state: 'hidden' });
    // Create carol, again (409 in the dialog), then delete her.
    const create = async () => {
      await page.click('#user-create');
      await page.locator('#user-dialog').waitFor({ state: 'visible' });
      await page.fill('#new-username', 'carol');
      await page.fill('#new-password', opts.password);
      await page.click('#user-submit');
    };
    await create();
    const carol = page.locator('#users-table tr[data-username="carol"]');
    await carol.waitFor();
    await create();
    await page.waitForFunction(() => document.getElementById('user-error')?.textContent.trim() !== '');
    const taken = await text(page.locator('#user-error'));
    await page.click('#user-dialog button[data-close]');
    await carol.locator('button[data-action="delete"]').click();
    await page.locator('#confirm-dialog').waitFor({ state: 'visible' });
    const question = await text(page.locator('#confirm-title'));
    await page.click('#confirm-ok');
    await carol.waitFor({ state: 'detached' });
    return { too_short: tooShort, taken, delete_question: question };
  });

  let token;
  let tokenId;
  await step('create_token', async () => {
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: opts.base });
    await page.click('#nav-tokens');
    await page.locator('#view-tokens').waitFor({ state: 'visible' });
    const empty = await text(page.locator('#tokens-table tbody'));
    await page.click('#token-create');
    await page.locator('#token-dialog').waitFor({ state: 'visible' });
    await page.fill('#token-name', 'ci-script');
    await page.selectOption('#token-expiry', '2592000');
    const adminScope = await page.locator('#scope-admin').isVisible();
    await page.click('#token-submit');
    await page.locator('#new-token').waitFor({ state: 'visible' });
    token = await text(page.locator('#new-token-value'));
    await page.click('#new-token-copy');
    await page.waitForFunction(() => document.getElementById('new-token-copy-status')?.textContent.trim() !== '');
    const copied = await page.evaluate(() => navigator.clipboard.readText().catch(() => null));
    const row = page.locator('#tokens-table tr[data-status="active"]').first();
    await row.waitFor();
    tokenId = await row.getAttribute('data-token-id');
    await shot(page, report, 'tokens');
    return {
      empty_state: empty,
      admin_scope_offered: adminScope,
      token_prefix: token.slice(0, 3),
      id: tokenId,
      copied: copied === token,
      copy_status: await text(page.locator('#new-token-copy-status')),
      warning: await text(page.locator('#new-token .warning')),
      status: await text(row.getByTestId('token-status')),
    };
  });

  await step('use_token', async () => ({ status: await bearer(token) }));

  await step('revoke_token', async () => {
    await page.click(`#tokens-table tr[data-token-id="${tokenId}"] button[data-action="revoke"]`);
    await page.locator('#confirm-dialog').waitFor({ state: 'visible' });
    const question = await text(page.locator('#confirm-title'));
    await page.click('#confirm-ok');
    const row = page.locator(`#tokens-table tr[data-token-id="${tokenId}"][data-status="revoked"]`);
    await row.waitFor();
    return { question, status: await text(row.getByTestId('token-status')), then: await bearer(token) };
  });
  await bob.context.close();
}

// --- part "account" ---------------------------------------------------------------

async function accountPart({ page, report }) {
  const step = stepper(report);

  await step('signin', async () => {
    // Signed out, sent to sign in on the way to /account: back there after.
    const whoami = await signIn(page, 'admin', opts.password, '/?next=%2Faccount');
    await page.locator('#view-account').waitFor({ state: 'visible' });
    return { whoami, url: page.url() };
  });

  await step('my_sessions', async () => {
    await page.locator('#my-sessions [data-testid="this-device"]').waitFor();
    const rows = page.locator('#my-sessions tr[data-session-id]');
    const before = await rows.count();
    // End one other session, then all the others.
    await page.locator('#my-sessions button[data-action="end"]').first().click();
    await page.locator('#confirm-dialog').waitFor({ state: 'visible' });
    await page.click('#confirm-ok');
    await page.waitForFunction((n) => document.querySelectorAll('#my-sessions tr[data-session-id]').length === n, before - 1);
    const afterOne = await rows.count();
    await page.click('#revoke-others');
    await page.locator('#confirm-dialog').waitFor({ state: 'visible' });
    await page.click('#confirm-ok');
    await page.waitForFunction(() => document.querySelectorAll('#my-sessions tr[data-session-id]').length === 1);
    return {
      before,
      after_one: afterOne,
      after_all: await rows.count(),
      left_is_this_device: await rows.first().getByTestId('this-device').isVisible(),
      revoke_others_disabled: await page.locator('#revoke-others').isDisabled(),
    };
  });

  await step('change_password', async () => {
    await menu(page, '#menu-account');
    await page.locator('#view-account').waitFor({ state: 'visible' });
    await page.waitForFunction(() => document.getElementById('profile-username')?.textContent === 'admin');
    await page.locator('#my-sessions [data-testid="this-device"]').waitFor();
    const attempt = async (current, next, confirm) => {
      await page.fill('#pw-current', current);
      await page.fill('#pw-new', next);
      await page.fill('#pw-confirm', confirm);
      await page.click('#pw-submit');
    };
    const errorText = async () => {
      await page.waitForFunction(() => document.getElementById('pw-error')?.textContent.trim() !== '');
      const t = await text(page.locator('#pw-error'));
      await page.evaluate(() => { document.getElementById('pw-error').textContent = ''; });
      return t;
    };
    await page.click('#change-password');
    await page.locator('#password-dialog').waitFor({ state: 'visible' });
    await attempt(opts.password, opts.new_password, `${opts.new_password}x`);
    const mismatch = await errorText();
    await attempt('not-my-password', opts.new_password, opts.new_password);
    const wrongCurrent = await errorText();
    await attempt(opts.password, 'short', 'short');
    const tooShort = await errorText();
    await attempt(opts.password, opts.new_password, opts.new_password);
    await page.locator('#password-dialog').waitFor({ state: 'hidden' });
    // This session stays signed in.
    await page.reload();
    await page.locator('#whoami').waitFor({ state: 'visible' });
    return { mismatch, wrong_current: wrongCurrent, too_short: tooShort, still_signed_in: await text(page.locator('#whoami')) };
  });

  await step('avatar', async () => {
    await page.locator('#profile-username').waitFor({ state: 'visible' });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-ui-'));
    const bad = path.join(dir, 'not-an-image.png');
    fs.writeFileSync(bad, 'this is text, not a PNG');
    await page.setInputFiles('#avatar-input', bad);
    await page.waitForFunction(() => document.getElementById('avatar-error')?.textContent.trim() !== '');
    const badError = await text(page.locator('#avatar-error'));
    const good = path.join(dir, 'avatar.png');
    fs.writeFileSync(good, png(64));
    await page.setInputFiles('#avatar-input', good);
    await page.waitForFunction(() => {
      const img = document.getElementById('avatar-img');
      return img && img.complete && img.naturalWidth > 0;
    });
    const header = await page.locator('#avatar-img').evaluate((img) => ({
      src: img.getAttribute('src'), natural_width: img.naturalWidth, visible: img.offsetWidth > 0,
    }));
    fs.rmSync(dir, { recursive: true, force: true });
    await shot(page, report, 'account');
    return { bad_file_error: badError, error_after: await text(page.locator('#avatar-error')), header };
  });

  await step('chat_stream', async () => {
    await page.click('#nav-chat');
    await page.locator('#view-chat').waitFor({ state: 'visible' });
    await page.locator('#chat-model option[value="oa/endless"]').waitFor({ state: 'attached' });
    // Every text the latest reply shows, to see it grow chunk by chunk.
    await page.evaluate(() => {
      window.replyTexts = [];
      new MutationObserver(() => {
        const replies = document.querySelectorAll('[data-testid="chat-message-assistant"] [data-testid="chat-reply"]');
        const t = replies[replies.length - 1]?.textContent ?? '';
        if (t && window.replyTexts.at(-1) !== t) window.replyTexts.push(t);
      }).observe(document.getElementById('chat-log'), { childList: true, subtree: true, characterData: true });
    });
    // A reply that never ends (a chunk every 50 ms): seen growing, then stopped.
    await page.selectOption('#chat-model', 'oa/endless');
    await page.fill('#chat-input', 'count for ever');
    await page.press('#chat-input', 'Enter');
    await page.locator('[data-testid="chat-message-assistant"][data-state="streaming"]').waitFor();
    await page.waitForFunction(() => window.replyTexts.length >= 4);
    const stopVisible = await page.locator('#chat-stop').isVisible();
    await page.click('#chat-stop');
    const stopped = page.locator('[data-testid="chat-message-assistant"][data-state="stopped"]');
    await stopped.waitFor();
    const out = {
      texts_seen: await page.evaluate(() => window.replyTexts.slice(0, 4)),
      stop_visible_while_streaming: stopVisible,
      stop_hidden_after: await page.locator('#chat-stop').isHidden(),
      note: await text(stopped.locator('.msg-note')),
    };
    // An upstream failure shows in the reply, sanitized.
    await page.selectOption('#chat-model', 'oa/fail-500');
    await page.fill('#chat-input', 'break please');
    await page.press('#chat-input', 'Enter');
    const failed = page.locator('[data-testid="chat-message-assistant"][data-state="error"]');
    await failed.waitFor();
    out.error = await text(failed.locator('.msg-error'));
    await page.click('#chat-new');
    out.messages_after_new_chat = await page.locator('#chat-log .msg').count();
    return out;
  });

  await step('chat', async () => {
    await page.selectOption('#chat-model', 'oa/m1');
    await page.fill('#chat-input', 'hello gatehouse');
    await page.press('#chat-input', 'Enter');
    const done = page.locator('[data-testid="chat-message-assistant"][data-state="done"]');
    await done.waitFor();
    const out = {
      reply: await text(done.getByTestId('chat-reply')),
      prompt: await text(page.getByTestId('chat-prompt').last()),
      input_cleared: (await page.inputValue('#chat-input')) === '',
    };
    await page.fill('#chat-input', 'and a second turn');
    await page.click('#chat-send');
    await page.locator('[data-testid="chat-message-assistant"][data-state="done"]').nth(1).waitFor();
    out.second_reply = await text(page.getByTestId('chat-reply').nth(1));
    await shot(page, report, 'chat');
    return out;
  });

  await step('usage', async () => {
    // Usage reaches the store in batches (every second here) and the panel
    // reads it once as it opens: wait until both chat turns are in it.
    await page.waitForFunction(async () => {
      const r = await fetch('/admin/api/usage?user=admin&model=oa/m1');
      const u = r.ok ? await r.json() : null;
      return (u?.totals?.requests ?? 0) >= 2;
    }, null, { timeout: 15000, polling: 250 });
    await menu(page, '#menu-usage');
    await page.locator('#panel-usage').waitFor({ state: 'visible' });
    const row = page.locator('#usage-table tr[data-user="admin"][data-model="oa/m1"]');
    await row.waitFor();
    const cells = await row.locator('td').allTextContents();
    const bars = await page.locator('#usage-chart g.bar').evaluateAll((gs) => gs.map((g) => ({
      requests: Number(g.dataset.requests), title: g.querySelector('title')?.textContent ?? '',
    })));
    const out = {
      url: page.url(),
      cells,
      totals: await page.getByTestId('usage-totals').locator('td').allTextContents(),
      bars: bars.length,
      requests_in_chart: bars.reduce((n, b) => n + b.requests, 0),
      busy_bar_title: bars.find((b) => b.requests > 0)?.title ?? null,
    };
    // The stats, the chart and the table in one view.
    await page.evaluate(() => {
      const panel = document.getElementById('panel-usage');
      window.scrollTo(0, panel.getBoundingClientRect().top + window.scrollY - 72);
    });
    await shot(page, report, 'admin-usage');
    await page.selectOption('#usage-range', '30d');
    await page.waitForFunction(() => document.getElementById('usage-chart-note')?.textContent.includes('day'));
    out.bars_30d = await page.locator('#usage-chart g.bar').count();
    return out;
  });

  await step('narrow', async () => {
    // A phone-sized window: nothing wider than it, tables stacked.
    await page.setViewportSize({ width: 400, height: 760 });
    const out = {};
    for (const [name, item, ready] of [
      ['admin-users', '#menu-users', '#users-table tr[data-username="bob"]'],
      ['tokens', '#menu-tokens', '#tokens-table tr[data-token-id]'],
      ['account', '#menu-account', '#my-sessions tr[data-session-id]'],
    ]) {
      await menu(page, item);
      await page.locator(ready).first().waitFor({ state: 'visible' });
      out[name] = await page.evaluate(() => document.documentElement.scrollWidth);
      await shot(page, report, `narrow-${name}`);
    }
    await page.setViewportSize({ width: 1000, height: 700 });
    return { scroll_widths: out };
  });

  await step('sign_out', async () => {
    await menu(page, '#logout');
    await page.locator('#login-form').waitFor({ state: 'visible' });
    const session = await page.evaluate(() => fetch('/auth/session').then((r) => r.status));
    return { url: page.url(), topbar_hidden: await page.locator('#topbar').isHidden(), session_status: session };
  });
}

// --- part "tasks" -------------------------------------------------------------------

async function tasksPart({ page, report }) {
  const step = stepper(report);
  let id;

  await step('signin', async () => {
    const whoami = await signIn(page, 'admin', opts.password, '/?next=%2Ftasks');
    await page.locator('#view-tasks').waitFor({ state: 'visible' });
    return {
      whoami,
      url: page.url(),
      nav_current: await page.locator('#nav-tasks').getAttribute('aria-current'),
      all_toggle: await page.locator('#tasks-all').isVisible(),
      empty_state: await text(page.locator('#tasks-table tbody')),
    };
  });

  await step('create_task', async () => {
    await page.click('#task-create');
    await page.locator('#task-dialog').waitFor({ state: 'visible' });
    await page.locator('#task-model option[value="oa/m1"]').waitFor({ state: 'attached' });
    await page.selectOption('#task-model', 'oa/m1');
    await page.fill('#task-prompt', 'summarise the quarter');
    await page.check('#task-approval');
    await page.click('#task-submit');
    await page.locator('#task-dialog').waitFor({ state: 'hidden' });
    const row = page.locator('#tasks-table tr[data-task-id]').first();
    await row.waitFor();
    id = await row.getAttribute('data-task-id');
    await page.locator('#task-detail[data-status="pending_approval"]').waitFor();
    return {
      id,
      status: await row.getAttribute('data-status'),
      badge: await text(row.getByTestId('task-status')),
      model: await text(row.locator('td').nth(2)),
      kind: await text(row.locator('td').nth(1)),
      detail_id: await text(page.locator('#task-detail-id')),
      detail_status: await page.locator('#task-detail').getAttribute('data-status'),
      buttons: await row.locator('button[data-action]').evaluateAll((bs) => bs.map((b) => b.dataset.action)),
    };
  });

  await step('approve_task', async () => {
    const row = page.locator(`#tasks-table tr[data-task-id="${id}"]`);
    await row.locator('button[data-action="approve"]').click();
    await page.locator('#task-detail[data-status="succeeded"]').waitFor();
    await page.locator('#task-detail[data-stream-ended="true"]').waitFor();
    await page.locator(`#tasks-table tr[data-task-id="${id}"][data-status="succeeded"]`).waitFor();
    const out = {
      output: await text(page.getByTestId('task-output')),
      result: await text(page.getByTestId('task-result-text')),
      events: await page.locator('#task-events li[data-kind="status"]').allTextContents(),
      row_status: await text(row.getByTestId('task-status')),
      row_buttons: await row.locator('button[data-action]').count(),
      error_hidden: await page.getByTestId('task-error').isHidden(),
    };
    await shot(page, report, 'tasks');
    fs.mkdirSync('docs', { recursive: true });
    fs.copyFileSync(`${SHOTS}/ui-tasks.png`, 'docs/ui-tasks.png');
    return out;
  });

  await step('cancel_and_retry', async () => {
    await page.click('#task-create');
    await page.locator('#task-dialog').waitFor({ state: 'visible' });
    await page.locator('#task-model option[value="oa/m1"]').waitFor({ state: 'attached' });
    await page.selectOption('#task-model', 'oa/m1');
    await page.fill('#task-prompt', 'second thoughts');
    await page.check('#task-approval');
    await page.click('#task-submit');
    await page.locator('#task-dialog').waitFor({ state: 'hidden' });
    const row = page.locator(`#tasks-table tr[data-task-id]:not([data-task-id="${id}"])`).first();
    await row.waitFor();
    const second = await row.getAttribute('data-task-id');
    const at = (status) => page.locator(`#tasks-table tr[data-task-id="${second}"][data-status="${status}"]`);
    await at('pending_approval').waitFor();
    await at('pending_approval').locator('button[data-action="cancel"]').click();
    await page.locator('#confirm-dialog').waitFor({ state: 'visible' });
    const question = await text(page.locator('#confirm-title'));
    await page.click('#confirm-ok');
    await at('cancelled').waitFor();
    await page.locator('#task-detail[data-status="cancelled"]').waitFor();
    await at('cancelled').locator('button[data-action="retry"]').click();
    await at('succeeded').waitFor();
    await page.locator('#task-detail[data-status="succeeded"][data-stream-ended="true"]').waitFor();
    return { id: second, question, output: await text(page.getByTestId('task-output')) };
  });
}

// --- part "providers" -----------------------------------------------------------------

async function providersPart({ page, report }) {
  const step = stepper(report);
  const row = (name) => page.locator(`#providers-table tr[data-provider="${name}"]`);

  await step('signin', async () => {
    const whoami = await signIn(page, 'admin', opts.password, '/?next=%2Fadmin%3Ftab%3Dproviders');
    await page.locator('#panel-providers').waitFor({ state: 'visible' });
    await row('oa').waitFor();
    return {
      whoami,
      url: page.url(),
      tab_selected: await page.locator('#tab-providers').getAttribute('aria-selected'),
      names: await page.locator('#providers-table tr[data-provider]').evaluateAll((rs) => rs.map((r) => r.dataset.provider)),
      oa_source: await text(row('oa').getByTestId('provider-source')),
      oa_profiles: await row('oa').locator('[data-testid="profile-state"]').allTextContents(),
    };
  });

  await step('add_provider', async () => {
    await page.click('#provider-add');
    await page.locator('#provider-dialog').waitFor({ state: 'visible' });
    await page.fill('#provider-name', 'lab');
    await page.selectOption('#provider-type', 'openai');
    await page.fill('#provider-url', opts.upstream);
    await page.fill('#provider-models', 'm1');
    // Loopback without "local": the API's 422 egress_denied, in the dialog.
    await page.click('#provider-submit');
    await page.waitForFunction(() => document.getElementById('provider-error')?.textContent.trim() !== '');
    const refused = await text(page.locator('#provider-error'));
    await page.check('#provider-local');
    await page.click('#provider-submit');
    await page.locator('#provider-dialog').waitFor({ state: 'hidden' });
    await row('lab').waitFor();
    const r = row('lab');
    return {
      refused,
      cells: await r.locator('td').evaluateAll((tds) => tds.slice(0, 3).map((td) => (td.querySelector('.cell-main') ?? td).textContent.trim())),
      local_label: await text(r.locator('td .cell-sub')),
      source: await text(r.getByTestId('provider-source')),
      models: await text(r.getByTestId('provider-models')),
      profiles: await text(r.getByTestId('provider-profiles')),
      remove_enabled: await r.locator('button[data-action="remove"]').isEnabled(),
    };
  });

  await step('edit_provider', async () => {
    await row('lab').locator('button[data-action="edit"]').click();
    await page.locator('#provider-dialog').waitFor({ state: 'visible' });
    const out = {
      title: await text(page.locator('#provider-title')),
      name_readonly: await page.locator('#provider-name').evaluate((i) => i.readOnly),
      url: await page.inputValue('#provider-url'),
      local: await page.isChecked('#provider-local'),
    };
    await page.fill('#provider-models', 'm1, m2');
    await page.click('#provider-submit');
    await page.locator('#provider-dialog').waitFor({ state: 'hidden' });
    await page.waitForFunction(() => document.querySelector('#providers-table tr[data-provider="lab"] [data-testid="provider-models"]')?.textContent === '2');
    out.models = await text(row('lab').getByTestId('provider-models'));
    out.models_title = await row('lab').getByTestId('provider-models').getAttribute('title');
    return out;
  });

  await step('add_profile', async () => {
    await row('lab').locator('button[data-action="add-profile"]').click();
    await page.locator('#profile-dialog').waitFor({ state: 'visible' });
    const keyType = await page.locator('#profile-key').getAttribute('type');
    await page.fill('#profile-name', 'main');
    await page.fill('#profile-key', opts.key);
    await page.fill('#profile-order', '0');
    await page.click('#profile-submit');
    await page.locator('#profile-dialog').waitFor({ state: 'hidden' });
    const state = row('lab').locator('li[data-profile="main"] [data-testid="profile-state"]');
    await state.waitFor();
    return {
      key_input_type: keyType,
      key_after: await page.inputValue('#profile-key'),
      state: await text(state),
      profile: await text(row('lab').locator('li[data-profile="main"]')),
      offered: await text(row('lab').getByTestId('provider-offered')),
      key_in_page: await page.evaluate((k) => document.documentElement.outerHTML.includes(k)
        || [...document.querySelectorAll('input')].some((i) => i.value.includes(k)), opts.key),
    };
  });

  await step('test_provider', async () => {
    await row('lab').locator('button[data-action="test"]').click();
    const result = page.locator('#providers-table tr[data-test-for="lab"] [data-testid="provider-test"][data-state="ok"]');
    await result.waitFor();
    const out = {
      models: await result.getByTestId('provider-test-models').locator('.badge').allTextContents(),
      ms: await text(result.getByTestId('provider-test-ms')),
      text: await text(result),
    };
    await page.evaluate(() => { document.querySelector('#panel-providers .table-wrap').scrollLeft = 0; });
    out.table_overflows = await page.evaluate(() => {
      const w = document.querySelector('#panel-providers .table-wrap');
      return w.scrollWidth > w.clientWidth;
    });
    await shot(page, report, 'admin-providers');
    fs.mkdirSync('docs', { recursive: true });
    fs.copyFileSync(`${SHOTS}/ui-admin-providers.png`, 'docs/ui-providers.png');
    return out;
  });

  await step('config_provider', async () => {
    const remove = row('oa').locator('button[data-action="remove"]');
    // What the API says when asked anyway (with this page's session).
    const answer = await page.evaluate(async () => {
      const res = await fetch('/admin/api/providers/oa', { method: 'DELETE', headers: { accept: 'application/json' } });
      return { status: res.status, body: await res.json() };
    });
    return {
      remove_disabled: await remove.isDisabled(),
      remove_title: await remove.getAttribute('title'),
      edit_disabled: await row('oa').locator('button[data-action="edit"]').isDisabled(),
      api_status: answer.status,
      api_code: answer.body?.error?.code ?? null,
      still_listed: await row('oa').count(),
    };
  });

  await step('remove_provider', async () => {
    await row('lab').locator('button[data-action="remove"]').click();
    await page.locator('#confirm-dialog').waitFor({ state: 'visible' });
    const question = await text(page.locator('#confirm-title'));
    await page.click('#confirm-ok');
    await row('lab').waitFor({ state: 'detached' });
    return {
      question,
      names: await page.locator('#providers-table tr[data-provider]').evaluateAll((rs) => rs.map((r) => r.dataset.provider)),
      test_row: await page.locator('#providers-table tr[data-test-for="lab"]').count(),
      error_hidden: await page.locator('#providers-error').isHidden(),
    };
  });
}

const parts = { admin: adminPart, account: accountPart, tasks: tasksPart, providers: providersPart };
if (!parts[opts.part]) throw new Error(`unknown part ${opts.part}`);
await run(opts, parts[opts.part]);

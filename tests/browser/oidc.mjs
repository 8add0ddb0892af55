// Sign in with an OpenID provider in a real browser: the gateway's sign-in
// page, its "Sign in with NAME" link, the provider's (oidc-provider dev)
// login form, the callback, and the signed-in or "Sign-in failed" page.
//
//   node tests/browser/oidc.mjs '{"base":"http://127.0.0.1:PORT","provider":"corp",
//        "issuer":"http://127.0.0.1:OP","login":"alice@example.com",
//        "shot":"target/browser-shots/x.png"}'
//   optional: "nonce": "attacker-chosen"  rewrites the nonce of the request to
//             the provider's authorization endpoint on its way (DevTools Fetch
//             interception, see below).
//
// Report (besides lib.mjs's): whoami | failed + error_code, nonce_rewritten
// (how many authorization requests were rewritten), session {…}.

import { args, run, clickSignIn, outcome, sessionCookie } from './lib.mjs';

const opts = args();
await run(opts, async ({ page, context, report }) => {
  const issuer = new URL(opts.issuer);
  if (opts.nonce !== undefined) {
    // The browser reaches the authorization endpoint through the gateway's
    // 302, and page.route() never sees redirect hops (playwright continues
    // them unrouted), so intercept with the DevTools Fetch domain itself: it
    // pauses the redirected request too, and its URL is rewritten before the
    // request leaves the browser.
    report.nonce_rewritten = 0;
    const cdp = await context.newCDPSession(page);
    cdp.on('Fetch.requestPaused', async (event) => {
      const url = new URL(event.request.url);
      const params = { requestId: event.requestId };
      if (url.origin === issuer.origin && url.pathname === '/auth' && url.searchParams.has('nonce')) {
        url.searchParams.set('nonce', opts.nonce);
        params.url = url.toString();
        report.nonce_rewritten += 1;
      }
      await cdp.send('Fetch.continueRequest', params).catch(() => {});
    });
    await cdp.send('Fetch.enable', { patterns: [{ urlPattern: `${issuer.origin}/auth?*`, requestStage: 'Request' }] });
  }
  await clickSignIn(page, opts.base, `a.signin-oidc[data-provider="${opts.provider}"]`);
  // The provider's development login form (any login, any password).
  const login = page.locator('input[name="login"]');
  await login.waitFor({ state: 'visible' });
  report.login_form_url = page.url();
  await login.fill(opts.login);
  await page.locator('input[name="password"]').fill('any-password');
  await page.locator('button[type="submit"]').click();
  await outcome(page, report);
  report.session = await sessionCookie(page, context, opts.base);
});

// Sign in with GitHub in a real browser: the gateway's sign-in page, its
// "Sign in with GitHub" link, the (fake) GitHub authorize endpoint that
// redirects straight back, the callback, and the signed-in page.
//
//   node tests/browser/github.mjs '{"base":"http://127.0.0.1:PORT","shot":"target/browser-shots/x.png"}'
//
// Report (besides lib.mjs's): whoami | failed + error_code, session
// {cookie, document_cookie, visible_to_js}.

import { args, run, clickSignIn, outcome, sessionCookie } from './lib.mjs';

const opts = args();
await run(opts, async ({ page, context, report }) => {
  await clickSignIn(page, opts.base, '#signin-github');
  await outcome(page, report);
  report.session = await sessionCookie(page, context, opts.base);
});

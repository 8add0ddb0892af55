// A real OpenID provider (npm `oidc-provider` v9) for Gatehouse's black-box tests.
//
//   node tests/oidc/provider.mjs --port N --keys-seed S [--jwt-alg ES256|RS256] [--ttl SECONDS]
//                                [--rp-url URL] [--tamper-id-token] [--exit-with-stdin]
//
// Listens on http://127.0.0.1:N (N = 0 picks a free port) with issuer exactly
// `http://127.0.0.1:N` (no trailing slash), then prints one line on stdout:
//
//   ready http://127.0.0.1:N
//
// Endpoints served (ISSUER = http://127.0.0.1:N):
//   GET  ISSUER/.well-known/openid-configuration   discovery document
//   GET  ISSUER/jwks                                public signing keys (jwks_uri)
//   POST ISSUER/token                               token endpoint (grant_type=client_credentials)
//   POST ISSUER/token/introspection                 RFC 7662 introspection (introspection_endpoint)
//   (the other standard oidc-provider routes exist too, e.g. /me; with --rp-url the
//    sign-in routes below are used as well)
//
// Signing keys: fresh at every start (crypto.generateKeyPairSync): RSA 2048
// (RS256, kid `${seed}-rsa`) and P-256 (ES256, kid `${seed}-ec`). Restarting
// with another seed is a key rotation at the provider.
//
// Clients (all confidential, client_credentials only where they get tokens):
//   gatehouse-test      / test-client-secret   client_secret_basic  client_credentials
//   gatehouse-test-post / test-client-secret   client_secret_post   client_credentials
//   introspector        / introspector-secret  client_secret_basic  (introspection only)
//   introspector-post   / introspector-secret  client_secret_post   (introspection only)
// (oidc-provider allows exactly one token_endpoint_auth_method per client,
//  hence the pairs.)
//
// Resources (RFC 8707 `resource` parameter; default when none is sent: urn:gatehouse):
//   urn:gatehouse  JWT access tokens (typ at+jwt), aud "gatehouse", scopes "read write admin",
//                  signed ES256 by default (RS256 with --jwt-alg RS256)
//   urn:opaque     opaque access tokens (check them at the introspection endpoint),
//                  aud "gatehouse", scopes "read write admin"
//
// Extra claims for tokens of gatehouse-test / gatehouse-test-post:
//   groups: ["ml", "eng"], team: "ml"  (in the JWT payload, and in the introspection
//   response of opaque tokens). Every token also gets sub = client id in its
//   introspection response (JWTs have it anyway).
//
// Access token TTL: 600 s (--ttl SECONDS).
//
// --rp-url URL (the gateway's base URL, e.g. http://127.0.0.1:4567; a trailing
// slash is ignored) adds authorization-code sign-in and logout for one web client:
//   gatehouse-web / web-client-secret  client_secret_basic  authorization_code, response_type code
//     redirect_uris            RP/auth/oidc/corp/callback, RP/auth/oidc/other/callback
//     backchannel_logout_uri   RP/auth/oidc/corp/backchannel-logout (session required: sid)
//     post_logout_redirect_uris RP/
//     PKCE (S256) required; ID tokens and logout tokens signed RS256
//   Routes: GET ISSUER/auth (authorization_endpoint), GET ISSUER/interaction/UID (the
//   built-in dev login form: any login, any password), POST ISSUER/token
//   (grant_type=authorization_code), GET ISSUER/me (userinfo), GET|POST
//   ISSUER/session/end (end_session_endpoint, confirm form -> POST
//   ISSUER/session/end/confirm with xsrf and logout=yes). Consent is automatic
//   for gatehouse-web (every requested scope and claim is granted), so a sign-in is
//   authorize -> login form -> 303 to the redirect_uri with code, state and iss.
//   Scopes: openid email profile groups (offline_access is not offered to this client).
//   Account of any login L: sub L; email L if it contains `@`, else L@example.com;
//   email_verified true unless L starts with `unverified`; name `Name of L`;
//   preferred_username the part of L before `@`; groups ["ml"] if L contains `ml`,
//   else ["web"]. Those claims (per granted scope) are in the ID token itself
//   (conformIdTokenClaims: false), besides iss, aud gatehouse-web, iat, exp (+1 h),
//   nonce and sid (no auth_time, no at_hash).
//   Ending the session (end_session with logout=yes) POSTs a back-channel logout
//   token (header typ logout+jwt, RS256; claims iss, aud gatehouse-web, sub, sid,
//   jti, iat, exp (+2 min), events
//   {"http://schemas.openid.net/event/backchannel-logout": {}}, no nonce) as the form field
//   logout_token to the backchannel_logout_uri and waits for the answer (2.5 s
//   at most; failures are written on stderr) before it answers the browser.
//   Loopback RP URLs are allowed (the SSRF guard of oidc-provider's fetch is off).
//   Cookies are named op<PORT>_session, op<PORT>_interaction, op<PORT>_interaction_resume
//   so that one cookie jar can hold the cookies of several providers on 127.0.0.1.
//
// --tamper-id-token (for the RP's negative tests): every token endpoint answer
// that carries an `id_token` gets it altered in transit: its payload is
// re-encoded with `email` changed to `admin@example.com` (and
// `preferred_username` to `admin`), the header and signature kept as they
// were, so the signature no longer verifies. Each time, it writes the line
// `tamper-id-token: altered …` on stderr. Everything else is unchanged.
//
// Quiet: oidc-provider's notices/warnings and request errors are dropped
// unless OIDC_PROVIDER_LOG=1. SIGTERM/SIGINT close the server and exit 0.
// With --exit-with-stdin the process also exits when its stdin closes (the
// test harness keeps a pipe open, so a killed test run leaves no provider behind).

import * as crypto from 'node:crypto';
import * as http from 'node:http';
import { parseArgs } from 'node:util';

const verbose = process.env.OIDC_PROVIDER_LOG === '1';
if (!verbose) {
  // oidc-provider prints development notices with console.info (stdout) and
  // console.warn; keep stdout for the `ready` line only.
  console.info = () => {};
  console.warn = () => {};
  console.log = () => {};
}

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    'keys-seed': { type: 'string', default: 'test' },
    'jwt-alg': { type: 'string', default: 'ES256' },
    ttl: { type: 'string', default: '600' },
    'rp-url': { type: 'string' },
    'tamper-id-token': { type: 'boolean', default: false },
    'exit-with-stdin': { type: 'boolean', default: false },
  },
  strict: true,
});

const port = Number.parseInt(args.port, 10);
const seed = args['keys-seed'];
const jwtAlg = args['jwt-alg'];
const ttl = Number.parseInt(args.ttl, 10);
if (!Number.isInteger(port) || port < 0 || port > 65535) die(`bad --port ${args.port}`);
if (!['ES256', 'RS256'].includes(jwtAlg)) die(`--jwt-alg must be ES256 or RS256, not ${jwtAlg}`);
if (!Number.isInteger(ttl) || ttl <= 0) die(`bad --ttl ${args.ttl}`);
let rpUrl;
if (args['rp-url'] !== undefined) {
  let parsed;
  try {
    parsed = new URL(args['rp-url']);
  } catch {
    die(`bad --rp-url ${args['rp-url']}`);
  }
  if (!['http:', 'https:'].includes(parsed.protocol)) die(`--rp-url must be http(s), not ${args['rp-url']}`);
  rpUrl = args['rp-url'].replace(/\/+$/, '');
}

function die(msg) {
  process.stderr.write(`provider.mjs: ${msg}\n`);
  process.exit(2);
}

// Dynamic import so that the console is quiet before the module loads.
const { default: Provider, errors } = await import('oidc-provider');

function privateJwk(type, options, kid, alg) {
  const { privateKey } = crypto.generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: 'jwk' }), kid, alg, use: 'sig' };
}

const keys = [
  privateJwk('ec', { namedCurve: 'P-256' }, `${seed}-ec`, 'ES256'),
  privateJwk('rsa', { modulusLength: 2048 }, `${seed}-rsa`, 'RS256'),
];

const SCOPES = 'read write admin';
const AUDIENCE = 'gatehouse';
const RESOURCES = {
  'urn:gatehouse': {
    scope: SCOPES,
    audience: AUDIENCE,
    accessTokenTTL: ttl,
    accessTokenFormat: 'jwt',
    jwt: { sign: { alg: jwtAlg } },
  },
  'urn:opaque': {
    scope: SCOPES,
    audience: AUDIENCE,
    accessTokenTTL: ttl,
    accessTokenFormat: 'opaque',
  },
};
const CLAIMED_CLIENTS = new Set(['gatehouse-test', 'gatehouse-test-post']);

const tokenClient = (client_id, method) => ({
  client_id,
  client_secret: 'test-client-secret',
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  token_endpoint_auth_method: method,
});
const introspectorClient = (client_id, method) => ({
  client_id,
  client_secret: 'introspector-secret',
  grant_types: [],
  response_types: [],
  redirect_uris: [],
  token_endpoint_auth_method: method,
});

// --- sign-in for the gateway (--rp-url) ---------------------------------------
const WEB_CLIENT = 'gatehouse-web';
const webClient = (rp) => ({
  client_id: WEB_CLIENT,
  client_secret: 'web-client-secret',
  token_endpoint_auth_method: 'client_secret_basic',
  grant_types: ['authorization_code'],
  response_types: ['code'],
  redirect_uris: [`${rp}/auth/oidc/corp/callback`, `${rp}/auth/oidc/other/callback`],
  backchannel_logout_uri: `${rp}/auth/oidc/corp/backchannel-logout`,
  backchannel_logout_session_required: true,
  post_logout_redirect_uris: [`${rp}/`],
});

// Any login is an account; its claims derive from the login text.
function accountClaims(login) {
  return {
    sub: login,
    email: login.includes('@') ? login : `${login}@example.com`,
    email_verified: !login.startsWith('unverified'),
    name: `Name of ${login}`,
    preferred_username: login.split('@')[0],
    groups: login.includes('ml') ? ['ml'] : ['web'],
  };
}

async function findAccount(_ctx, id) {
  return {
    accountId: id,
    // oidc-provider keeps only the claims of the granted scopes/claims.
    claims: async () => accountClaims(id),
  };
}

// No consent screen for gatehouse-web: its grant always covers every requested
// OpenID scope and claim. Other clients keep the default behaviour.
async function loadExistingGrant(ctx) {
  const { client, session, provider } = ctx.oidc;
  const grantId = ctx.oidc.result?.consent?.grantId || session.grantIdFor(client.clientId);
  let grant = grantId ? await provider.Grant.find(grantId) : undefined;
  if (client.clientId !== WEB_CLIENT || !session.accountId) return grant;
  if (!grant || grant.accountId !== session.accountId) {
    grant = new provider.Grant({ accountId: session.accountId, clientId: client.clientId });
  }
  const scopes = [...ctx.oidc.requestParamOIDCScopes];
  if (scopes.length) grant.addOIDCScope(scopes.join(' '));
  const claims = [...ctx.oidc.requestParamClaims];
  if (claims.length) grant.addOIDCClaims(claims);
  await grant.save();
  return grant;
}

const signIn = rpUrl !== undefined;

const configuration = {
  clients: [
    tokenClient('gatehouse-test', 'client_secret_basic'),
    tokenClient('gatehouse-test-post', 'client_secret_post'),
    introspectorClient('introspector', 'client_secret_basic'),
    introspectorClient('introspector-post', 'client_secret_post'),
    ...(signIn ? [webClient(rpUrl)] : []),
  ],
  ...(signIn ? {
    findAccount,
    loadExistingGrant,
    scopes: ['openid', 'email', 'profile', 'groups'],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
      groups: ['groups'],
    },
    conformIdTokenClaims: false,
    pkce: {
      required: (_ctx, client) => client.clientId === WEB_CLIENT || client.clientAuthMethod === 'none',
    },
    // The RP is on loopback: bypass the SSRF guard (special-use IPs) that
    // oidc-provider puts on its outgoing requests (back-channel logout).
    fetch: (url, options) => {
      const { dispatcher: _guarded, ...rest } = options;
      return globalThis.fetch(url, rest);
    },
  } : {}),
  jwks: { keys },
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  features: {
    devInteractions: { enabled: signIn },
    backchannelLogout: { enabled: signIn },
    rpInitiatedLogout: { enabled: signIn },
    clientCredentials: { enabled: true },
    introspection: {
      enabled: true,
      // Any authenticated client may introspect any token.
      allowedPolicy: async () => true,
    },
    revocation: { enabled: true, allowedPolicy: async () => true },
    resourceIndicators: {
      enabled: true,
      // Sign-in at the web client gets the usual userinfo access token unless
      // it asks for a resource.
      defaultResource: async (_ctx, client, oneOf) => (
        client?.clientId === WEB_CLIENT ? oneOf : 'urn:gatehouse'
      ),
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, resourceIndicator) => {
        const info = RESOURCES[resourceIndicator];
        if (!info) throw new errors.InvalidTarget(`unknown resource ${resourceIndicator}`);
        return info;
      },
    },
  },
  // Stored with the token: in the JWT payload, and merged into introspection
  // responses of opaque tokens. `sub` (the client id, as in the JWTs) is added
  // so that introspection reports a subject for client_credentials tokens too.
  extraTokenClaims: async (_ctx, token) => (
    CLAIMED_CLIENTS.has(token.clientId)
      ? { sub: token.clientId, groups: ['ml', 'eng'], team: 'ml' }
      : { sub: token.clientId }
  ),
  ttl: {
    AccessToken: ttl,
    ClientCredentials: ttl,
  },
};

const server = http.createServer();
server.listen(port, '127.0.0.1', () => {
  const boundPort = server.address().port;
  const issuer = `http://127.0.0.1:${boundPort}`;
  // Cookies are per host, not per port: name them after the port so several
  // providers on 127.0.0.1 can share one browser cookie jar.
  configuration.cookies.names = {
    session: `op${boundPort}_session`,
    interaction: `op${boundPort}_interaction`,
    resume: `op${boundPort}_interaction_resume`,
  };
  const provider = new Provider(issuer, configuration);
  // A failed back-channel logout is worth seeing in the test's provider log.
  provider.on('backchannel.error', (_ctx, err, client, accountId, sid) => process.stderr.write(
    `backchannel.error: ${client.clientId} sub=${accountId} sid=${sid}: ${err.message}${err.cause ? ` (${err.cause.message ?? err.cause})` : ''}\n`,
  ));
  if (!verbose) {
    // Koa logs unexpected errors itself; silence it.
    provider.silent = true;
  } else {
    provider.on('server_error', (_ctx, err) => process.stderr.write(`server_error: ${err.stack}\n`));
    provider.on('grant.error', (_ctx, err) => process.stderr.write(`grant.error: ${err}\n`));
    provider.on('introspection.error', (_ctx, err) => process.stderr.write(`introspection.error: ${err}\n`));
  }
  if (args['tamper-id-token']) provider.use(tamperIdToken);
  server.on('request', provider.callback());
  process.stdout.write(`ready ${issuer}\n`);
});
server.on('error', (err) => die(`cannot listen on 127.0.0.1:${port}: ${err.message}`));

// Koa middleware (--tamper-id-token): after the token endpoint has answered,
// swap the ID token's payload for an altered one, keeping its signature.
async function tamperIdToken(ctx, next) {
  await next();
  if (ctx.method !== 'POST' || ctx.path !== '/token' || ctx.status !== 200) return;
  const original = ctx.body;
  let body;
  if (original && typeof original === 'object' && !Buffer.isBuffer(original) && typeof original.pipe !== 'function') {
    body = { ...original };
  } else if (typeof original === 'string' || Buffer.isBuffer(original)) {
    try {
      body = JSON.parse(original.toString());
    } catch {
      return;
    }
  } else {
    return;
  }
  if (typeof body?.id_token !== 'string') return;
  const [header, payload, signature] = body.id_token.split('.');
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
  claims.email = 'admin@example.com';
  claims.preferred_username = 'admin';
  const altered = Buffer.from(JSON.stringify(claims)).toString('base64url');
  body.id_token = `${header}.${altered}.${signature}`;
  ctx.body = typeof original === 'object' && !Buffer.isBuffer(original) ? body : JSON.stringify(body);
  ctx.type = 'application/json; charset=utf-8';
  process.stderr.write('tamper-id-token: altered the id_token payload of a token response\n');
}

function shutdown() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
if (args['exit-with-stdin']) {
  process.stdin.on('end', shutdown);
  process.stdin.on('error', shutdown);
  process.stdin.resume();
}

// A real OpenID provider (npm `oidc-provider` v9) for Gatehouse's black-box tests.
//
//   node tests/oidc/provider.mjs --port N --keys-seed S [--jwt-alg ES256|RS256] [--ttl SECONDS]
//                                [--exit-with-stdin]
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
//   (the other standard oidc-provider routes exist too, e.g. /auth, /me, /session/end,
//    but the tests don't use them)
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

const configuration = {
  clients: [
    tokenClient('gatehouse-test', 'client_secret_basic'),
    tokenClient('gatehouse-test-post', 'client_secret_post'),
    introspectorClient('introspector', 'client_secret_basic'),
    introspectorClient('introspector-post', 'client_secret_post'),
  ],
  jwks: { keys },
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: {
      enabled: true,
      // Any authenticated client may introspect any token.
      allowedPolicy: async () => true,
    },
    revocation: { enabled: true, allowedPolicy: async () => true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => 'urn:gatehouse',
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
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, configuration);
  if (!verbose) {
    // Koa logs unexpected errors itself; silence it.
    provider.silent = true;
  } else {
    provider.on('server_error', (_ctx, err) => process.stderr.write(`server_error: ${err.stack}\n`));
    provider.on('grant.error', (_ctx, err) => process.stderr.write(`grant.error: ${err}\n`));
    provider.on('introspection.error', (_ctx, err) => process.stderr.write(`introspection.error: ${err}\n`));
  }
  server.on('request', provider.callback());
  process.stdout.write(`ready ${issuer}\n`);
});
server.on('error', (err) => die(`cannot listen on 127.0.0.1:${port}: ${err.message}`));

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

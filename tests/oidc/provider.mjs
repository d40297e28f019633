#!/usr/bin/env node
// Loopback OpenID Provider for Clarity's OIDC resource-server tests.
//
//   node tests/oidc/provider.mjs --port PORT --keys KEYFILE
//        [--backchannel-logout-uri URL] [--jwks-delay-ms N]
//
// A real `oidc-provider` instance (the npm package, pinned in package.json)
// with a fixed set of test accounts and clients. It is test scaffolding only:
// in-memory storage, the package's built-in development login/consent pages,
// well-known client secrets, and plain http on 127.0.0.1.
//
// Contract with the test that starts it:
//   * issuer is exactly `http://127.0.0.1:PORT` (no trailing slash); the server
//     binds 127.0.0.1 only. `--port 0` picks a free port; the issuer then
//     carries the port that was actually bound.
//   * stdout carries exactly one line, `READY <issuer>`, once it is listening.
//     Everything else (oidc-provider's notices, errors, back-channel results)
//     goes to stderr.
//   * SIGTERM / SIGINT close the server and exit 0.
//   * Access tokens are JWTs (`typ: at+jwt`) with `aud: "clarity"`, signed by
//     the FIRST key of KEYFILE; ID tokens and logout tokens use the same key.
//
// See README.md in this directory for the key-file format and the accounts.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

// oidc-provider prints some notices with console.info (i.e. to stdout). The
// starting test reads stdout for the READY line only, so send all of that to
// stderr instead.
console.log = (...args) => console.error(...args);
console.info = (...args) => console.error(...args);

// ---------------------------------------------------------------------------
// Command line

function usage(message) {
  if (message) console.error(`provider.mjs: ${message}`);
  console.error('usage: node provider.mjs --port PORT --keys KEYFILE '
    + '[--backchannel-logout-uri URL] [--jwks-delay-ms N]');
  process.exit(2);
}

let args;
try {
  ({ values: args } = parseArgs({
    options: {
      port: { type: 'string' },
      keys: { type: 'string' },
      'backchannel-logout-uri': { type: 'string' },
      'jwks-delay-ms': { type: 'string', default: '0' },
    },
    strict: true,
    allowPositionals: false,
  }));
} catch (err) {
  usage(err.message);
}

if (args.port === undefined || !/^\d+$/.test(args.port) || Number(args.port) > 65535) {
  usage('--port must be an integer 0..65535');
}
if (!args.keys) usage('--keys is required');
if (!/^\d+$/.test(args['jwks-delay-ms'])) usage('--jwks-delay-ms must be a non-negative integer');
const jwksDelayMs = Number(args['jwks-delay-ms']);
const backchannelLogoutUri = args['backchannel-logout-uri'];
if (backchannelLogoutUri !== undefined && !URL.canParse(backchannelLogoutUri)) {
  usage('--backchannel-logout-uri must be an absolute URL');
}

// ---------------------------------------------------------------------------
// Signing keys
//
// KEYFILE layout (written when the file does not exist yet):
//   {
//     "keys":       [ private JWK, ... ],        // each with kid, alg, use:"sig"
//     "pem":        { "<kid>": "<PKCS#8 private key PEM>", ... },
//     "public_pem": { "<kid>": "<SPKI public key PEM>", ... }
//   }
// The provider only reads "keys"; the PEM maps are there for tests that want
// to sign or verify tokens themselves. keys[0] signs everything the provider
// issues. A test simulates key rotation by restarting with another KEYFILE.

// RFC 7638 thumbprint over the required public members, used to derive kids.
function jwkThumbprint(jwk) {
  const required = {
    RSA: ['e', 'kty', 'n'],
    EC: ['crv', 'kty', 'x', 'y'],
    OKP: ['crv', 'kty', 'x'],
  }[jwk.kty];
  const canonical = JSON.stringify(Object.fromEntries(required.map((k) => [k, jwk[k]])));
  return crypto.createHash('sha256').update(canonical).digest('base64url');
}

function generateKeyFile(file) {
  const specs = [
    { alg: 'RS256', type: 'rsa', options: { modulusLength: 2048 } },
    { alg: 'ES256', type: 'ec', options: { namedCurve: 'P-256' } },
    { alg: 'EdDSA', type: 'ed25519', options: {} },
  ];
  const out = { keys: [], pem: {}, public_pem: {} };
  for (const { alg, type, options } of specs) {
    const { privateKey, publicKey } = crypto.generateKeyPairSync(type, options);
    const jwk = privateKey.export({ format: 'jwk' });
    const kid = `${alg.toLowerCase()}-${jwkThumbprint(jwk).slice(0, 16)}`;
    out.keys.push({ kid, alg, use: 'sig', ...jwk });
    out.pem[kid] = privateKey.export({ format: 'pem', type: 'pkcs8' });
    out.public_pem[kid] = publicKey.export({ format: 'pem', type: 'spki' });
  }
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  // wx: never overwrite a key file another process has just written.
  fs.writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`, { flag: 'wx', mode: 0o600 });
  return out;
}

function loadKeyFile(file) {
  let data;
  if (fs.existsSync(file)) {
    data = JSON.parse(fs.readFileSync(file, 'utf8'));
  } else {
    data = generateKeyFile(file);
  }
  if (!Array.isArray(data.keys) || data.keys.length === 0) {
    throw new Error(`${file}: "keys" must be a non-empty array of private JWKs`);
  }
  data.keys.forEach((k, i) => {
    if (!k.kid || !k.alg) throw new Error(`${file}: keys[${i}] needs "kid" and "alg"`);
  });
  return data;
}

const keyFile = loadKeyFile(args.keys);
const signingKey = keyFile.keys[0];
const signingAlg = signingKey.alg;

// ---------------------------------------------------------------------------
// Accounts and clients

// Static accounts: the login name is the `sub`. The dev login form accepts any
// name; names not in this table make findAccount return undefined, which
// makes the authorization request fail.
const ACCOUNTS = {
  alice: { roles: ['ehr-clinician'], name: 'Alice Example' },
  nina: { roles: ['ehr-nurse'], name: 'Nina Example' },
  root: { roles: ['ehr-admin', 'ehr-clinician'], name: 'Root Example' },
  nobody: { roles: ['unmapped-thing'], name: 'Nobody Example' },
};

const RESOURCE = 'urn:clarity';
const AUDIENCE = 'clarity';
const RESOURCE_SCOPE = 'openid profile roles';

const webClient = {
  client_id: 'clarity-web',
  client_secret: 'web-secret-0123456789abcdef0123456789abcdef',
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  redirect_uris: ['http://127.0.0.1/callback'],
  token_endpoint_auth_method: 'client_secret_basic',
  backchannel_logout_session_required: true,
};
if (backchannelLogoutUri) webClient.backchannel_logout_uri = backchannelLogoutUri;

const integrationClient = {
  client_id: 'ehr-integration',
  client_secret: 'integration-secret-0123456789abcdef0123456789ab',
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  token_endpoint_auth_method: 'client_secret_basic',
  // Custom metadata (allowed below via extraClientMetadata): the roles put
  // into this client's client-credentials access tokens.
  roles: ['ehr-clinician'],
};

function isLoopbackHost(hostname) {
  return hostname === '127.0.0.1' || hostname === 'localhost' || hostname === '[::1]'
    || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

// ---------------------------------------------------------------------------
// Provider configuration

function configuration() {
  return {
    clients: [webClient, integrationClient],
    clientDefaults: {
      // ID tokens and back-channel logout tokens are signed with this alg;
      // oidc-provider picks the first key in `jwks` that fits it.
      id_token_signed_response_alg: signingAlg,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    jwks: { keys: keyFile.keys },

    extraClientMetadata: {
      properties: ['roles'],
      validator(ctx, key, value) {
        if (key === 'roles' && value !== undefined
            && !(Array.isArray(value) && value.every((r) => typeof r === 'string'))) {
          throw new Error('roles must be an array of strings');
        }
      },
    },

    async findAccount(ctx, id) {
      const account = Object.hasOwn(ACCOUNTS, id) ? ACCOUNTS[id] : undefined;
      if (!account) return undefined;
      return {
        accountId: id,
        async claims() {
          return {
            sub: id, name: account.name, preferred_username: id, roles: [...account.roles],
          };
        },
      };
    },

    scopes: ['openid', 'offline_access', 'profile', 'roles'],
    claims: {
      openid: ['sub'],
      profile: ['name', 'preferred_username'],
      roles: ['roles'],
    },

    // Claims added to every access token (these two kinds only).
    //  * AccessToken (authorization code / refresh token): `roles` from the
    //    account, and `sid`. The `sid` used is token.sid, i.e. the per-client
    //    session id `session.sidFor(clientId)` that oidc-provider also puts
    //    into the ID token's `sid` and into the back-channel logout token's
    //    `sid` -- NOT the internal session.uid (token.sessionUid), which never
    //    leaves the provider. A logout token's sid therefore matches the
    //    access token's sid.
    //  * ClientCredentials: `roles` from the client's `roles` metadata. `sub`
    //    is already the client id (oidc-provider's JWT format falls back to
    //    client_id when there is no account).
    async extraTokenClaims(ctx, token) {
      if (token.kind === 'ClientCredentials') {
        const roles = token.client?.metadata().roles;
        return Array.isArray(roles) ? { roles: [...roles] } : undefined;
      }
      if (token.kind === 'AccessToken') {
        const account = Object.hasOwn(ACCOUNTS, token.accountId) ? ACCOUNTS[token.accountId] : undefined;
        const extra = { roles: account ? [...account.roles] : [] };
        if (token.sid) extra.sid = token.sid;
        return extra;
      }
      return undefined;
    },

    // Refresh tokens for any client allowed the refresh_token grant (the
    // default issues them only when offline_access was granted, which needs
    // prompt=consent).
    async issueRefreshToken(ctx, client) {
      return client.grantTypeAllowed('refresh_token');
    },

    features: {
      devInteractions: { enabled: true },
      clientCredentials: { enabled: true },
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: { enabled: true },
      introspection: { enabled: false },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // Requests that name no resource get urn:clarity, and token requests
        // without `resource` reuse the resource of the grant
        // (useGrantedResource). Without the latter, oidc-provider would turn
        // a code exchange that has the `openid` scope but no `resource` into
        // an opaque, userinfo-only access token. browser.mjs always sends
        // resource=urn:clarity anyway.
        async defaultResource(ctx, client, oneOf) {
          return oneOf ?? RESOURCE;
        },
        async useGrantedResource() {
          return true;
        },
        async getResourceServerInfo(ctx, resourceIndicator) {
          if (resourceIndicator !== RESOURCE) {
            throw new errors.InvalidTarget(`unknown resource ${resourceIndicator}`);
          }
          return {
            audience: AUDIENCE,
            scope: RESOURCE_SCOPE,
            accessTokenFormat: 'jwt',
            accessTokenTTL: 3600,
            jwt: { sign: { alg: signingAlg, kid: signingKey.kid } },
          };
        },
      },
    },

    // Confidential client, so PKCE is optional; browser.mjs sends it anyway.
    pkce: { required: () => false },

    cookies: { keys: ['clarity-oidc-test-provider-cookie-key-not-secret'] },

    routes: { jwks: '/jwks' },

    // Explicit lifetimes (seconds) so oidc-provider does not fall back to its
    // "you SHOULD change this" defaults.
    ttl: {
      AccessToken: 3600,
      AuthorizationCode: 60,
      ClientCredentials: 3600,
      Grant: 24 * 3600,
      IdToken: 3600,
      Interaction: 600,
      RefreshToken: 24 * 3600,
      Session: 24 * 3600,
    },

    // oidc-provider's outgoing requests (here: the back-channel logout POST)
    // go through an SSRF guard that kills connections to special-use
    // addresses, 127.0.0.0/8 included. The test listener is on loopback, so
    // drop the guarded dispatcher for loopback targets only.
    async fetch(url, options) {
      if (isLoopbackHost(new URL(url).hostname)) {
        const { dispatcher, ...rest } = options; // eslint-disable-line no-unused-vars
        return globalThis.fetch(url, rest);
      }
      return globalThis.fetch(url, options);
    },

    async renderError(ctx, out, error) {
      console.error(`render error: ${out.error}: ${out.error_description ?? ''}`
        + `${error?.stack && !error.expose ? `\n${error.stack}` : ''}`);
      ctx.type = 'html';
      ctx.body = `<!DOCTYPE html><html><head><title>oops</title></head><body>
<h1>oops! something went wrong</h1>
<pre id="error">${escapeHtml(JSON.stringify(out, null, 2))}</pre>
</body></html>`;
    },
  };
}

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

// ---------------------------------------------------------------------------
// Server

const server = http.createServer();
server.on('error', (err) => {
  console.error(`provider.mjs: ${err.stack || err}`);
  process.exit(1);
});

// Bind first so that `--port 0` works: the issuer must be known before the
// Provider is constructed, and it has to carry the real port.
server.listen(Number(args.port), '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;

  let provider;
  try {
    provider = new Provider(issuer, configuration());
  } catch (err) {
    console.error(`provider.mjs: invalid configuration: ${err.stack || err}`);
    process.exit(1);
  }

  // Slow JWKS endpoint simulation. Middleware added with provider.use runs
  // before oidc-provider's own routing.
  if (jwksDelayMs > 0) {
    provider.use(async (ctx, next) => {
      if (ctx.path === '/jwks') {
        await new Promise((resolve) => { setTimeout(resolve, jwksDelayMs); });
      }
      await next();
    });
  }

  // The dev login form accepts any login name, and oidc-provider answers a
  // login whose findAccount() comes back empty with a 500 server_error. Turn
  // that into a proper `access_denied` authorization error instead: when the
  // authorization request resumes (GET /auth/:uid) after a login naming an
  // unknown account, replace the interaction's result with an error.
  provider.use(async (ctx, next) => {
    const resume = ctx.method === 'GET' && /^\/auth\/([^/]+)$/.exec(ctx.path);
    if (resume) {
      const interaction = await provider.Interaction.find(resume[1]);
      const accountId = interaction?.result?.login?.accountId;
      if (accountId !== undefined && !Object.hasOwn(ACCOUNTS, accountId)) {
        interaction.result = {
          error: 'access_denied',
          error_description: `unknown test account ${accountId}`,
        };
        await interaction.save(Math.max(1, interaction.exp - Math.floor(Date.now() / 1000)));
      }
    }
    await next();
  });

  for (const event of [
    'server_error', 'authorization.error', 'grant.error', 'end_session.error',
    'discovery.error', 'userinfo.error', 'revocation.error', 'jwks.error',
    'check_session.error', 'registration.error',
  ]) {
    provider.on(event, (ctx, err) => {
      console.error(`${event}: ${err?.name ?? ''} ${err?.message ?? err}`
        + `${err?.error_description ? ` (${err.error_description})` : ''}`);
    });
  }
  provider.on('backchannel.success', (ctx, client, accountId, sid) => {
    console.error(`backchannel logout sent: client=${client.clientId} sub=${accountId} sid=${sid}`);
  });
  provider.on('backchannel.error', (ctx, err, client, accountId, sid) => {
    console.error(`backchannel logout FAILED: client=${client.clientId} sub=${accountId} sid=${sid}: ${err.message}`
      + `${err.cause ? ` (cause: ${err.cause.message ?? err.cause})` : ''}`);
  });

  server.on('request', provider.callback());
  process.stdout.write(`READY ${issuer}\n`);
});

function shutdown(signal) {
  console.error(`provider.mjs: ${signal}, shutting down`);
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));

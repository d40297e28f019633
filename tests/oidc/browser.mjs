#!/usr/bin/env node
// Scripted "browser" for the loopback OpenID Provider in provider.mjs.
//
//   node browser.mjs login --issuer ISSUER --user alice --jar JARFILE
//   node browser.mjs logout --issuer ISSUER --jar JARFILE
//   node browser.mjs client-credentials --issuer ISSUER --client ehr-integration --secret S
//
// It uses Node's fetch with redirects handled by hand and a cookie jar kept in
// a JSON file, so consecutive invocations share the provider session like one
// browser would (login, then later logout with the same --jar).
//
// Output contract: on success, one JSON line on stdout (login,
// client-credentials) or nothing (logout), exit 0. On failure, a message on
// stderr and a non-zero exit:
//   1  the flow failed (HTTP error, provider error page, error redirect, ...)
//   2  bad command line
//   3  logout: the jar holds no provider session, so nothing was ended and no
//      back-channel logout was sent
//
// Endpoints come from ISSUER/.well-known/openid-configuration. The HTML
// handling is written for oidc-provider's built-in devInteractions pages and
// end-session confirmation page, nothing more general.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { parseArgs } from 'node:util';

const DEFAULTS = {
  client: 'clarity-web',
  secret: 'web-secret-0123456789abcdef0123456789abcdef',
  redirectUri: 'http://127.0.0.1/callback',
  scope: 'openid profile roles',
  resource: 'urn:clarity',
};
const MAX_STEPS = 20;

class FlowError extends Error {
  constructor(message, exitCode = 1) {
    super(message);
    this.exitCode = exitCode;
  }
}

// ---------------------------------------------------------------------------
// Cookie jar: {"cookies": [{name, value, host, path, expires}]}, `expires` in
// epoch ms or null for session cookies. Host-only matching, path-prefix
// matching, expiry; enough for a single loopback origin.

class CookieJar {
  constructor(file) {
    this.file = file;
    this.cookies = [];
    if (file && fs.existsSync(file)) {
      const text = fs.readFileSync(file, 'utf8').trim();
      if (text) this.cookies = JSON.parse(text).cookies ?? [];
    }
  }

  save() {
    if (!this.file) return;
    const now = Date.now();
    this.cookies = this.cookies.filter((c) => c.expires === null || c.expires > now);
    fs.writeFileSync(this.file, `${JSON.stringify({ cookies: this.cookies }, null, 2)}\n`);
  }

  header(url) {
    const { host, pathname } = new URL(url);
    const now = Date.now();
    return this.cookies
      .filter((c) => c.host === host
        && (c.expires === null || c.expires > now)
        && (pathname === c.path || pathname.startsWith(c.path.endsWith('/') ? c.path : `${c.path}/`)))
      .map((c) => `${c.name}=${c.value}`)
      .join('; ');
  }

  store(url, response) {
    const { host, pathname } = new URL(url);
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      if (eq < 1) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      let path = pathname.slice(0, pathname.lastIndexOf('/')) || '/';
      let expires = null;
      for (const attr of attrs) {
        const [k, ...rest] = attr.split('=');
        const key = k.trim().toLowerCase();
        const v = rest.join('=').trim();
        if (key === 'path' && v.startsWith('/')) path = v;
        else if (key === 'max-age') expires = Date.now() + Number(v) * 1000;
        else if (key === 'expires' && expires === null) expires = Date.parse(v);
      }
      this.cookies = this.cookies.filter((c) => !(c.name === name && c.host === host && c.path === path));
      if (expires === null || expires > Date.now()) {
        this.cookies.push({
          name, value, host, path, expires,
        });
      }
    }
  }
}

// ---------------------------------------------------------------------------
// HTTP helpers

async function request(jar, url, { method = 'GET', form, headers = {} } = {}) {
  const h = { ...headers };
  const cookie = jar?.header(url);
  if (cookie) h.cookie = cookie;
  let body;
  if (form) {
    body = new URLSearchParams(form).toString();
    h['content-type'] = 'application/x-www-form-urlencoded';
  }
  const response = await fetch(url, {
    method, headers: h, body, redirect: 'manual',
  });
  jar?.store(url, response);
  return response;
}

async function discover(issuer) {
  const url = `${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
  const response = await fetch(url);
  if (!response.ok) throw new FlowError(`discovery ${url}: HTTP ${response.status}`);
  const metadata = await response.json();
  if (metadata.issuer !== issuer) {
    throw new FlowError(`discovery: issuer is ${metadata.issuer}, expected ${issuer}`);
  }
  return metadata;
}

function basicAuth(clientId, secret) {
  // RFC 6749 2.3.1: form-urlencode both parts before base64.
  const enc = (s) => encodeURIComponent(s).replace(/%20/g, '+');
  return `Basic ${Buffer.from(`${enc(clientId)}:${enc(secret)}`).toString('base64')}`;
}

async function tokenRequest(metadata, clientId, secret, form) {
  const response = await request(null, metadata.token_endpoint, {
    method: 'POST',
    form,
    headers: { authorization: basicAuth(clientId, secret), accept: 'application/json' },
  });
  const text = await response.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    throw new FlowError(`token endpoint: HTTP ${response.status}: ${text.slice(0, 300)}`);
  }
  if (!response.ok) {
    throw new FlowError(`token endpoint: HTTP ${response.status}: ${json.error}: ${json.error_description ?? ''}`);
  }
  return json;
}

// ---------------------------------------------------------------------------
// Minimal HTML form reading for oidc-provider's own pages.

function decodeEntities(s) {
  return s
    .replace(/&#x([0-9a-f]+);/gi, (_, h) => String.fromCodePoint(parseInt(h, 16)))
    .replace(/&#(\d+);/g, (_, d) => String.fromCodePoint(Number(d)))
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

function attributes(tag) {
  const out = {};
  for (const m of tag.matchAll(/([a-zA-Z_:.-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/g)) {
    out[m[1].toLowerCase()] = decodeEntities(m[2] ?? m[3]);
  }
  return out;
}

// Forms on the page: [{id, action, method, fields: {name: value}}]. Inputs
// are attributed to the form that encloses them.
function parseForms(html, baseUrl) {
  const forms = [];
  for (const m of html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)) {
    const attrs = attributes(m[1]);
    const fields = {};
    for (const input of m[2].matchAll(/<input\b([^>]*)>/gi)) {
      const a = attributes(input[1]);
      if (a.name) fields[a.name] = a.value ?? '';
    }
    forms.push({
      id: attrs.id,
      action: new URL(attrs.action ?? baseUrl, baseUrl).href,
      method: (attrs.method ?? 'get').toUpperCase(),
      fields,
    });
  }
  return forms;
}

function errorFromPage(html) {
  const pre = html.match(/<pre[^>]*>([\s\S]*?)<\/pre>/i);
  if (pre) return decodeEntities(pre[1]).replace(/\s+/g, ' ').trim();
  const title = html.match(/<title>([\s\S]*?)<\/title>/i);
  return title ? decodeEntities(title[1]).trim() : html.slice(0, 300);
}

// ---------------------------------------------------------------------------
// login: authorization code flow through the devInteractions pages

function b64url(buf) {
  return Buffer.from(buf).toString('base64url');
}

async function login(opts) {
  const metadata = await discover(opts.issuer);
  const jar = new CookieJar(opts.jar);

  const state = b64url(crypto.randomBytes(16));
  const nonce = b64url(crypto.randomBytes(16));
  const verifier = b64url(crypto.randomBytes(32));
  const challenge = b64url(crypto.createHash('sha256').update(verifier).digest());

  const authUrl = new URL(metadata.authorization_endpoint);
  authUrl.search = new URLSearchParams({
    client_id: opts.client,
    response_type: 'code',
    redirect_uri: opts.redirectUri,
    scope: opts.scope,
    resource: opts.resource,
    state,
    nonce,
    code_challenge: challenge,
    code_challenge_method: 'S256',
  }).toString();

  let url = authUrl.href;
  let init = {};
  let callback;
  for (let step = 0; step < MAX_STEPS && !callback; step++) {
    const response = await request(jar, url, init);
    init = {};
    if (response.status >= 300 && response.status < 400) {
      const next = new URL(response.headers.get('location'), url).href;
      await response.arrayBuffer();
      if (next.startsWith(opts.redirectUri)) {
        callback = new URL(next);
      } else {
        url = next;
      }
      continue;
    }
    const html = await response.text();
    if (response.status !== 200) {
      throw new FlowError(`${url}: HTTP ${response.status}: ${errorFromPage(html)}`);
    }
    const form = parseForms(html, url).find((f) => f.method === 'POST' && f.fields.prompt);
    if (!form) throw new FlowError(`${url}: unexpected page: ${errorFromPage(html)}`);
    if (form.fields.prompt === 'login') {
      init = { method: 'POST', form: { ...form.fields, login: opts.user, password: 'any-password' } };
    } else if (form.fields.prompt === 'consent') {
      init = { method: 'POST', form: form.fields };
    } else {
      throw new FlowError(`${url}: unexpected interaction prompt ${form.fields.prompt}`);
    }
    url = form.action;
  }
  jar.save();
  if (!callback) throw new FlowError(`no redirect to ${opts.redirectUri} after ${MAX_STEPS} steps`);

  const params = callback.searchParams;
  if (params.get('error')) {
    throw new FlowError(`authorization error: ${params.get('error')}: ${params.get('error_description') ?? ''}`);
  }
  if (params.get('state') !== state) throw new FlowError('state mismatch in authorization response');
  if (params.has('iss') && params.get('iss') !== metadata.issuer) {
    throw new FlowError(`iss mismatch in authorization response: ${params.get('iss')}`);
  }
  const code = params.get('code');
  if (!code) throw new FlowError(`no code in authorization response: ${callback.href}`);

  const tokens = await tokenRequest(metadata, opts.client, opts.secret, {
    grant_type: 'authorization_code',
    code,
    redirect_uri: opts.redirectUri,
    code_verifier: verifier,
    resource: opts.resource,
  });
  return {
    access_token: tokens.access_token,
    id_token: tokens.id_token,
    refresh_token: tokens.refresh_token,
  };
}

// ---------------------------------------------------------------------------
// logout: RP-initiated logout, confirmed on the provider's page

async function logout(opts) {
  const metadata = await discover(opts.issuer);
  if (!metadata.end_session_endpoint) throw new FlowError('provider has no end_session_endpoint');
  const jar = new CookieJar(opts.jar);

  // Step 1: the end-session page. With a live session it is the "Do you want
  // to sign-out" page, whose form carries the xsrf token; without one the
  // provider answers with a self-submitting form_post page instead.
  let response = await request(jar, metadata.end_session_endpoint);
  let html = await response.text();
  if (response.status !== 200) {
    throw new FlowError(`end_session: HTTP ${response.status}: ${errorFromPage(html)}`);
  }
  const forms = parseForms(html, metadata.end_session_endpoint);
  const form = forms.find((f) => f.id === 'op.logoutForm');
  if (!form) {
    jar.save();
    if (forms.some((f) => f.fields.xsrf)) {
      throw new FlowError('no provider session in the cookie jar; nothing to log out', 3);
    }
    throw new FlowError(`end_session: unexpected page: ${errorFromPage(html)}`);
  }

  // Step 2: "Yes, sign me out" (logout=yes ends the whole session, which is
  // what triggers the back-channel logout of every client in it).
  response = await request(jar, form.action, { method: 'POST', form: { ...form.fields, logout: 'yes' } });
  html = await response.text();
  if (response.status !== 303 && response.status !== 302) {
    throw new FlowError(`end_session confirm: HTTP ${response.status}: ${errorFromPage(html)}`);
  }
  const next = new URL(response.headers.get('location'), form.action).href;

  // Step 3: the provider's success page.
  response = await request(jar, next);
  html = await response.text();
  jar.save();
  if (response.status !== 200 || !/sign-out success/i.test(html)) {
    throw new FlowError(`end_session success page: HTTP ${response.status}: ${errorFromPage(html)}`);
  }
}

// ---------------------------------------------------------------------------
// client-credentials

async function clientCredentials(opts) {
  const metadata = await discover(opts.issuer);
  const form = { grant_type: 'client_credentials', resource: opts.resource };
  if (opts.scope) form.scope = opts.scope;
  const tokens = await tokenRequest(metadata, opts.client, opts.secret, form);
  return { access_token: tokens.access_token };
}

// ---------------------------------------------------------------------------
// main

const USAGE = `usage:
  node browser.mjs login --issuer ISSUER --user NAME --jar JARFILE
        [--client ID --secret S] [--redirect-uri URI] [--scope S] [--resource R]
  node browser.mjs logout --issuer ISSUER --jar JARFILE
  node browser.mjs client-credentials --issuer ISSUER --client ID --secret S
        [--scope S] [--resource R]`;

function fail(message, code) {
  process.stderr.write(`browser.mjs: ${message}\n`);
  process.exit(code);
}

async function main() {
  let parsed;
  try {
    parsed = parseArgs({
      allowPositionals: true,
      strict: true,
      options: {
        issuer: { type: 'string' },
        user: { type: 'string' },
        jar: { type: 'string' },
        client: { type: 'string' },
        secret: { type: 'string' },
        'redirect-uri': { type: 'string' },
        scope: { type: 'string' },
        resource: { type: 'string' },
      },
    });
  } catch (err) {
    fail(`${err.message}\n${USAGE}`, 2);
  }
  const { positionals: [command, ...extra], values: v } = parsed;
  if (!command || extra.length) fail(USAGE, 2);
  if (!v.issuer) fail(`--issuer is required\n${USAGE}`, 2);

  const opts = {
    issuer: v.issuer,
    jar: v.jar,
    user: v.user,
    resource: v.resource ?? DEFAULTS.resource,
  };

  let result;
  switch (command) {
    case 'login':
      if (!v.user || !v.jar) fail(`login needs --user and --jar\n${USAGE}`, 2);
      Object.assign(opts, {
        client: v.client ?? DEFAULTS.client,
        secret: v.secret ?? DEFAULTS.secret,
        redirectUri: v['redirect-uri'] ?? DEFAULTS.redirectUri,
        scope: v.scope ?? DEFAULTS.scope,
      });
      result = await login(opts);
      break;
    case 'logout':
      if (!v.jar) fail(`logout needs --jar\n${USAGE}`, 2);
      await logout(opts);
      break;
    case 'client-credentials':
      if (!v.client || !v.secret) fail(`client-credentials needs --client and --secret\n${USAGE}`, 2);
      Object.assign(opts, { client: v.client, secret: v.secret, scope: v.scope });
      result = await clientCredentials(opts);
      break;
    default:
      fail(`unknown command ${command}\n${USAGE}`, 2);
  }
  if (result) process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((err) => {
  if (err instanceof FlowError) fail(err.message, err.exitCode);
  fail(err.stack || String(err), 1);
});

#!/usr/bin/env node
// Signs a JWT with one of the test provider's keys, for tests that need
// tokens the provider would not issue on request (a back-channel logout
// token for a machine client, forged or broken tokens).
//
//   node tests/oidc/mint.mjs --keys KEYFILE --claims JSON [--kid KID] [--typ TYP]
//
// KEYFILE is the provider's key file (see README.md); the first key signs
// unless --kid names another. Prints the compact JWT on stdout.

import * as fs from 'node:fs';
import { parseArgs } from 'node:util';

import { SignJWT, importJWK } from 'jose';

const { values: args } = parseArgs({
  options: {
    keys: { type: 'string' },
    claims: { type: 'string' },
    kid: { type: 'string' },
    typ: { type: 'string' },
  },
  strict: true,
});
if (!args.keys || !args.claims) {
  console.error('usage: node mint.mjs --keys KEYFILE --claims JSON [--kid KID] [--typ TYP]');
  process.exit(2);
}
const file = JSON.parse(fs.readFileSync(args.keys, 'utf8'));
const jwk = args.kid ? file.keys.find((k) => k.kid === args.kid) : file.keys[0];
if (!jwk) {
  console.error(`mint.mjs: no key ${args.kid} in ${args.keys}`);
  process.exit(1);
}
const key = await importJWK(jwk, jwk.alg);
const header = { alg: jwk.alg, kid: jwk.kid };
if (args.typ) header.typ = args.typ;
const token = await new SignJWT(JSON.parse(args.claims)).setProtectedHeader(header).sign(key);
process.stdout.write(`${token}\n`);

// The koffi prototypes match clarity-ffi/include/clarity.h: every function
// of the header is declared, with the same types (char ** results are
// declared void ** so they can be freed; _Out_ marks out-parameters).
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { it } = require('node:test');
const { PROTOTYPES, TESTING_PROTOTYPES } = require('../lib/native');
const { REPO } = require('./helpers');

function normalise(prototype) {
  return prototype
    .replace(/\b_Out_\s+/g, '')
    .replace(/\bstruct\s+/g, '')
    .replace(/\bvoid \*\*/g, 'char **')
    .replace(/\bvoid \*string\b/, 'char *string')
    .replace(/\s+/g, ' ')
    .replace(/\( /g, '(')
    .trim();
}

it('declares every function of clarity.h with its types', () => {
  const header = fs.readFileSync(path.join(REPO, 'clarity-ffi', 'include', 'clarity.h'), 'utf8')
    .replace(/\/\/[^\n]*/g, '');
  const found = [...header.matchAll(/^((?:clarity_result|void|const char \*)\s*clarity_\w+\([^)]*\));/gm)]
    .map((m) => normalise(m[1]));
  assert.ok(found.length > 40, 'the header parsed');
  const declared = [...PROTOTYPES, ...TESTING_PROTOTYPES].map(normalise);
  assert.deepEqual([...declared].sort(), [...found].sort());
});

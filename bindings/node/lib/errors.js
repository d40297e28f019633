// Errors from Clarity: one Error subclass per result code of the C ABI,
// each with `code` (the stable name, the HTTP API's error code) and
// `result` (the numeric clarity_result). Messages never hold PHI or secrets.
'use strict';

class ClarityError extends Error {
  constructor(message, code = 'unknown', result = 199) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.result = result;
  }
}

const KINDS = [
  [1, 'invalid_input', 'InvalidInputError'],
  [2, 'config', 'ConfigError'],
  [3, 'not_found', 'NotFoundError'],
  [4, 'already_exists', 'AlreadyExistsError'],
  [5, 'conflict', 'ConflictError'],
  [6, 'integrity', 'IntegrityError'],
  [7, 'key', 'KeyMaterialError'],
  [8, 'unauthenticated', 'UnauthenticatedError'],
  [9, 'permission_denied', 'PermissionDeniedError'],
  [10, 'mfa_required', 'MfaRequiredError'],
  [11, 'rate_limited', 'RateLimitedError'],
  [12, 'backend', 'BackendError'],
  [13, 'unavailable', 'UnavailableError'],
  [14, 'internal', 'InternalError'],
  [100, 'null_parameter', 'NullParameterError'],
  [101, 'panic', 'PanicError'],
  [199, 'unknown', 'UnknownError'],
];

const classes = { ClarityError };
const byResult = new Map();
for (const [result, code, name] of KINDS) {
  const cls = {
    [name]: class extends ClarityError {
      constructor(message) {
        super(message || code, code, result);
      }
    },
  }[name];
  classes[name] = cls;
  byResult.set(result, cls);
}

// The C ABI's parameter names as this package calls them: the argument a
// message should name instead, or null where the C function's JSON document
// is built from the method's own arguments (the prefix is dropped and the
// document's snake_case field names become the arguments' camelCase ones).
// Every parameter of clarity.h whose name differs is listed
// (test/errors.test.js).
const C_PARAMETER_NAMES = {
  patient_id: 'patientId',
  user_id: 'userId',
  record_id: 'recordId',
  account_id: 'accountId',
  grant_id: 'grantId',
  expected_version: 'expectedVersion',
  unreviewed_only: 'unreviewedOnly',
  refresh_token: 'refreshToken',
  logout_token: 'logoutToken',
  client_id: 'clientId',
  client_secret: 'clientSecret',
  request_json: null,
  rotation_json: null,
  assignment_json: null,
  range_json: null,
  user_json: 'user',
  update_json: 'changes',
  account_json: 'account',
  search_json: 'search',
  filter_json: 'filter',
  profile_json: 'profile',
  data_json: 'data',
  disclosure_json: 'disclosure',
};

const camel = (name) => name.replace(/_([a-z0-9])/g, (_, c) => c.toUpperCase());

/**
 * `message` naming this package's parameters instead of the C ABI's, and
 * without what the C ABI adds about a JSON document this package encoded:
 * the kind (the error's class says it) and the position in that text.
 */
function bindingMessage(message) {
  const match = /^([a-z][a-z0-9_]*)(: | must | is )/.exec(message || '');
  if (!match || !(match[1] in C_PARAMETER_NAMES)) return message;
  const name = C_PARAMETER_NAMES[match[1]];
  const rest = message.slice(match[1].length);
  if (!rest.startsWith(': ')) return (name === null ? 'the request' : name) + rest;
  const detail = rest
    .slice(2)
    .replace(/ \(line \d+, column \d+\)$/, '')
    .replace(/^invalid input: /, '');
  if (name !== null) return `${name}: ${detail}`;
  return detail.replace(/`([a-z0-9_]+)((?:\.|\[)[^`]*)?`/g, (_, head, tail = '') => `\`${camel(head)}${tail}\``);
}

/** The error for a result code (unknown codes: UnknownError, keeping the number). */
function errorFor(result, message) {
  message = bindingMessage(message);
  const cls = byResult.get(result);
  if (cls) return new cls(message);
  return new ClarityError(message || 'unknown error', 'unknown', result);
}

module.exports = { ...classes, errorFor, bindingMessage, C_PARAMETER_NAMES };

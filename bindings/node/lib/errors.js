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

/** The error for a result code (unknown codes: UnknownError, keeping the number). */
function errorFor(result, message) {
  const cls = byResult.get(result);
  if (cls) return new cls(message);
  return new ClarityError(message || 'unknown error', 'unknown', result);
}

module.exports = { ...classes, errorFor };

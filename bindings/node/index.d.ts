// Type declarations of @clarity/sdk. Values are the HTTP API's JSON shapes;
// ids are UUID strings, times RFC 3339 strings in UTC.

export interface User {
  id: string; email: string; roles: string[]; display_name: string | null;
  disabled: boolean; mfa_enabled: boolean; patient_id: string | null;
  version: number; created_at: string; service_account: boolean;
}
export interface NewServiceAccount { name: string; roles: string[]; display_name?: string; }
export interface ClientSecret {
  client_id: string; client_secret: string; previous_secret_expires_at: string | null; account: User;
}
export interface AccessToken { access_token: string; token_type: 'Bearer'; expires_in: number; }
export interface NewUser {
  email: string; password: string; roles: string[];
  display_name?: string; patient_id?: string;
}
export interface UserChanges {
  roles?: string[]; disabled?: boolean; display_name?: string; patient_id?: string;
}
export interface Tokens {
  access_token: string; refresh_token: string; expires_in: number;
  token_type: 'Bearer'; user: User;
}
/** An admin's password reset: a one-time code, shown once (a secret). */
export interface PasswordReset { user_id: string; reset_code: string; expires_at: string; }
export interface Principal {
  user_id: string; session_id: string; roles: string[];
  patient_id: string | null; mfa: boolean;
  /** For an OpenID Connect provider's access token (`[[auth.oidc]]`): who at which provider. */
  identity: { issuer: string; subject: string } | null;
}
export interface PatientProfile {
  mrn: string; given_name: string; family_name: string; birth_date: string; sex: string;
  email?: string; phone?: string;
  address?: { line?: string[]; city?: string; state?: string; postal_code?: string; country?: string };
  data?: Record<string, unknown>;
}
export interface Patient extends PatientProfile {
  id: string; version: number; created_at: string; updated_at: string;
}
export interface ClinicalRecord {
  id: string; patient_id: string; kind: string; data: Record<string, unknown>;
  version: number; created_by: string; created_at: string; updated_at: string;
}
export interface Page<T> { items: T[]; next_cursor: string | null; }
export interface PageOptions { limit?: number; cursor?: string | null; }
export interface Grant { grant_id: string; patient_id: string; expires_at: string; }
export interface GrantView {
  grant_id: string; user_id: string; patient_id: string; reason: string;
  created_at: string; expires_at: string; reviewed_at: string | null; reviewed_by: string | null;
}
export interface AuditFilter {
  patient_id?: string; actor_id?: string; action?: string;
  outcome?: '0' | '4' | '8'; from?: string; to?: string;
}
export interface AuditEvent {
  id: string; chain_id: string; seq: number; recorded: string; event_type: string;
  subtype: string; action: string; outcome: string; purpose: string | null;
  actor_id: string | null; patient_id: string | null; entity_id: string | null;
  reason: string | null; [field: string]: unknown;
}
export interface AuditReport { ok: boolean; chains: Array<Record<string, unknown>>; }
export interface AccessLogEntry {
  event_id: string; at: string; accessor_id: string | null; accessor_name: string | null;
  accessor_roles: string[]; action: string; action_code: 'C' | 'R' | 'U' | 'D' | 'E';
  purpose: string | null; break_glass: boolean; entity_id: string | null;
}
export interface NewDisclosure {
  recipient: string; recipient_address?: string; purpose: string; description: string;
  legal_basis: string; disclosed_at?: Date | string;
}
export interface Disclosure {
  id: string; patient_id: string; disclosed_at: string;
  recipient: string; recipient_address?: string; purpose: string; description: string;
  legal_basis: string; recorded_by: string; recorded_at: string;
}
export interface Accounting { patient_id: string; from: string; to: string; disclosures: Disclosure[]; }
export type Search = { mrn: string } | { email: string } | { family_name: string; birth_date: string };
export type Config = string | Record<string, unknown>;

/** The version of the loaded native library. */
export function version(): string;
/** The authorisation matrix specification (test builds of the library only). */
export function matrixSpecification(): {
  roles: string[]; operations: string[]; relationships: string[];
  cells: Array<{ role: string; operation: string; relationship: string; expected: string }>;
} | null;

/** An open Clarity instance; every method runs off the event loop. */
export class Clarity {
  private constructor();
  static open(config?: Config): Promise<Clarity>;
  readonly closed: boolean;
  close(): Promise<void>;
  check(): Promise<void>;

  issueSetupCode(): Promise<string>;
  setup(setupCode: string, email: string, password: string): Promise<User>;
  login(email: string, password: string, totp?: string): Promise<Tokens>;
  refresh(refreshToken: string): Promise<Tokens>;
  logout(token: string): Promise<void>;
  authenticate(token: string): Promise<Principal>;
  backchannelLogout(logoutToken: string): Promise<void>;
  mfaEnroll(token: string): Promise<{ secret: string; otpauth_url: string }>;
  mfaConfirm(token: string, code: string): Promise<User>;
  changePassword(token: string, currentPassword: string, newPassword: string): Promise<void>;
  resetPassword(token: string, userId: string): Promise<PasswordReset>;
  completePasswordReset(email: string, resetCode: string, newPassword: string, totp?: string): Promise<void>;
  resetMfa(token: string, userId: string): Promise<User>;

  createUser(token: string, user: NewUser): Promise<User>;
  createUserAsOperator(user: NewUser): Promise<User>;
  getUser(token: string, userId: string): Promise<User>;
  listUsers(token: string, page?: PageOptions): Promise<Page<User>>;
  updateUser(token: string, userId: string, changes: UserChanges): Promise<User>;

  createServiceAccount(token: string, account: NewServiceAccount): Promise<ClientSecret>;
  rotateServiceSecret(token: string, accountId: string, options?: { overlapSecs?: number | null }): Promise<ClientSecret>;
  deleteServiceAccount(token: string, accountId: string): Promise<void>;
  clientCredentials(clientId: string, clientSecret: string): Promise<AccessToken>;

  createPatient(token: string, profile: PatientProfile): Promise<Patient>;
  getPatient(token: string, patientId: string): Promise<Patient>;
  updatePatient(token: string, patientId: string, expectedVersion: number, profile: PatientProfile): Promise<Patient>;
  erasePatient(token: string, patientId: string): Promise<void>;
  listPatients(token: string, page?: PageOptions): Promise<Page<Patient>>;
  searchPatients(token: string, search: Search): Promise<Page<Patient>>;
  researchPatients(token: string, page?: PageOptions): Promise<Page<Record<string, unknown>>>;

  createRecord(token: string, patientId: string, kind: string, data: Record<string, unknown>): Promise<ClinicalRecord>;
  getRecord(token: string, recordId: string): Promise<ClinicalRecord>;
  updateRecord(token: string, recordId: string, expectedVersion: number, data: Record<string, unknown>): Promise<ClinicalRecord>;
  deleteRecord(token: string, recordId: string): Promise<void>;
  listRecords(token: string, patientId: string, page?: PageOptions): Promise<Page<ClinicalRecord>>;

  addCareTeamMember(token: string, patientId: string, userId: string,
    options?: { relationship?: string; expiresAt?: Date | string }): Promise<void>;
  removeCareTeamMember(token: string, patientId: string, userId: string): Promise<void>;
  breakGlass(token: string, patientId: string, reason: string, totp?: string): Promise<Grant>;
  listGrants(token: string, options?: PageOptions & { unreviewedOnly?: boolean }): Promise<Page<GrantView>>;
  reviewGrant(token: string, grantId: string): Promise<void>;

  auditEvents(token: string, filter?: AuditFilter | null, page?: PageOptions): Promise<Page<AuditEvent>>;
  verifyAudit(token: string): Promise<AuditReport>;
  exportAuditFhir(token: string, filter?: AuditFilter | null, options?: { limit?: number }): Promise<string>;
  purgeAudit(token: string, before: Date | string): Promise<number>;
  keyStatus(token: string): Promise<Record<string, unknown>>;
  rotateKeys(token: string): Promise<Record<string, unknown>>;

  patientAccessLog(token: string, patientId: string,
    options?: PageOptions & { from?: Date | string | null; to?: Date | string | null }): Promise<Page<AccessLogEntry>>;
  recordDisclosure(token: string, patientId: string, disclosure: NewDisclosure): Promise<Disclosure>;
  listDisclosures(token: string, patientId: string, page?: PageOptions): Promise<Page<Disclosure>>;
  disclosureAccounting(token: string, patientId: string,
    options?: { from?: Date | string | null; format?: 'json' }): Promise<Accounting>;
  disclosureAccounting(token: string, patientId: string,
    options: { from?: Date | string | null; format: 'text' }): Promise<string>;
}

/** Base class of every error from Clarity. */
export class ClarityError extends Error {
  /** Stable name, e.g. "not_found" (the HTTP API's error codes). */
  readonly code: string;
  /** The C ABI's numeric result code. */
  readonly result: number;
}
export class InvalidInputError extends ClarityError {}
export class ConfigError extends ClarityError {}
export class NotFoundError extends ClarityError {}
export class AlreadyExistsError extends ClarityError {}
export class ConflictError extends ClarityError {}
export class IntegrityError extends ClarityError {}
export class KeyMaterialError extends ClarityError {}
export class UnauthenticatedError extends ClarityError {}
export class PermissionDeniedError extends ClarityError {}
export class MfaRequiredError extends ClarityError {}
export class RateLimitedError extends ClarityError {}
export class BackendError extends ClarityError {}
export class UnavailableError extends ClarityError {}
export class InternalError extends ClarityError {}
export class NullParameterError extends ClarityError {}
export class PanicError extends ClarityError {}
export class UnknownError extends ClarityError {}

// The README's walk-through, written against the TypeScript types that
// openapi-typescript generates from the served OpenAPI document
// (scripts/openapi_ts_check.py writes them next to this file as clarity.d.ts,
// type-checks this program with tsc --strict and then runs it):
//
//     node walkthrough.mjs BASE_URL SETUP_CODE
//
// Every request goes through `call`, whose path, method, parameters, body and
// answer are all taken from the generated `paths`: a path or method missing
// from the document, a parameter or body field of the wrong type, or an
// answer typed as anything but its schema fails the type check.

import type { components, paths } from "./clarity.js";

type Schemas = components["schemas"];
type Method = "get" | "put" | "post" | "patch" | "delete";
type Operation<P extends keyof paths, M extends Method> = NonNullable<paths[P][M]>;
/** The methods the document gives path `P`. */
type MethodOf<P extends keyof paths> = {
    [M in Method]: [Operation<P, M>] extends [never] ? never : M;
}[Method];
type Parameters_<O> = O extends { parameters: infer X } ? X : never;
/** What a request to operation `O` needs: its path and header parameters, query and JSON body. */
type Init<O> = { token?: string } & (Parameters_<O> extends { path: infer X } ? { path: X } : unknown) &
    (Parameters_<O> extends { header: infer X } ? { header: X } : Parameters_<O> extends { header?: infer X } ? { header?: X } : unknown) &
    (Parameters_<O> extends { query?: infer X } ? { query?: X } : unknown) &
    (O extends { requestBody: { content: { "application/json": infer B } } } ? { body: B } : unknown);
/** The success statuses of operation `O`. */
type Success<O> = O extends { responses: infer R } ? Extract<keyof R, 200 | 201 | 204> : never;
/** The JSON answer of operation `O` with status `S` (undefined for a body-less answer). */
type Answer<O, S> = O extends { responses: { [K in S & number]: infer R } }
    ? R extends { content: { "application/json": infer J } } ? J : undefined
    : never;

/** An answer: its typed body and its `ETag`. */
interface Reply<T> {
    body: T;
    etag: string | null;
}

const [base, setupCode] = process.argv.slice(2);
if (!base || !setupCode) {
    console.error("usage: node walkthrough.mjs BASE_URL SETUP_CODE");
    process.exit(2);
}

async function call<P extends keyof paths, M extends MethodOf<P>, S extends Success<Operation<P, M>>>(
    method: M,
    path: P,
    status: S,
    init: Init<Operation<P, M>>,
): Promise<Reply<Answer<Operation<P, M>, S>>> {
    const given = init as { token?: string; path?: Record<string, string>; header?: Record<string, string>; query?: Record<string, string | number | boolean>; body?: unknown };
    let url = String(path).replace(/\{(\w+)\}/g, (_, name: string) => encodeURIComponent(given.path?.[name] ?? ""));
    const query = new URLSearchParams(Object.entries(given.query ?? {}).map(([k, v]): [string, string] => [k, String(v)]));
    if (query.size > 0) {
        url += "?" + query.toString();
    }
    const headers: Record<string, string> = { ...given.header };
    if (given.token) {
        headers.authorization = `Bearer ${given.token}`;
    }
    if (given.body !== undefined) {
        headers["content-type"] = "application/json";
    }
    const response = await fetch(base + url, {
        method: method.toUpperCase(),
        headers,
        body: given.body === undefined ? undefined : JSON.stringify(given.body),
    });
    const text = await response.text();
    if (response.status !== status) {
        throw new Error(`${method.toUpperCase()} ${url}: expected ${status}, got ${response.status} ${text}`);
    }
    const body = (text ? JSON.parse(text) : undefined) as Answer<Operation<P, M>, S>;
    return { body, etag: response.headers.get("etag") };
}

function check(condition: boolean, what: string): asserts condition {
    if (!condition) {
        throw new Error(`openapi-ts walk-through: ${what}`);
    }
}

// Passwords may not contain the account's email or name.
const passwords = {
    admin: "a long passphrase for the very first account",
    dr: "kept by the ward for its second account",
    study: "a third phrase, for the study account",
    audit: "the fourth account reads only the log",
};

const admin: Schemas["User"] = (
    await call("post", "/v1/setup", 201, {
        body: { setup_code: setupCode, email: "admin@example.org", password: passwords.admin },
    })
).body;
check(admin.roles.includes("admin"), "the first user is an admin");

async function login(email: string, password: string): Promise<string> {
    const tokens: Schemas["Tokens"] = (await call("post", "/v1/auth/login", 200, { body: { email, password } })).body;
    return tokens.access_token;
}

const adminToken = await login("admin@example.org", passwords.admin);
const newUsers: [string, string, Schemas["Role"]][] = [
    ["dr@example.org", passwords.dr, "clinician"],
    ["research@example.org", passwords.study, "researcher"],
    ["audit@example.org", passwords.audit, "auditor"],
];
for (const [email, password, role] of newUsers) {
    await call("post", "/v1/users", 201, { token: adminToken, body: { email, password, roles: [role] } });
}
const dr = await login("dr@example.org", passwords.dr);
const study = await login("research@example.org", passwords.study);
const auditor = await login("audit@example.org", passwords.audit);

const me: Schemas["Me"] = (await call("get", "/v1/me", 200, { token: dr })).body;
void me;

const profile: Schemas["PatientProfile"] = {
    mrn: "MRN-1",
    given_name: "Ada",
    family_name: "Example",
    birth_date: "1990-05-17",
    sex: "female",
};
const created = await call("post", "/v1/patients", 201, { token: dr, body: profile });
const patient: Schemas["Patient"] = created.body;
const read = await call("get", "/v1/patients/{id}", 200, { token: dr, path: { id: patient.id } });
check(read.body.given_name === "Ada", "the patient reads back");
const renamed = await call("put", "/v1/patients/{id}", 200, {
    token: dr,
    path: { id: patient.id },
    header: { "If-Match": read.etag ?? `"${read.body.version}"` },
    body: { ...profile, given_name: "Ada Lovelace" },
});
check(renamed.body.version === patient.version + 1, "the patient update makes a new version");

const record: Schemas["Record"] = (
    await call("post", "/v1/patients/{id}/records", 201, {
        token: dr,
        path: { id: patient.id },
        body: { kind: "note", data: { text: "first visit" } },
    })
).body;
const amended = await call("put", "/v1/records/{id}", 200, {
    token: dr,
    path: { id: record.id },
    header: { "If-Match": `"${record.version}"` },
    body: { data: { text: "amended" } },
});
check(amended.body.version === record.version + 1, "the record update makes a new version");
await call("post", "/v1/patients/{id}/disclosures", 201, {
    token: dr,
    path: { id: patient.id },
    body: { recipient: "County health department", purpose: "PUBHLTH", description: "notifiable disease report", legal_basis: "state reporting law" },
});

// Every list answers a page whose items keep their schema: each line reads a
// field of an item, typed as that field's schema type.
const users = (await call("get", "/v1/users", 200, { token: adminToken, query: { limit: 10 } })).body;
const emails: string[] = users.items.map((u) => u.email);
const patients = (await call("get", "/v1/patients", 200, { token: dr })).body;
const mrns: string[] = patients.items.map((p) => p.mrn);
const found = (await call("post", "/v1/patients/search", 200, { token: dr, body: { mrn: "MRN-1" } })).body;
const foundIds: string[] = found.items.map((p) => p.id);
const records = (await call("get", "/v1/patients/{id}/records", 200, { token: dr, path: { id: patient.id } })).body;
const kinds: string[] = records.items.map((r) => r.kind);
const disclosures = (await call("get", "/v1/patients/{id}/disclosures", 200, { token: dr, path: { id: patient.id } })).body;
const recipients: string[] = disclosures.items.map((d) => d.recipient);
const accessLog = (await call("get", "/v1/patients/{id}/access-log", 200, { token: auditor, path: { id: patient.id } })).body;
const accessors: string[] = accessLog.items.map((e) => e.action);
const grants = (await call("get", "/v1/break-glass/grants", 200, { token: adminToken, query: { unreviewed: true } })).body;
const reasons: string[] = grants.items.map((g) => g.reason);
const research = (await call("get", "/v1/research/patients", 200, { token: study })).body;
const sexes: Schemas["DeidentifiedPatient"]["sex"][] = research.items.map((p) => p.sex);
const events = (await call("get", "/v1/audit/events", 200, { token: auditor, query: { patient_id: patient.id } })).body;
const actions: string[] = events.items.map((e) => e.action);
const identities = (await call("get", "/v1/users/{id}/identities", 200, { token: adminToken, path: { id: admin.id } })).body;
const issuers: string[] = identities.items.map((i) => i.issuer);

check(emails.includes("dr@example.org"), "the user list names the clinician");
check(mrns.includes("MRN-1") && foundIds.includes(patient.id), "the patient is listed and found");
check(kinds.includes("note"), "the record is listed");
check(recipients.length === 1, "the disclosure is listed");
check(accessors.length > 0 && actions.length > 0, "the patient's accesses are logged");
check(sexes.length === 1, "the research view holds the patient");
check(reasons.length === 0 && issuers.length === 0, "no grant and no linked identity yet");

const lists = [users, patients, found, records, disclosures, accessLog, grants, research, events, identities];
console.log(`openapi-ts walk-through: ${lists.length} typed list answers`);

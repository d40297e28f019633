#!/usr/bin/env python3
"""Validate an NDJSON file of FHIR R4 AuditEvent resources (S-AUD-5).

Used by the audit tests, with tools independent of Clarity:

1. Structure: every line must parse as an AuditEvent under the R4B models of
   fhir.resources (R4B's AuditEvent is R4's; the package's top level is R5,
   where AuditEvent changed shape, so it is never used here).
2. IHE Basic Audit Log Patterns (BALP): for each BALP profile a resource
   declares in meta.profile, FHIRPath rules (fhirpathpy, R4 model) check
   what that profile requires: type and subtype codes, action, outcome, the
   client, server and user agents, and the data, patient, query and
   transaction entities. A few rules are Clarity's own: the declared profile
   is one BALP knows and the most specific one, a successful REST event
   that names its client, server and one object declares a profile, and
   logins and logouts (which BALP has no profile for) keep the DICOM shape.

Usage:
  validate_fhir_auditevents.py FILE.ndjson   validate an export
  validate_fhir_auditevents.py --self-test   show that every rule passes a
      conformant resource of each profile and catches one broken on purpose
"""
import copy
import json
import sys

try:
    import fhirpathpy
    from fhirpathpy.models import models
    from fhir.resources.R4B.auditevent import AuditEvent
except ImportError as error:
    sys.exit(
        f"missing a validator package ({error}): "
        "pip install -r scripts/requirements-test.txt"
    )

BALP = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit."
FAMILIES = ("Create", "Read", "Update", "Delete", "Query")
PROFILES = FAMILIES + tuple("Patient" + f for f in FAMILIES)
AET = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RI = "http://hl7.org/fhir/restful-interaction"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
PT = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
PPT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
ET = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OR = "http://terminology.hl7.org/CodeSystem/object-role"
BET = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"

# Agent types each family's profile fixes: (client, server, user codes).
AGENTS = {
    "Create": ((DCM, "110153"), (DCM, "110152"), ("AUT", "INF", "CST")),
    "Update": ((DCM, "110153"), (DCM, "110152"), ("AUT", "INF", "CST")),
    "Read": ((DCM, "110152"), (DCM, "110153"), ("IRCP",)),
    "Query": ((DCM, "110153"), (DCM, "110152"), ("IRCP",)),
    "Delete": ((DCM, "110150"), (PPT, "custodian"), ("AUT", "INF", "CST")),
}
ACTIONS = {"Create": "C", "Read": "R", "Update": "U", "Delete": "D", "Query": "E"}


def family_of(profile):
    return profile[len("Patient"):] if profile.startswith("Patient") else profile


def in_family(*families):
    return tuple(p for p in PROFILES if family_of(p) in families)


def typed_agent(system, code):
    return f"agent.where(type.coding.where(system = '{system}' and code = '{code}').exists())"


def user_agent(codes):
    allowed = " | ".join(f"'{c}'" for c in codes)
    return f"agent.where(type.coding.where(system = '{PT}' and code in ({allowed})).exists())"


def typed_entity(system, code):
    return f"entity.where(type.system = '{system}' and type.code = '{code}')"


class Rule:
    """A FHIRPath expression that must be true of every resource declaring
    one of `profiles` ("*": of every resource), and how to break it."""

    def __init__(self, rule_id, profiles, expression, text, sample, breaks):
        self.id = rule_id
        self.profiles = profiles
        self.expression = expression
        self.text = text
        self.sample = sample  # the profile (or sample name) to break
        self.breaks = breaks  # resource -> None, mutating it
        self.compiled = fhirpathpy.compile(expression, models["r4"])

    def applies(self, declared):
        return self.profiles == "*" or bool(set(self.profiles) & declared)

    def holds(self, resource):
        try:
            return self.compiled(resource) == [True]
        except Exception:  # an expression that cannot run on it fails
            return False


def agents_of(resource, system, code):
    return [
        a for a in resource["agent"]
        if any(c.get("system") == system and c.get("code") == code
               for c in a.get("type", {}).get("coding", []))
    ]


def entities_of(resource, system, code):
    return [
        e for e in resource.get("entity", [])
        if e.get("type", {}).get("system") == system and e["type"].get("code") == code
    ]


def the_user(resource):
    return next(a for a in resource["agent"] if a.get("requestor"))


def rules():
    known = " | ".join(f"'{BALP}{p}'" for p in PROFILES)
    found = [
        Rule("balp-known-profile", "*",
             f"meta.profile.all($this in ({known}))",
             "a declared BALP profile is one of the RESTful profiles",
             "PatientRead",
             lambda r: r["meta"]["profile"].append(BALP + "Unknown")),
        Rule("balp-one-profile", "*",
             "meta.profile.count() <= 1",
             "one profile: the most specific (PatientX implies X)",
             "PatientRead",
             lambda r: r["meta"]["profile"].append(BALP + "Read")),
        Rule("clarity-complete-rest-declares-profile", "*",
             f"(type.system = '{AET}' and type.code = 'rest' and outcome = '0'"
             " and agent.where(requestor = false and network.exists()).count() = 2"
             f" and {typed_entity(ET, '2')}.count() = 1) implies meta.profile.exists()",
             "a successful REST event naming its client, server and one object declares a profile",
             "PatientRead",
             lambda r: r["meta"].pop("profile")),
        Rule("clarity-authentication-shape", "*",
             f"(type.system = '{DCM}' and type.code = '110114') implies"
             f" (subtype.where(system = '{DCM}' and (code = '110122' or code = '110123')).exists()"
             " and action = 'E' and agent.where(requestor = true).exists() and meta.profile.empty())",
             "logins and logouts: DICOM Login/Logout subtype, action E, a requestor, no BALP profile",
             "login",
             lambda r: r.update(subtype=[c for c in r["subtype"] if c["system"] != DCM])),
        Rule("balp-type-rest", PROFILES,
             f"type.system = '{AET}' and type.code = 'rest'",
             "type is audit-event-type#rest",
             "PatientUpdate",
             lambda r: r.update(type={"system": DCM, "code": "110100"})),
        Rule("balp-outcome-success", PROFILES,
             "outcome = '0'",
             "outcome is success (BALP profiles successes only)",
             "PatientCreate",
             lambda r: r.update(outcome="4")),
        Rule("balp-create-subtype", in_family("Create"),
             f"subtype.where(system = '{RI}' and code = 'create' and display = 'create'"
             " and version.empty() and userSelected.empty()).count() = 1",
             "exactly the restful-interaction#create subtype",
             "Create",
             lambda r: [c.update(display="Create") for c in r["subtype"] if c["system"] == RI]),
        Rule("balp-read-subtype", in_family("Read"),
             f"subtype.where(system = '{RI}' and ((code = 'read' and display = 'read')"
             " or (code = 'vread' and display = 'vread'))).exists()",
             "a restful-interaction#read or #vread subtype",
             "PatientRead",
             lambda r: [c.update(code="search-type", display="search-type")
                        for c in r["subtype"] if c["system"] == RI]),
        Rule("balp-update-subtype", in_family("Update"),
             f"subtype.where(system = '{RI}' and ((code = 'update' and display = 'update')"
             " or (code = 'patch' and display = 'patch'))).exists()",
             "a restful-interaction#update or #patch subtype",
             "Update",
             lambda r: r.update(subtype=[c for c in r["subtype"] if c["system"] != RI])),
        Rule("balp-delete-subtype", in_family("Delete"),
             f"subtype.count() = 1 and subtype.system = '{RI}' and subtype.code = 'delete'",
             "one subtype only: restful-interaction#delete",
             "PatientDelete",
             lambda r: r["subtype"].append({"system": "urn:clarity:audit-subtype", "code": "record.delete"})),
        Rule("balp-query-subtype", in_family("Query"),
             f"subtype.where(system = '{RI}' and (code = 'search' or code = 'search-type'"
             " or code = 'search-system')).exists()",
             "a restful-interaction search subtype",
             "Query",
             lambda r: r.update(subtype=[c for c in r["subtype"] if c["system"] != RI])),
        Rule("balp-data-entity", in_family("Create", "Read", "Update", "Delete"),
             f"{typed_entity(ET, '2')}.count() = 1 and {typed_entity(ET, '2')}.all(what.exists()"
             f" and role.system = '{OR}' and (role.code = '4' or role.code = '3' or role.code = '20'))",
             "one data entity: System Object with what, role Domain Resource, Report or Job",
             "PatientRead",
             lambda r: entities_of(r, ET, "2")[0].pop("what")),
        Rule("balp-patient-entity", tuple(p for p in PROFILES if p.startswith("Patient")),
             f"entity.count() >= 2 and {typed_entity(ET, '1')}.count() = 1 and {typed_entity(ET, '1')}"
             f".all(role.system = '{OR}' and role.code = '1' and what.reference.startsWith('Patient/'))",
             "Patient profiles: one Person entity, role Patient, what a Patient reference",
             "PatientQuery",
             lambda r: r.update(entity=[e for e in r["entity"] if e["type"].get("code") != "1"])),
        Rule("clarity-base-profile-without-patient", FAMILIES,
             f"{typed_entity(ET, '1')}.where(role.code = '1').empty()",
             "an event naming a patient declares the Patient variant",
             "Read",
             lambda r: r["entity"].append({
                 "what": {"reference": "Patient/p1"},
                 "type": {"system": ET, "code": "1"}, "role": {"system": OR, "code": "1"}})),
        Rule("balp-query-entity", in_family("Query"),
             f"{typed_entity(ET, '2')}.count() = 1 and {typed_entity(ET, '2')}.all(role.system = '{OR}'"
             " and role.code = '24' and query.exists() and what.empty() and lifecycle.empty()"
             " and detail.empty())",
             "one query entity: role Query, base64 query, no what, lifecycle or detail",
             "PatientQuery",
             lambda r: [e.update(detail=[{"type": "query-hmac-sha256", "valueString": "x"}])
                        for e in entities_of(r, ET, "2")]),
        Rule("balp-transaction-entity", PROFILES,
             f"{typed_entity(BET, 'XrequestId')}.count() <= 1"
             f" and {typed_entity(BET, 'XrequestId')}.all(what.identifier.value.exists())",
             "at most one X-Request-Id entity, with its value",
             "Create",
             lambda r: entities_of(r, BET, "XrequestId")[0].update(what={"display": "request"})),
        Rule("balp-delete-minimal", in_family("Delete"),
             f"{typed_agent(*AGENTS['Delete'][0])}.all(role.empty() and altId.empty() and name.empty()"
             " and location.empty() and policy.empty() and purposeOfUse.empty())"
             f" and {typed_agent(*AGENTS['Delete'][1])}.all(role.empty() and altId.empty() and name.empty()"
             " and location.empty() and policy.empty() and purposeOfUse.empty())"
             f" and {user_agent(AGENTS['Delete'][2])}.all(altId.empty() and location.empty() and policy.empty())"
             " and entity.all(lifecycle.empty() and name.empty() and query.empty() and detail.empty())",
             "Delete: no agent altId (nor role, name, ... of client and server); entities without lifecycle, name, query or detail",
             "Delete",
             lambda r: the_user(r).update(altId="https://idp.example|sub")),
    ]
    for family in FAMILIES:
        (client, server, user) = AGENTS[family]
        members = in_family(family)
        found += [
            Rule(f"balp-{family.lower()}-action", members,
                 f"action = '{ACTIONS[family]}'",
                 f"action is {ACTIONS[family]}",
                 family,
                 lambda r, a=ACTIONS[family]: r.update(action="R" if a != "R" else "C")),
            Rule(f"balp-{family.lower()}-client", members,
                 f"{typed_agent(*client)}.count() = 1 and {typed_agent(*client)}"
                 ".all(who.exists() and network.address.exists() and media.empty())",
                 f"one client agent ({client[1]}) with who and network address",
                 "Patient" + family,
                 lambda r, c=client: agents_of(r, *c)[0].pop("network")),
            Rule(f"balp-{family.lower()}-server", members,
                 f"{typed_agent(*server)}.count() = 1 and {typed_agent(*server)}"
                 ".all(who.exists() and network.address.exists() and media.empty())",
                 f"one server agent ({server[1]}) with who and network address",
                 family,
                 lambda r, s=server: agents_of(r, *s)[0].pop("network")),
            Rule(f"balp-{family.lower()}-user", members,
                 f"{user_agent(user)}.count() <= 1 and {user_agent(user)}"
                 ".all(who.exists() and requestor = true and network.empty() and media.empty())",
                 f"at most one user agent ({'/'.join(user)}): who, requestor, no network",
                 "Patient" + family,
                 lambda r: the_user(r).update(network={"address": "10.1.2.3", "type": "2"})),
        ]
    return found


def coding(system, code, display=None):
    c = {"system": system, "code": code}
    if display is not None:
        c["display"] = display
    return c


def sample(name):
    """A resource conforming to BALP profile `name` (or a Clarity login
    event for "login"), written here independently of Clarity."""
    resource = {
        "resourceType": "AuditEvent",
        "id": "0190a5b8-0000-7000-8000-000000000001",
        "meta": {"tag": [coding("urn:clarity:audit-subtype", "x.y")]},
        "recorded": "2025-01-02T03:04:05.000006Z",
        "outcome": "0",
        "source": {"observer": {"display": "clarity"}},
    }
    user = {"who": {"identifier": {"system": "urn:clarity:user", "value": "u1"}}, "requestor": True}
    client_address = {"address": "10.1.2.3", "type": "2"}
    if name == "login":
        resource.update(
            type=coding(DCM, "110114", "User Authentication"),
            subtype=[coding("urn:clarity:audit-subtype", "auth.login"), coding(DCM, "110122", "Login")],
            action="E",
            agent=[user, {"who": {"display": "10.1.2.3"}, "requestor": False, "network": client_address}],
        )
        return resource
    family = family_of(name)
    (client, server, user_codes) = AGENTS[family]
    interaction = {"Create": "create", "Read": "read", "Update": "update",
                   "Delete": "delete", "Query": "search-type"}[family]
    subtype = [coding(RI, interaction, interaction)]
    if family != "Delete":
        subtype.insert(0, coding("urn:clarity:audit-subtype", "x.y"))
    user["type"] = {"coding": [coding(PT, user_codes[0])]}
    resource.update(
        meta={"profile": [BALP + name], "tag": resource["meta"]["tag"]},
        type=coding(AET, "rest", "Restful Operation"),
        subtype=subtype,
        action=ACTIONS[family],
        agent=[
            user,
            {"type": {"coding": [coding(*client)]}, "who": {"display": "10.1.2.3"},
             "requestor": False, "network": client_address},
            {"type": {"coding": [coding(*server)]}, "who": {"display": "clarity"},
             "requestor": False, "network": {"address": "https://clarity.example.org", "type": "5"}},
        ],
    )
    entities = []
    if family == "Query":
        entities.append({"type": coding(ET, "2"), "role": coding(OR, "24"), "query": "eC55"})
    else:
        entities.append({"what": {"identifier": {"value": "o1"}}, "type": coding(ET, "2"),
                         "role": coding(OR, "4")})
    if name.startswith("Patient"):
        entities.append({"what": {"reference": "Patient/p1"}, "type": coding(ET, "1"),
                         "role": coding(OR, "1")})
    entities.append({"what": {"identifier": {"value": "r1"}}, "type": coding(BET, "XrequestId")})
    resource["entity"] = entities
    return resource


def structure_error(resource):
    """Why `resource` is not an R4 AuditEvent, or None."""
    try:
        AuditEvent.model_validate(resource)
    except Exception as error:
        return str(error)
    return None


def declared(resource):
    return {
        p[len(BALP):] if p.startswith(BALP) else p
        for p in resource.get("meta", {}).get("profile", [])
    }


def broken_rules(resource, all_rules):
    names = declared(resource)
    return [r for r in all_rules if r.applies(names) and not r.holds(resource)]


def self_test():
    all_rules = rules()
    failures = []
    for name in PROFILES + ("login",):
        good = sample(name)
        if error := structure_error(good):
            failures.append(f"sample {name} is not a valid AuditEvent: {error}")
        for rule in broken_rules(good, all_rules):
            failures.append(f"sample {name} fails {rule.id}: {rule.text}")
    for rule in all_rules:
        bad = sample(rule.sample)
        rule.breaks(bad)
        if rule.holds(bad) or not rule.applies(declared(bad)):
            failures.append(f"rule {rule.id} does not catch its broken {rule.sample} sample")
        # Still valid FHIR: only the BALP rule stands between it and an export.
        if error := structure_error(bad):
            failures.append(f"rule {rule.id}: its broken sample is not even valid FHIR: {error}")
    if failures:
        sys.exit("self-test failed:\n  " + "\n  ".join(failures))
    print(f"self-test: {len(all_rules)} BALP rules pass conformant samples of "
          f"{len(PROFILES)} profiles and a login, and each catches its broken sample "
          "(valid FHIR otherwise)")


def main(path):
    all_rules = rules()
    counts = {}
    total = 0
    problems = []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            resource = json.loads(line)
            if resource.get("resourceType") != "AuditEvent":
                sys.exit(f"line {number}: not an AuditEvent")
            if error := structure_error(resource):
                sys.exit(f"line {number}: invalid AuditEvent: {error}")
            for rule in broken_rules(resource, all_rules):
                problems.append(f"line {number} ({', '.join(sorted(declared(resource))) or 'no profile'}):"
                                f" {rule.id}: {rule.text}")
            total += 1
            for name in declared(resource) or {"(no BALP profile)"}:
                counts[name] = counts.get(name, 0) + 1
    if total == 0:
        sys.exit("no AuditEvent resources in the file")
    if problems:
        sys.exit("BALP rules broken:\n  " + "\n  ".join(problems))
    print(f"{total} AuditEvent resources are valid FHIR R4 and keep the BALP rules:")
    for name in sorted(counts):
        print(f"  {name}: {counts[name]}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--self-test"]:
        self_test()
    elif len(sys.argv) == 2:
        main(sys.argv[1])
    else:
        sys.exit(__doc__)

//! FHIR R4 AuditEvent for an audit event, for NDJSON export (S-AUD-5).
//!
//! Data access and administration are RESTful operations; their events take
//! the shape of the IHE Basic Audit Log Patterns (BALP) and declare in
//! `meta.profile` the BALP profile they conform to. An event declares one
//! only when it carries everything the profile requires:
//!
//! - it succeeded (BALP profiles successes only; failures keep the shape);
//! - its client is known by network address (a request through the HTTP
//!   server, or one whose context an embedding application gave);
//! - the server's address is configured (`audit.server_address`): events do
//!   not record it;
//! - creates, reads, updates and deletes name the object acted on; a query
//!   names no other object than the patient.
//!
//! The patient variant (`PatientRead`, ...) is declared when the event names
//! a patient. BALP has no profile for logins, logouts or security alerts:
//! those events keep the DICOM shape (`110114` User Authentication with
//! `110122` Login / `110123` Logout, `110113` Security Alert) and declare
//! none. Identifiers only, never PHI (S-AUD-4): a query is exported as the
//! operation and the keyed hash of its parameter, never the parameter.

use base64::Engine;
use serde_json::{Value, json};
use uuid::Uuid;

use super::AuditEvent;

/// Canonical base of the BALP profiles.
const BALP_PROFILE_BASE: &str = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/";
const AUDIT_EVENT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-event-type";
const RESTFUL_INTERACTION: &str = "http://hl7.org/fhir/restful-interaction";
const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const PARTICIPATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
const PROVENANCE_PARTICIPANT: &str =
    "http://terminology.hl7.org/CodeSystem/provenance-participant-type";
const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";
const BALP_ENTITY_TYPE: &str = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType";
const BALP_OTHER_ID: &str = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/ihe-otherId";
const SUBTYPE_SYSTEM: &str = "urn:clarity:audit-subtype";

/// The BALP RESTful pattern an event follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Create,
    Read,
    Update,
    Delete,
    Query,
}

impl Family {
    /// The pattern of `event`, for data access and administration.
    fn of(event: &AuditEvent) -> Option<Family> {
        if !matches!(&*event.event_type, "rest" | "admin") {
            return None;
        }
        let subtype = &*event.subtype;
        let searches = [".list", ".lookup", ".query", ".export"]
            .iter()
            .any(|s| subtype.ends_with(s));
        if searches || event.query_hash.is_some() {
            return Some(Family::Query);
        }
        match &*event.action {
            "C" => Some(Family::Create),
            "R" => Some(Family::Read),
            "U" => Some(Family::Update),
            "D" => Some(Family::Delete),
            _ => None,
        }
    }

    /// The profile's name without and with a patient subject.
    fn profile(self, patient: bool) -> &'static str {
        match (self, patient) {
            (Family::Create, false) => "IHE.BasicAudit.Create",
            (Family::Create, true) => "IHE.BasicAudit.PatientCreate",
            (Family::Read, false) => "IHE.BasicAudit.Read",
            (Family::Read, true) => "IHE.BasicAudit.PatientRead",
            (Family::Update, false) => "IHE.BasicAudit.Update",
            (Family::Update, true) => "IHE.BasicAudit.PatientUpdate",
            (Family::Delete, false) => "IHE.BasicAudit.Delete",
            (Family::Delete, true) => "IHE.BasicAudit.PatientDelete",
            (Family::Query, false) => "IHE.BasicAudit.Query",
            (Family::Query, true) => "IHE.BasicAudit.PatientQuery",
        }
    }

    /// The restful-interaction code (as code and display).
    fn interaction(self) -> &'static str {
        match self {
            Family::Create => "create",
            Family::Read => "read",
            Family::Update => "update",
            Family::Delete => "delete",
            Family::Query => "search-type",
        }
    }

    /// FHIR's action code: a search is `E` (execute) in FHIR, whatever
    /// Clarity stored.
    fn action(self) -> &'static str {
        match self {
            Family::Create => "C",
            Family::Read => "R",
            Family::Update => "U",
            Family::Delete => "D",
            Family::Query => "E",
        }
    }

    /// Agent types of the client, the server and the user. Reads name the
    /// client the destination (data flows to it); deletes name the client
    /// the application and the server the custodian.
    fn agent_types(self) -> (Value, Value, Value) {
        let source = coding(DCM, "110153", "Source Role ID");
        let destination = coding(DCM, "110152", "Destination Role ID");
        let recipient = coding(PARTICIPATION, "IRCP", "information recipient");
        let author = coding(PARTICIPATION, "AUT", "author (originator)");
        match self {
            Family::Read => (destination, source, recipient),
            Family::Query => (source, destination, recipient),
            Family::Create | Family::Update => (source, destination, author),
            Family::Delete => (
                coding(DCM, "110150", "Application"),
                coding(PROVENANCE_PARTICIPANT, "custodian", "Custodian"),
                author,
            ),
        }
    }
}

fn coding(system: &str, code: &str, display: &str) -> Value {
    json!({ "system": system, "code": code, "display": display })
}

fn patient_ref(patient: Uuid) -> Value {
    json!({ "reference": format!("Patient/{patient}") })
}

fn object_ref(object: Uuid) -> Value {
    json!({ "identifier": { "system": "urn:clarity:object", "value": object.to_string() } })
}

/// The BALP data entity's `what` of a create, read, update or delete (the
/// patient itself for `patient.*` events, else the record, user, grant or
/// account named), and an object named besides it, exported plainly.
fn objects(event: &AuditEvent, family: Option<Family>) -> (Option<Value>, Option<Uuid>) {
    match family {
        Some(f) if f != Family::Query => {
            if event.subtype.starts_with("patient.") {
                (event.patient_id.map(patient_ref), event.entity_id)
            } else {
                (event.entity_id.map(object_ref), None)
            }
        }
        _ => (None, event.entity_id),
    }
}

/// The BALP profile `event` conforms to, if any (see the module docs).
fn balp_profile(event: &AuditEvent, server_address: Option<&str>) -> Option<&'static str> {
    let family = Family::of(event)?;
    let (data, other) = objects(event, Some(family));
    let complete = event.outcome == "0"
        && event.client_address.is_some()
        && server_address.is_some()
        && other.is_none()
        && (family == Family::Query || data.is_some());
    complete.then(|| family.profile(event.patient_id.is_some()))
}

/// The FHIR network address type of `address`: IP (2), URI (5) or machine
/// name (1).
fn network(address: &str) -> Value {
    let kind = if address.parse::<std::net::IpAddr>().is_ok() {
        "2"
    } else if address.contains("://") {
        "5"
    } else {
        "1"
    };
    json!({ "address": address, "type": kind })
}

/// The FHIR R4 `AuditEvent` resource for `event`. `server_address` is where
/// clients reach the server (`audit.server_address`); without it no event
/// declares a BALP profile.
pub fn to_fhir(event: &AuditEvent, server_address: Option<&str>) -> Value {
    let family = Family::of(event);
    let profile = balp_profile(event, server_address);
    let clarity_subtype = json!({ "system": SUBTYPE_SYSTEM, "code": event.subtype });

    let (event_type, subtype) = match (&*event.event_type, family) {
        ("login", _) => (
            coding(DCM, "110114", "User Authentication"),
            vec![clarity_subtype.clone(), coding(DCM, "110122", "Login")],
        ),
        ("logout", _) => (
            coding(DCM, "110114", "User Authentication"),
            vec![clarity_subtype.clone(), coding(DCM, "110123", "Logout")],
        ),
        ("security", _) => {
            let mut subtype = vec![clarity_subtype.clone()];
            if event.subtype == "break_glass" {
                subtype.push(coding(DCM, "110127", "Emergency Override Started"));
            }
            (coding(DCM, "110113", "Security Alert"), subtype)
        }
        (_, Some(family)) => {
            let interaction = coding(
                RESTFUL_INTERACTION,
                family.interaction(),
                family.interaction(),
            );
            // Delete allows one subtype only: Clarity's goes in meta.tag.
            let subtype = if family == Family::Delete {
                vec![interaction]
            } else {
                vec![clarity_subtype.clone(), interaction]
            };
            (
                coding(AUDIT_EVENT_TYPE, "rest", "Restful Operation"),
                subtype,
            )
        }
        _ => (
            coding(AUDIT_EVENT_TYPE, "rest", "Restful Operation"),
            vec![clarity_subtype.clone()],
        ),
    };

    let (client_type, server_type, user_type) = family.map_or_else(
        || {
            (
                coding(DCM, "110153", "Source Role ID"),
                coding(DCM, "110152", "Destination Role ID"),
                Value::Null,
            )
        },
        Family::agent_types,
    );

    // The user: who asked (requestor), never a network node.
    let mut user = match event.actor_id {
        Some(id) => json!({
            "who": { "identifier": { "system": "urn:clarity:user", "value": id.to_string() } },
            "requestor": true
        }),
        None => json!({ "who": { "display": "unauthenticated" }, "requestor": true }),
    };
    if !user_type.is_null() {
        user["type"] = json!({ "coding": [user_type] });
    }
    if let Some(roles) = &event.actor_roles {
        user["role"] = json!([{ "text": roles }]);
    }
    if let (Some(issuer), Some(subject)) = (&event.actor_issuer, &event.actor_subject) {
        // The identity provider's account: BALP's other-identifier extension
        // always, and `altId` (`system|value`) where the profile allows it.
        user["extension"] = json!([{
            "url": BALP_OTHER_ID,
            "valueIdentifier": { "system": issuer, "value": subject }
        }]);
        if family != Some(Family::Delete) {
            user["altId"] = json!(format!("{issuer}|{subject}"));
        }
    }
    let mut agents = vec![user];
    if let Some(address) = &event.client_address {
        agents.push(json!({
            "type": { "coding": [client_type] },
            "who": { "display": address },
            "requestor": false,
            "network": network(address)
        }));
    }
    // The server: the Clarity instance that served and recorded the event
    // (each instance writes its own chain).
    let mut server = json!({
        "type": { "coding": [server_type] },
        "who": {
            "identifier": { "system": "urn:clarity:chain", "value": event.chain_id.to_string() },
            "display": "clarity"
        },
        "requestor": false
    });
    if let Some(address) = server_address {
        server["network"] = network(address);
    }
    agents.push(server);

    let mut entities = Vec::new();
    let (data, other) = objects(event, family);
    if let Some(what) = data {
        entities.push(json!({
            "what": what,
            "type": coding(ENTITY_TYPE, "2", "System Object"),
            "role": coding(OBJECT_ROLE, "4", "Domain Resource")
        }));
    }
    if let Some(patient) = event.patient_id {
        entities.push(json!({
            "what": patient_ref(patient),
            "type": coding(ENTITY_TYPE, "1", "Person"),
            "role": coding(OBJECT_ROLE, "1", "Patient")
        }));
    }
    if let Some(object) = other {
        entities.push(json!({
            "what": object_ref(object),
            "type": coding(ENTITY_TYPE, "2", "System Object")
        }));
    }
    if family == Some(Family::Query) || event.query_hash.is_some() {
        // Never the query itself: the operation, and for lookups the field
        // and a keyed HMAC-SHA-256 of the normalised value.
        let text = match &event.query_hash {
            Some(hash) => format!("{}?{hash}", event.subtype),
            None => event.subtype.to_string(),
        };
        entities.push(json!({
            "type": coding(ENTITY_TYPE, "2", "System Object"),
            "role": coding(OBJECT_ROLE, "24", "Query"),
            "query": base64::engine::general_purpose::STANDARD.encode(text),
            "description": "the Clarity operation; for a lookup also ?field: and a keyed HMAC-SHA-256 of the value (query-hmac-sha256), never the value"
        }));
    }
    if let Some(request) = &event.request_id {
        entities.push(json!({
            "what": { "identifier": { "system": "urn:clarity:request", "value": request } },
            "type": { "system": BALP_ENTITY_TYPE, "code": "XrequestId" }
        }));
    }

    let mut meta = json!({ "tag": [clarity_subtype] });
    if let Some(profile) = profile {
        meta["profile"] = json!([format!("{BALP_PROFILE_BASE}{profile}")]);
    }
    let mut resource = json!({
        "resourceType": "AuditEvent",
        "id": event.id.to_string(),
        "meta": meta,
        "type": event_type,
        "subtype": subtype,
        "action": family.map_or(&*event.action, |f| f.action()),
        "recorded": event.recorded.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "outcome": event.outcome,
        "agent": agents,
        "source": {
            "observer": {
                "identifier": { "system": "urn:clarity:chain", "value": event.chain_id.to_string() },
                "display": format!("clarity chain {} seq {}", event.chain_id, event.seq)
            },
            "type": [coding("http://terminology.hl7.org/CodeSystem/security-source-type", "4", "Application Server")]
        }
    });
    if let Some(reason) = &event.reason {
        resource["outcomeDesc"] = json!(reason);
    }
    if let Some(purpose) = &event.purpose {
        resource["purposeOfEvent"] = json!([{ "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
            "code": purpose
        }] }]);
    }
    if !entities.is_empty() {
        resource["entity"] = json!(entities);
    }
    resource
}

#[cfg(test)]
mod tests {
    //! S-AUD-5: each BALP profile family, with the elements its profile
    //! requires; events BALP has no profile for, or that lack what one
    //! requires, declare none.

    use super::*;
    use chrono::Utc;

    const SERVER: Option<&str> = Some("https://clarity.example.org");

    fn event(event_type: &'static str, subtype: &'static str, action: &'static str) -> AuditEvent {
        AuditEvent {
            id: Uuid::now_v7(),
            chain_id: Uuid::now_v7(),
            seq: 7,
            recorded: Utc::now(),
            event_type: event_type.into(),
            subtype: subtype.into(),
            action: action.into(),
            outcome: "0".into(),
            purpose: Some("TREAT".into()),
            actor_id: Some(Uuid::now_v7()),
            actor_roles: Some("clinician".into()),
            client_address: Some("10.1.2.3".into()),
            patient_id: None,
            entity_id: None,
            query_hash: None,
            reason: Some("care_team".into()),
            request_id: Some(Uuid::new_v4().to_string()),
            actor_issuer: None,
            actor_subject: None,
            prev_mac: Vec::new(),
            mac: Vec::new(),
        }
    }

    fn with_patient(mut e: AuditEvent) -> AuditEvent {
        e.patient_id = Some(Uuid::now_v7());
        e
    }

    fn with_entity(mut e: AuditEvent) -> AuditEvent {
        e.entity_id = Some(Uuid::now_v7());
        e
    }

    fn profiles(r: &Value) -> Vec<String> {
        r["meta"]["profile"]
            .as_array()
            .map(|p| {
                p.iter()
                    .map(|u| u.as_str().expect("uri").to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn assert_profile(r: &Value, name: &str) {
        assert_eq!(
            profiles(r),
            [format!("{BALP_PROFILE_BASE}IHE.BasicAudit.{name}")]
        );
        assert_eq!(r["type"]["system"], AUDIT_EVENT_TYPE);
        assert_eq!(r["type"]["code"], "rest");
        assert_eq!(r["outcome"], "0");
        assert!(r["recorded"].is_string());
        assert!(r["agent"].as_array().expect("agents").len() >= 2);
    }

    /// The one agent whose type is `system|code`.
    fn agent<'a>(r: &'a Value, system: &str, code: &str) -> &'a Value {
        let found: Vec<&Value> = r["agent"]
            .as_array()
            .expect("agents")
            .iter()
            .filter(|a| {
                a["type"]["coding"][0]["system"] == system && a["type"]["coding"][0]["code"] == code
            })
            .collect();
        assert_eq!(found.len(), 1, "one {code} agent in {r}");
        found[0]
    }

    /// The client, server and user agents have the types the family's
    /// profile fixes, and what each needs.
    fn assert_agents(r: &Value, client: (&str, &str), server: (&str, &str), user: &str) {
        let c = agent(r, client.0, client.1);
        assert!(c["who"].is_object() && c["network"]["address"] == "10.1.2.3");
        assert_eq!(c["network"]["type"], "2");
        assert_eq!(c["requestor"], false);
        let s = agent(r, server.0, server.1);
        assert_eq!(s["who"]["identifier"]["system"], "urn:clarity:chain");
        assert_eq!(s["network"]["address"], SERVER.unwrap());
        assert_eq!(s["network"]["type"], "5");
        assert_eq!(s["requestor"], false);
        let u = agent(r, PARTICIPATION, user);
        assert_eq!(u["requestor"], true);
        assert_eq!(u["who"]["identifier"]["system"], "urn:clarity:user");
        assert!(u.get("network").is_none(), "users are not network nodes");
        assert_eq!(r["agent"][0]["requestor"], true, "the requestor first");
    }

    /// Entities of type `system|code`.
    fn entities<'a>(r: &'a Value, code: &str) -> Vec<&'a Value> {
        r["entity"]
            .as_array()
            .map(|e| {
                e.iter()
                    .filter(|e| e["type"]["system"] == ENTITY_TYPE && e["type"]["code"] == code)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The data slice: one System Object, role Domain Resource, with `what`.
    fn assert_data(r: &Value) -> &Value {
        let data = entities(r, "2");
        assert_eq!(data.len(), 1, "one data entity: {r}");
        assert_eq!(data[0]["role"]["system"], OBJECT_ROLE);
        assert_eq!(data[0]["role"]["code"], "4");
        assert!(data[0]["what"].is_object());
        data[0]
    }

    /// The patient slice: one Person, role Patient, a Patient reference.
    fn assert_patient(r: &Value, e: &AuditEvent) {
        let patient = entities(r, "1");
        assert_eq!(patient.len(), 1);
        assert_eq!(patient[0]["role"]["system"], OBJECT_ROLE);
        assert_eq!(patient[0]["role"]["code"], "1");
        assert_eq!(
            patient[0]["what"]["reference"],
            format!("Patient/{}", e.patient_id.expect("patient"))
        );
    }

    fn assert_interaction(r: &Value, code: &str) {
        let found = r["subtype"]
            .as_array()
            .expect("subtypes")
            .iter()
            .filter(|s| **s == coding(RESTFUL_INTERACTION, code, code))
            .count();
        assert_eq!(found, 1, "exactly one {code} subtype: {r}");
    }

    fn assert_transaction(r: &Value, e: &AuditEvent) {
        let tx: Vec<&Value> = r["entity"]
            .as_array()
            .expect("entities")
            .iter()
            .filter(|x| {
                x["type"]["system"] == BALP_ENTITY_TYPE && x["type"]["code"] == "XrequestId"
            })
            .collect();
        assert_eq!(tx.len(), 1);
        assert_eq!(tx[0]["what"]["identifier"]["value"], json!(e.request_id));
    }

    fn tag(r: &Value) -> &Value {
        &r["meta"]["tag"][0]
    }

    #[test]
    fn creates_declare_create_or_patient_create() {
        let e = with_entity(event("admin", "user.create", "C"));
        let r = to_fhir(&e, SERVER);
        assert_profile(&r, "Create");
        assert_interaction(&r, "create");
        assert_eq!(r["action"], "C");
        assert_agents(&r, (DCM, "110153"), (DCM, "110152"), "AUT");
        let data = assert_data(&r);
        assert_eq!(
            data["what"]["identifier"]["value"],
            e.entity_id.unwrap().to_string()
        );
        assert!(entities(&r, "1").is_empty());
        assert_transaction(&r, &e);
        assert_eq!(tag(&r)["code"], "user.create");

        let e = with_entity(with_patient(event("rest", "record.create", "C")));
        let r = to_fhir(&e, SERVER);
        assert_profile(&r, "PatientCreate");
        assert_data(&r);
        assert_patient(&r, &e);

        let e = with_patient(event("rest", "patient.create", "C"));
        let r = to_fhir(&e, SERVER);
        assert_profile(&r, "PatientCreate");
        assert_eq!(
            assert_data(&r)["what"]["reference"],
            format!("Patient/{}", e.patient_id.unwrap()),
            "the patient is the data created"
        );
        assert_patient(&r, &e);
    }

    #[test]
    fn reads_declare_read_or_patient_read() {
        let e = with_entity(event("admin", "user.read", "R"));
        let r = to_fhir(&e, SERVER);
        assert_profile(&r, "Read");
        assert_interaction(&r, "read");
        assert_eq!(r["action"], "R");
        // A read names the client the destination and the server the source.
        assert_agents(&r, (DCM, "110152"), (DCM, "110153"), "IRCP");
        assert_data(&r);

        let e = with_entity(with_patient(event("rest", "record.read", "R")));
        let r = to_fhir(&e, SERVER);
        assert_profile(&r, "PatientRead");
        assert_agents(&r, (DCM, "110152"), (DCM, "110153"), "IRCP");
        assert_data(&r);
        assert_patient(&r, &e);
        assert_transaction(&r, &e);
        assert_eq!(r["purposeOfEvent"][0]["coding"][0]["code"], "TREAT");
    }

    #[test]
    fn updates_declare_update_or_patient_update() {
        let e = with_entity(event("admin", "user.roles", "U"));
        let r = to_fhir(&e, SERVER);
        assert_profile(&r, "Update");
        assert_interaction(&r, "update");
        assert_eq!(r["action"], "U");
        assert_agents(&r, (DCM, "110153"), (DCM, "110152"), "AUT");
        assert_data(&r);

        let e = with_patient(event("rest", "patient.update", "U"));
        let r = to_fhir(&e, SERVER);
        assert_profile(&r, "PatientUpdate");
        assert_data(&r);
        assert_patient(&r, &e);
    }

    #[test]
    fn deletes_declare_delete_or_patient_delete() {
        let mut e = with_entity(event("admin", "service_account.delete", "D"));
        e.actor_issuer = Some("https://idp.example".into());
        e.actor_subject = Some("sub-1".into());
        let r = to_fhir(&e, SERVER);
        assert_profile(&r, "Delete");
        assert_eq!(r["action"], "D");
        // Exactly one subtype; Clarity's own goes in meta.tag.
        assert_eq!(
            r["subtype"],
            json!([coding(RESTFUL_INTERACTION, "delete", "delete")])
        );
        assert_eq!(tag(&r)["code"], "service_account.delete");
        assert_agents(
            &r,
            (DCM, "110150"),
            (PROVENANCE_PARTICIPANT, "custodian"),
            "AUT",
        );
        let user = agent(&r, PARTICIPATION, "AUT");
        assert!(
            user.get("altId").is_none(),
            "Delete forbids the user's altId"
        );
        assert_eq!(user["extension"][0]["url"], BALP_OTHER_ID);
        assert_eq!(user["extension"][0]["valueIdentifier"]["value"], "sub-1");
        assert_data(&r);

        let e = with_entity(with_patient(event("rest", "record.delete", "D")));
        let r = to_fhir(&e, SERVER);
        assert_profile(&r, "PatientDelete");
        assert_data(&r);
        assert_patient(&r, &e);
        let e = with_patient(event("rest", "patient.erase", "D"));
        assert_profile(&to_fhir(&e, SERVER), "PatientDelete");
    }

    #[test]
    fn queries_declare_query_or_patient_query() {
        let mut e = event("rest", "patient.lookup", "R");
        e.query_hash = Some("mrn:00112233445566778899aabbccddeeff".into());
        let r = to_fhir(&e, SERVER);
        assert_profile(&r, "Query");
        assert_interaction(&r, "search-type");
        assert_eq!(r["action"], "E", "a search is an execute in FHIR");
        assert_agents(&r, (DCM, "110153"), (DCM, "110152"), "IRCP");
        let query = entities(&r, "2");
        assert_eq!(query.len(), 1);
        assert_eq!(query[0]["role"]["code"], "24");
        assert!(query[0].get("what").is_none() && query[0].get("detail").is_none());
        let text = base64::engine::general_purpose::STANDARD
            .decode(query[0]["query"].as_str().expect("base64"))
            .expect("decodes");
        assert_eq!(text, b"patient.lookup?mrn:00112233445566778899aabbccddeeff");
        assert!(entities(&r, "1").is_empty());

        let e = with_patient(event("rest", "record.list", "R"));
        let r = to_fhir(&e, SERVER);
        assert_profile(&r, "PatientQuery");
        assert_patient(&r, &e);
        assert_eq!(entities(&r, "2").len(), 1, "the query, and no data entity");
        assert_profile(&to_fhir(&event("admin", "user.list", "R"), SERVER), "Query");
        assert_profile(
            &to_fhir(&event("rest", "research.list", "R"), SERVER),
            "Query",
        );
        // A query that names another object fits no query profile.
        let e = with_entity(event("admin", "user.identity.list", "R"));
        assert!(profiles(&to_fhir(&e, SERVER)).is_empty());
    }

    #[test]
    fn events_lacking_what_a_profile_requires_declare_none() {
        let read = with_entity(with_patient(event("rest", "record.read", "R")));
        assert!(!profiles(&to_fhir(&read, SERVER)).is_empty());
        let mut failed = read.clone();
        failed.outcome = "4".into();
        let mut in_process = read.clone();
        in_process.client_address = None;
        let purge = event("admin", "audit.purge", "D");
        for (what, e, server) in [
            ("a failure", &failed, SERVER),
            ("no client address", &in_process, SERVER),
            ("no server address", &read, None),
            ("no object deleted", &purge, SERVER),
        ] {
            let r = to_fhir(e, server);
            assert!(profiles(&r).is_empty(), "{what}: {r}");
            // The shape stays: Clarity's subtype, rest, the requestor first.
            assert_eq!(tag(&r)["code"], &*e.subtype);
            assert_eq!(r["type"]["code"], "rest");
            assert_eq!(r["agent"][0]["requestor"], true);
        }
    }

    #[test]
    fn logins_logouts_and_security_alerts_keep_the_dicom_shape() {
        for (event_type, subtype, code) in [
            ("login", "auth.login", "110122"),
            ("logout", "auth.logout", "110123"),
        ] {
            let mut e = event(event_type, subtype, "E");
            e.actor_issuer = Some("https://idp.example".into());
            e.actor_subject = Some("sub-1".into());
            let r = to_fhir(&e, SERVER);
            assert!(profiles(&r).is_empty(), "BALP has no {event_type} profile");
            assert_eq!(r["type"], coding(DCM, "110114", "User Authentication"));
            assert!(
                r["subtype"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s["code"] == code)
            );
            assert_eq!(r["action"], "E");
            assert_eq!(r["agent"][0]["requestor"], true);
            assert_eq!(r["agent"][0]["altId"], "https://idp.example|sub-1");
            assert_eq!(r["agent"][1]["network"]["address"], "10.1.2.3");
            assert_eq!(tag(&r)["code"], subtype);
        }
        let r = to_fhir(&with_patient(event("security", "break_glass", "E")), SERVER);
        assert!(profiles(&r).is_empty());
        assert_eq!(r["type"]["code"], "110113");
        assert!(
            r["subtype"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["code"] == "110127")
        );
        assert_eq!(entities(&r, "1").len(), 1, "the patient is still named");
        let mut anonymous = event("login", "auth.token", "E");
        anonymous.actor_id = None;
        anonymous.outcome = "4".into();
        let r = to_fhir(&anonymous, SERVER);
        assert_eq!(r["agent"][0]["who"]["display"], "unauthenticated");
    }

    #[test]
    fn network_types() {
        assert_eq!(network("10.0.0.1")["type"], "2");
        assert_eq!(network("::1")["type"], "2");
        assert_eq!(network("https://clarity.example.org")["type"], "5");
        assert_eq!(network("clarity.example.org")["type"], "1");
    }
}

//! FHIR R4 AuditEvent for an audit event (IHE BALP shaped), for NDJSON export.

use serde_json::{Value, json};

use super::AuditEvent;

const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";

/// The FHIR R4 `AuditEvent` resource for `event`.
pub fn to_fhir(event: &AuditEvent) -> Value {
    let event_type = match event.event_type.as_str() {
        "login" | "logout" => json!({
            "system": "http://dicom.nema.org/resources/ontology/DCM",
            "code": "110114",
            "display": "User Authentication"
        }),
        "security" => json!({
            "system": "http://dicom.nema.org/resources/ontology/DCM",
            "code": "110113",
            "display": "Security Alert"
        }),
        _ => json!({
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "RESTful Operation"
        }),
    };
    let who = match event.actor_id {
        Some(id) => {
            json!({ "identifier": { "system": "urn:clarity:user", "value": id.to_string() } })
        }
        None => json!({ "display": "unauthenticated" }),
    };
    let mut agent = json!({ "who": who, "requestor": true });
    if let Some(roles) = &event.actor_roles {
        agent["role"] = json!([{ "text": roles }]);
    }
    if let (Some(issuer), Some(subject)) = (&event.actor_issuer, &event.actor_subject) {
        // The identity provider's account, in FHIR's `system|value` form.
        agent["altId"] = json!(format!("{issuer}|{subject}"));
    }
    if let Some(address) = &event.client_address {
        agent["network"] = json!({ "address": address, "type": "2" });
    }
    let mut entities = Vec::new();
    if let Some(patient) = event.patient_id {
        entities.push(json!({
            "what": { "reference": format!("Patient/{patient}") },
            "type": { "system": ENTITY_TYPE, "code": "1", "display": "Person" },
            "role": { "system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient" }
        }));
    }
    if let Some(entity) = event.entity_id {
        entities.push(json!({
            "what": { "identifier": { "system": "urn:clarity:object", "value": entity.to_string() } },
            "type": { "system": ENTITY_TYPE, "code": "2", "display": "System Object" }
        }));
    }
    if let Some(hash) = &event.query_hash {
        entities.push(json!({
            "type": { "system": ENTITY_TYPE, "code": "2", "display": "System Object" },
            "description": "query (keyed HMAC-SHA-256 of its normalised form)",
            "detail": [{ "type": "query-hmac-sha256", "valueString": hash }]
        }));
    }
    if let Some(request) = &event.request_id {
        entities.push(json!({
            "what": { "identifier": { "system": "urn:clarity:request", "value": request } },
            "type": { "system": ENTITY_TYPE, "code": "2", "display": "System Object" },
            "description": "request"
        }));
    }
    let mut resource = json!({
        "resourceType": "AuditEvent",
        "id": event.id.to_string(),
        "type": event_type,
        "subtype": [{ "system": "urn:clarity:audit-subtype", "code": event.subtype }],
        "action": event.action,
        "recorded": event.recorded.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "outcome": event.outcome,
        "agent": [agent],
        "source": {
            "observer": { "display": format!("clarity chain {} seq {}", event.chain_id, event.seq) },
            "type": [{ "system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4", "display": "Application Server" }]
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

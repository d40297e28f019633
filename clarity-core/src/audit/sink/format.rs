//! What a sink sends for each event: a JSON object (the API's event, plus
//! its MAC) or a FHIR AuditEvent, one per line; for syslog, framed as an
//! RFC 5424 message with RFC 6587 octet counting.

use serde_json::{Value, json};

use super::settings::SinkFormat;
use crate::audit::AuditEvent;

/// The event as one JSON value in `format` (`server`: the deployment's
/// address for FHIR, `audit.server_address`). Identifiers only, as stored
/// (S-AUD-4): no PHI, no secrets.
pub(crate) fn record(event: &AuditEvent, format: SinkFormat, server: Option<&str>) -> Value {
    match format {
        SinkFormat::Json => {
            let mut value = json!(event);
            value["prev_mac"] = json!(hex::encode(&event.prev_mac));
            value["mac"] = json!(hex::encode(&event.mac));
            value
        }
        SinkFormat::Fhir => crate::audit::to_fhir(event, server),
    }
}

/// `record` as one line of text, without the newline.
pub(crate) fn line(event: &AuditEvent, format: SinkFormat, server: Option<&str>) -> String {
    record(event, format, server).to_string()
}

/// RFC 5424 facility 13, "log audit".
const FACILITY_LOG_AUDIT: u8 = 13;

/// The syslog severity of an event: notice for a success, warning for a
/// minor failure (refused, not found), error for a serious one.
fn severity(event: &AuditEvent) -> u8 {
    match &*event.outcome {
        "0" => 5,
        "4" => 4,
        _ => 3,
    }
}

/// Keeps `value` within RFC 5424's PRINTUSASCII (33..=126) and `max`
/// characters; the NILVALUE `-` when nothing is left.
fn header_field(value: &str, max: usize) -> String {
    let kept: String = value
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if kept.is_empty() { "-".into() } else { kept }
}

/// The event as an RFC 5424 message with octet counting (RFC 6587 §3.4.1):
/// `LEN SP <PRI>1 TIMESTAMP HOSTNAME clarity PROCID MSGID - MSG`, where
/// MSGID is the event's subtype and MSG is `body`.
pub(crate) fn syslog_frame(event: &AuditEvent, host: &str, body: &str) -> Vec<u8> {
    let pri = FACILITY_LOG_AUDIT * 8 + severity(event);
    let message = format!(
        "<{pri}>1 {} {} clarity {} {} - {body}",
        event
            .recorded
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        header_field(host, 255),
        std::process::id(),
        header_field(&event.subtype, 32),
    );
    let mut frame = format!("{} ", message.len()).into_bytes();
    frame.extend_from_slice(message.as_bytes());
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(outcome: &'static str) -> AuditEvent {
        AuditEvent {
            id: uuid::Uuid::now_v7(),
            chain_id: uuid::Uuid::now_v7(),
            seq: 7,
            recorded: chrono::DateTime::from_timestamp(1_800_000_000, 123_456_000).expect("time"),
            event_type: "rest".into(),
            subtype: "record.read".into(),
            action: "R".into(),
            outcome: outcome.into(),
            purpose: Some("TREAT".into()),
            actor_id: Some(uuid::Uuid::now_v7()),
            actor_roles: Some("clinician".into()),
            client_address: None,
            patient_id: Some(uuid::Uuid::now_v7()),
            entity_id: None,
            query_hash: None,
            reason: None,
            request_id: None,
            actor_issuer: None,
            actor_subject: None,
            prev_mac: vec![1; 32],
            mac: vec![2; 32],
        }
    }

    // S-AUD-8: the syslog frame is RFC 5424 with an exact octet count.
    #[test]
    fn s_aud_8_syslog_frames_count_their_octets() {
        let e = event("0");
        let frame = syslog_frame(&e, "host a", "{\"x\":\"é\"}");
        let text = String::from_utf8(frame).expect("utf-8");
        let (len, message) = text.split_once(' ').expect("length");
        assert_eq!(len.parse::<usize>().expect("number"), message.len());
        assert!(
            message.starts_with("<109>1 2027-01-15T08:00:00.123456Z hosta clarity "),
            "{message}"
        );
        assert!(
            message.ends_with(" record.read - {\"x\":\"é\"}"),
            "{message}"
        );
        assert!(
            String::from_utf8(syslog_frame(&event("4"), "h", "b"))
                .expect("utf-8")
                .contains("<108>1 ")
        );
        assert!(
            String::from_utf8(syslog_frame(&event("8"), "h", "b"))
                .expect("utf-8")
                .contains("<107>1 ")
        );
    }

    // S-AUD-8: a JSON record carries chain, seq and MAC for the receiver.
    #[test]
    fn s_aud_8_json_records_carry_chain_seq_and_mac() {
        let e = event("0");
        let v = record(&e, SinkFormat::Json, None);
        assert_eq!(v["seq"], 7);
        assert_eq!(v["chain_id"], e.chain_id.to_string());
        assert_eq!(v["mac"], hex::encode([2u8; 32]));
        assert_eq!(v["subtype"], "record.read");
        let f = record(&e, SinkFormat::Fhir, Some("clarity.example.org"));
        assert_eq!(f["resourceType"], "AuditEvent");
    }
}

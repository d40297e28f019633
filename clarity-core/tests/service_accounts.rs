//! Service accounts through the service layer, with a fake clock: created by
//! admins under the separation-of-duties rules, tokens by the
//! client-credentials grant, rotation with overlap, disable and delete
//! (S-ID-2, S-AC-8).

use std::sync::Arc;

use chrono::{DateTime, Duration};
use clarity_core::access::Principal;
use clarity_core::audit::AuditFilter;
use clarity_core::clock::{Clock, ManualClock};
use clarity_core::crypto::SecretString;
use clarity_core::model::{PatientProfile, Role, RoleSet};
use clarity_core::service::{
    CareTeamAssignment, ClientSecret, LoginRequest, NewServiceAccount, NewUser, SecretRotation,
    UserUpdate,
};
use clarity_core::testing::{self, Harness};
use clarity_core::{Clarity, Config, ErrorKind};

struct World {
    clarity: Clarity,
    clock: Arc<ManualClock>,
    admin: Principal,
    _h: Harness,
}

async fn world() -> World {
    let h = testing::memory().await.expect("memory");
    let start = DateTime::from_timestamp(1_800_000_000, 0).expect("time");
    let clock = Arc::new(ManualClock::new(start));
    let clarity = h.clarity_with(Config::default(), clock.clone()).await;
    let admin = testing::principal(&clarity, Role::Admin).await;
    World {
        clarity,
        clock,
        admin,
        _h: h,
    }
}

fn profile() -> PatientProfile {
    PatientProfile::from_json(
        r#"{"mrn": "SA-1", "given_name": "Ada", "family_name": "Example",
            "birth_date": "1990-05-17", "sex": "female"}"#,
    )
    .expect("profile")
}

fn account(name: &str, roles: &[Role]) -> NewServiceAccount {
    NewServiceAccount {
        name: name.into(),
        roles: RoleSet::from_roles(roles.iter().copied()),
        display_name: Some(format!("{name} (machine)")),
    }
}

async fn token(w: &World, secret: &ClientSecret) -> clarity_core::Result<Principal> {
    let grant = w
        .clarity
        .client_credentials(
            &secret.client_id.to_string(),
            &secret.client_secret,
            Some("127.0.0.1".parse().expect("ip")),
        )
        .await?;
    w.clarity.authenticate(grant.access_token.expose()).await
}

fn kind<T>(r: clarity_core::Result<T>) -> ErrorKind {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.kind(),
    }
}

// S-ID-2
#[tokio::test]
async fn a_service_account_gets_tokens_and_works_within_its_roles() {
    let w = world().await;
    let created = w
        .clarity
        .create_service_account(&w.admin, account("nightly-export", &[Role::Clinician]))
        .await
        .expect("create");
    assert!(created.account.service_account);
    assert_eq!(
        created.account.email,
        "nightly-export@service-accounts.invalid"
    );
    assert!(created.client_secret.expose().starts_with("ccs_"));
    let json = serde_json::to_value(&created).expect("json");
    assert_eq!(json["client_id"], created.client_id.to_string());
    assert_eq!(json["client_secret"], created.client_secret.expose());

    let machine = token(&w, &created).await.expect("token");
    assert_eq!(machine.user_id(), created.client_id);
    assert_eq!(machine.roles(), RoleSet::from_roles([Role::Clinician]));
    // Within its roles: a clinician creates a patient (and joins its care
    // team) and reads it; it may not manage users.
    let patient = w
        .clarity
        .create_patient(&machine, profile())
        .await
        .expect("create patient");
    w.clarity
        .get_patient(&machine, patient.id)
        .await
        .expect("read patient");
    assert_eq!(
        kind(w.clarity.list_users(&machine, &Default::default()).await),
        ErrorKind::PermissionDenied
    );
    // Care teams work as for people.
    let other = w
        .clarity
        .create_service_account(&w.admin, account("hl7-engine", &[Role::Nurse]))
        .await
        .expect("create");
    let nurse = token(&w, &other).await.expect("token");
    assert_eq!(
        kind(w.clarity.get_patient(&nurse, patient.id).await),
        ErrorKind::NotFound
    );
    let assignment = CareTeamAssignment {
        user_id: other.client_id,
        relationship: None,
        expires_at: None,
    };
    w.clarity
        .add_care_team_member(&w.admin, patient.id, assignment)
        .await
        .expect("assign");
    w.clarity
        .get_patient(&nurse, patient.id)
        .await
        .expect("read on the care team");

    // The token's session ends with the token.
    w.clock.advance(Duration::minutes(16));
    let grant_token = w
        .clarity
        .client_credentials(&created.client_id.to_string(), &created.client_secret, None)
        .await
        .expect("a new grant");
    w.clock.advance(Duration::minutes(16));
    assert_eq!(
        kind(
            w.clarity
                .authenticate(grant_token.access_token.expose())
                .await
        ),
        ErrorKind::Unauthenticated
    );

    // Audited: the creation and every grant, naming the account.
    let filter = AuditFilter {
        subtype: Some("auth.client_credentials".into()),
        ..AuditFilter::default()
    };
    let grants = w
        .clarity
        .audit_events(&w.admin, &filter, &Default::default())
        .await
        .expect("audit")
        .items;
    assert_eq!(grants.len(), 3);
    assert!(grants.iter().all(|e| e.outcome == "0"));
    let filter = AuditFilter {
        subtype: Some("service_account.create".into()),
        ..AuditFilter::default()
    };
    let creations = w
        .clarity
        .audit_events(&w.admin, &filter, &Default::default())
        .await
        .expect("audit")
        .items;
    assert_eq!(creations.len(), 2);
    assert_eq!(creations[0].entity_id, Some(created.client_id));
}

// S-ID-2: every wrong credential answers alike, and is audited.
#[tokio::test]
async fn wrong_credentials_are_refused_alike() {
    let w = world().await;
    let created = w
        .clarity
        .create_service_account(&w.admin, account("job", &[Role::Auditor]))
        .await
        .expect("create");
    let good_id = created.client_id.to_string();
    let wrong =
        SecretString::new("ccs_0000000000000000000000000000000000000000000000000000000000000000");
    for (id, secret) in [
        (good_id.as_str(), &wrong),
        (&*uuid::Uuid::now_v7().to_string(), &created.client_secret),
        ("not-a-uuid", &created.client_secret),
        ("", &created.client_secret),
    ] {
        assert_eq!(
            kind(w.clarity.client_credentials(id, secret, None).await),
            ErrorKind::Unauthenticated,
            "{id}"
        );
    }
    // A person's account is no client.
    let person = testing::user_with_role(&w.clarity, Role::Auditor).await.0;
    assert_eq!(
        kind(
            w.clarity
                .client_credentials(
                    &person.to_string(),
                    &SecretString::new(testing::TEST_PASSWORD),
                    None
                )
                .await
        ),
        ErrorKind::Unauthenticated
    );
    // A service account has no password: a password login answers like an
    // unknown account, whatever is tried.
    let login = LoginRequest {
        email: "job@service-accounts.invalid".into(),
        password: created.client_secret.clone(),
        totp: None,
    };
    assert_eq!(
        kind(w.clarity.login(login, None).await),
        ErrorKind::Unauthenticated
    );
    let filter = AuditFilter {
        subtype: Some("auth.client_credentials".into()),
        outcome: Some("4".into()),
        ..AuditFilter::default()
    };
    let failures = w
        .clarity
        .audit_events(&w.admin, &filter, &Default::default())
        .await
        .expect("audit")
        .items;
    assert_eq!(failures.len(), 5);
    assert!(failures.iter().all(|e| e.actor_id.is_none()));
    // Still works with the right secret.
    token(&w, &created).await.expect("the right secret");
}

// S-ID-2: rotation keeps the previous secret for the overlap only.
#[tokio::test]
async fn rotation_overlaps_then_retires_the_previous_secret() {
    let w = world().await;
    let first = w
        .clarity
        .create_service_account(&w.admin, account("rotating", &[Role::Auditor]))
        .await
        .expect("create");
    let rotation = SecretRotation {
        overlap_secs: Some(3600),
    };
    let second = w
        .clarity
        .rotate_service_secret(&w.admin, first.client_id, rotation)
        .await
        .expect("rotate");
    assert_ne!(first.client_secret.expose(), second.client_secret.expose());
    assert_eq!(
        second.previous_secret_expires_at,
        Some(w.clock.now() + Duration::hours(1))
    );
    token(&w, &first)
        .await
        .expect("the previous secret, during the overlap");
    token(&w, &second).await.expect("the new secret");
    w.clock.advance(Duration::minutes(61));
    assert_eq!(kind(token(&w, &first).await), ErrorKind::Unauthenticated);
    token(&w, &second).await.expect("the new secret");

    // No overlap: the previous secret ends at once.
    let third = w
        .clarity
        .rotate_service_secret(
            &w.admin,
            first.client_id,
            SecretRotation {
                overlap_secs: Some(0),
            },
        )
        .await
        .expect("rotate");
    assert_eq!(third.previous_secret_expires_at, None);
    assert_eq!(kind(token(&w, &second).await), ErrorKind::Unauthenticated);
    token(&w, &third).await.expect("the newest secret");
    // Bounds and targets.
    let too_long = SecretRotation {
        overlap_secs: Some(8 * 24 * 3600),
    };
    assert_eq!(
        kind(
            w.clarity
                .rotate_service_secret(&w.admin, first.client_id, too_long)
                .await
        ),
        ErrorKind::InvalidInput
    );
    let person = testing::user_with_role(&w.clarity, Role::Nurse).await.0;
    assert_eq!(
        kind(
            w.clarity
                .rotate_service_secret(&w.admin, person, SecretRotation::default())
                .await
        ),
        ErrorKind::NotFound
    );
}

// S-AC-5, S-ID-2: disabling or deleting ends access at once.
#[tokio::test]
async fn disable_and_delete_end_access_at_once() {
    let w = world().await;
    let created = w
        .clarity
        .create_service_account(&w.admin, account("leaver", &[Role::Auditor]))
        .await
        .expect("create");
    let grant = w
        .clarity
        .client_credentials(&created.client_id.to_string(), &created.client_secret, None)
        .await
        .expect("grant");
    let disable = UserUpdate {
        disabled: Some(true),
        ..UserUpdate::default()
    };
    w.clarity
        .update_user(&w.admin, created.client_id, disable)
        .await
        .expect("disable");
    assert_eq!(
        kind(w.clarity.authenticate(grant.access_token.expose()).await),
        ErrorKind::Unauthenticated
    );
    assert_eq!(kind(token(&w, &created).await), ErrorKind::Unauthenticated);

    let other = w
        .clarity
        .create_service_account(&w.admin, account("deleted", &[Role::Auditor]))
        .await
        .expect("create");
    let grant = w
        .clarity
        .client_credentials(&other.client_id.to_string(), &other.client_secret, None)
        .await
        .expect("grant");
    w.clarity
        .delete_service_account(&w.admin, other.client_id)
        .await
        .expect("delete");
    assert_eq!(
        kind(w.clarity.authenticate(grant.access_token.expose()).await),
        ErrorKind::Unauthenticated
    );
    assert_eq!(kind(token(&w, &other).await), ErrorKind::Unauthenticated);
    let user = w
        .clarity
        .get_user(&w.admin, other.client_id)
        .await
        .expect("kept for the audit trail");
    assert!(user.disabled && user.service_account);
    // Only service accounts are deleted this way.
    let person = testing::user_with_role(&w.clarity, Role::Nurse).await.0;
    assert_eq!(
        kind(w.clarity.delete_service_account(&w.admin, person).await),
        ErrorKind::NotFound
    );
}

// S-AC-8: the same role rules as people's; only admins manage them.
#[tokio::test]
async fn service_accounts_follow_the_role_rules() {
    let w = world().await;
    for roles in [&[Role::Admin, Role::Clinician][..], &[Role::Patient], &[]] {
        assert_eq!(
            kind(
                w.clarity
                    .create_service_account(&w.admin, account("mixed", roles))
                    .await
            ),
            ErrorKind::InvalidInput,
            "{roles:?}"
        );
    }
    for name in ["", "Upper", "has space", "-dash"] {
        assert_eq!(
            kind(
                w.clarity
                    .create_service_account(&w.admin, account(name, &[Role::Auditor]))
                    .await
            ),
            ErrorKind::InvalidInput,
            "{name:?}"
        );
    }
    let clinician = testing::principal(&w.clarity, Role::Clinician).await;
    assert_eq!(
        kind(
            w.clarity
                .create_service_account(&clinician, account("sneaky", &[Role::Auditor]))
                .await
        ),
        ErrorKind::PermissionDenied
    );
    w.clarity
        .create_service_account(&w.admin, account("taken", &[Role::Auditor]))
        .await
        .expect("create");
    assert_eq!(
        kind(
            w.clarity
                .create_service_account(&w.admin, account("taken", &[Role::Auditor]))
                .await
        ),
        ErrorKind::AlreadyExists
    );
    // The name cannot be claimed by a person's account either.
    let squatter = NewUser {
        email: "taken@service-accounts.invalid".into(),
        password: SecretString::new(testing::TEST_PASSWORD),
        roles: RoleSet::from_roles([Role::Nurse]),
        display_name: None,
        patient_id: None,
    };
    assert_eq!(
        kind(w.clarity.create_user(&w.admin, squatter).await),
        ErrorKind::AlreadyExists
    );
}

// S-ID-2: failures are throttled per address only, alike for known and
// unknown client ids, so nobody who knows a client id can lock it out.
#[tokio::test]
async fn failures_cannot_lock_a_service_account_out_or_tell_ids_apart() {
    let w = world().await;
    let created = w
        .clarity
        .create_service_account(&w.admin, account("steady", &[Role::Auditor]))
        .await
        .expect("create");
    let known = created.client_id.to_string();
    let unknown = uuid::Uuid::now_v7().to_string();
    let wrong = SecretString::new("ccs_not-the-secret");
    // In process (no address): every attempt answers alike, and the right
    // secret still works after many wrong ones.
    for _ in 0..30 {
        for id in [&known, &unknown] {
            assert_eq!(
                kind(w.clarity.client_credentials(id, &wrong, None).await),
                ErrorKind::Unauthenticated
            );
        }
    }
    token(&w, &created)
        .await
        .expect("the right secret still works");
    // From one address: throttled after repeated failures, for known and
    // unknown ids alike.
    let address = Some("192.0.2.7".parse().expect("ip"));
    let mut answers = Vec::new();
    for attempt in 0..12 {
        let id = if attempt % 2 == 0 { &known } else { &unknown };
        answers.push(kind(
            w.clarity.client_credentials(id, &wrong, address).await,
        ));
    }
    assert!(answers.contains(&ErrorKind::RateLimited), "{answers:?}");
    let first_limited = answers
        .iter()
        .position(|k| *k == ErrorKind::RateLimited)
        .expect("limited");
    assert!(
        answers[first_limited..]
            .iter()
            .all(|k| *k == ErrorKind::RateLimited),
        "once limited, every id answers alike: {answers:?}"
    );
    // Another address is not held back by the first one's failures.
    token(&w, &created).await.expect("from elsewhere");
}

// S-AC-8: the create-time rules hold on later changes too.
#[tokio::test]
async fn later_changes_keep_the_service_account_rules() {
    let w = world().await;
    let created = w
        .clarity
        .create_service_account(&w.admin, account("ruled", &[Role::Nurse]))
        .await
        .expect("create");
    let patient = UserUpdate {
        roles: Some(RoleSet::from_roles([Role::Patient])),
        ..UserUpdate::default()
    };
    assert_eq!(
        kind(
            w.clarity
                .update_user(&w.admin, created.client_id, patient)
                .await
        ),
        ErrorKind::InvalidInput
    );
    w.clarity
        .delete_service_account(&w.admin, created.client_id)
        .await
        .expect("delete");
    let enable = UserUpdate {
        disabled: Some(false),
        ..UserUpdate::default()
    };
    assert_eq!(
        kind(
            w.clarity
                .update_user(&w.admin, created.client_id, enable)
                .await
        ),
        ErrorKind::InvalidInput
    );
    // Where admins need a second factor, no service account is an admin.
    let h = testing::memory().await.expect("memory");
    let mut config = Config::default();
    config.auth.require_mfa_for_admin = true;
    let strict = h
        .clarity_with(config, Arc::new(ManualClock::new(w.clock.now())))
        .await;
    let operator = strict.operator().await.expect("operator");
    assert_eq!(
        kind(
            strict
                .create_service_account(&operator, account("boss", &[Role::Admin]))
                .await
        ),
        ErrorKind::InvalidInput
    );
}

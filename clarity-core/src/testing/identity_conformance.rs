//! Conformance cases for [`crate::store::IdentityStore`].

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::Harness;
use super::conformance::profile;
use crate::crypto::BlindIndex;
use crate::error::ErrorKind;
use crate::model::{
    CareTeamRow, Change, GrantRow, RefreshRow, ServiceSecretRow, SessionRow, UserRow,
};
use crate::model::{Role, RoleSet};

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).expect("time")
}

fn user(roles: &[Role]) -> UserRow {
    let id = Uuid::now_v7();
    let mut index = [0u8; 16];
    index.copy_from_slice(&id.as_bytes()[..16]);
    UserRow {
        id,
        email_index: BlindIndex(index),
        profile: vec![1, 2, 3],
        password_hash: "$argon2id$placeholder".into(),
        roles: RoleSet::from_roles(roles.iter().copied()),
        disabled: false,
        patient_id: None,
        mfa_secret: None,
        mfa_enabled: false,
        version: 1,
        created_at: t0(),
        updated_at: t0(),
    }
}

async fn stored_user(h: &Harness, roles: &[Role]) -> UserRow {
    let row = user(roles);
    h.identity.insert_user(&row).await.expect("insert user");
    row
}

fn err_kind<T: std::fmt::Debug>(r: crate::error::Result<T>) -> ErrorKind {
    r.expect_err("expected an error").kind()
}

/// Users: unique email index, optimistic updates, patient links must exist.
pub async fn users_are_unique_by_email_and_versioned(h: &Harness) {
    let a = stored_user(h, &[Role::Clinician]).await;
    let mut twin = user(&[Role::Nurse]);
    twin.email_index = a.email_index;
    assert_eq!(
        err_kind(h.identity.insert_user(&twin).await),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        h.identity.find_user(&a.email_index).await.expect("find"),
        Some(a.clone())
    );
    assert!(h.identity.count_users().await.expect("count") >= 1);

    let mut changed = a.clone();
    changed.roles = RoleSet::from_roles([Role::Admin]);
    changed.version = 2;
    h.identity.update_user(&changed, 1).await.expect("update");
    assert_eq!(
        err_kind(h.identity.update_user(&changed, 1).await),
        ErrorKind::Conflict
    );
    assert_eq!(
        h.identity.get_user(a.id).await.expect("get"),
        Some(changed.clone())
    );

    let mut linked = user(&[Role::Patient]);
    linked.patient_id = Some(Uuid::now_v7());
    assert_eq!(
        err_kind(h.identity.insert_user(&linked).await),
        ErrorKind::NotFound
    );
    let listed = h.identity.list_users(None, 1000).await.expect("list");
    assert!(listed.iter().any(|u| u.id == a.id));
    let after = h.identity.list_users(Some(a.id), 1000).await.expect("list");
    assert!(after.iter().all(|u| u.id > a.id));
}

/// S-AUTH-5 storage: a TOTP step is accepted once, and never an older one.
pub async fn totp_steps_only_move_forward(h: &Harness) {
    let u = stored_user(h, &[Role::Clinician]).await;
    assert!(h.identity.advance_mfa_step(u.id, 100).await.expect("step"));
    assert!(
        !h.identity
            .advance_mfa_step(u.id, 100)
            .await
            .expect("replay")
    );
    assert!(!h.identity.advance_mfa_step(u.id, 99).await.expect("older"));
    assert!(h.identity.advance_mfa_step(u.id, 101).await.expect("newer"));
}

/// Failed logins count within a window and restart after it.
pub async fn login_failures_count_within_a_window(h: &Harness) {
    let u = stored_user(h, &[Role::Nurse]).await;
    let hour = Duration::hours(1);
    assert_eq!(h.identity.login_failures(u.id).await.expect("read"), None);
    for n in 1..=3 {
        let f = h
            .identity
            .record_login_failure(u.id, t0() + Duration::minutes(n), hour)
            .await
            .expect("record");
        assert_eq!(f.count, u32::try_from(n).expect("small"));
        assert_eq!(f.window_start, t0() + Duration::minutes(1));
    }
    let later = t0() + Duration::hours(2);
    let f = h
        .identity
        .record_login_failure(u.id, later, hour)
        .await
        .expect("record");
    assert_eq!((f.count, f.window_start, f.last_at), (1, later, later));
    h.identity.clear_login_failures(u.id).await.expect("clear");
    assert_eq!(h.identity.login_failures(u.id).await.expect("read"), None);
}

/// Sessions are touched and revoked; a refresh token rotates exactly once.
pub async fn sessions_end_and_refresh_tokens_rotate_once(h: &Harness) {
    let u = stored_user(h, &[Role::Clinician]).await;
    let session = SessionRow {
        id: Uuid::now_v7(),
        user_id: u.id,
        created_at: t0(),
        last_seen_at: t0(),
        expires_at: t0() + Duration::hours(12),
        revoked_at: None,
        mfa: false,
    };
    let first = RefreshRow {
        hash: [1; 32],
        session_id: session.id,
        created_at: t0(),
        used_at: None,
    };
    let mut unique = first.clone();
    unique.hash[..16].copy_from_slice(session.id.as_bytes());
    h.identity
        .insert_session(&session, &unique)
        .await
        .expect("insert");
    h.identity
        .touch_session(session.id, t0() + Duration::minutes(5))
        .await
        .expect("touch");
    h.identity
        .touch_session(session.id, t0() + Duration::minutes(1))
        .await
        .expect("touch older");
    let read = h
        .identity
        .get_session(session.id)
        .await
        .expect("get")
        .expect("session");
    assert_eq!(
        read.last_seen_at,
        t0() + Duration::minutes(5),
        "never moves back"
    );

    let mut next = unique.clone();
    next.hash[31] = 2;
    let mut third = unique.clone();
    third.hash[31] = 3;
    assert!(
        h.identity
            .rotate_refresh(&unique.hash, t0(), &next)
            .await
            .expect("rotate")
    );
    assert!(
        !h.identity
            .rotate_refresh(&unique.hash, t0(), &third)
            .await
            .expect("reuse")
    );
    assert!(
        h.identity
            .get_refresh(&third.hash)
            .await
            .expect("get")
            .is_none()
    );
    let used = h
        .identity
        .get_refresh(&unique.hash)
        .await
        .expect("get")
        .expect("row");
    assert_eq!(used.used_at, Some(t0()));

    h.identity
        .revoke_session(session.id, t0())
        .await
        .expect("revoke");
    h.identity
        .revoke_session(session.id, t0() + Duration::hours(1))
        .await
        .expect("again");
    let read = h
        .identity
        .get_session(session.id)
        .await
        .expect("get")
        .expect("session");
    assert_eq!(read.revoked_at, Some(t0()), "first revocation time kept");

    let second = SessionRow {
        id: Uuid::now_v7(),
        ..session.clone()
    };
    let mut second_refresh = unique.clone();
    second_refresh.hash[..16].copy_from_slice(second.id.as_bytes());
    second_refresh.session_id = second.id;
    h.identity
        .insert_session(&second, &second_refresh)
        .await
        .expect("insert");
    assert_eq!(
        h.identity
            .revoke_user_sessions(u.id, t0())
            .await
            .expect("revoke all"),
        1
    );
}

/// Care teams: upsert, expiry kept, removal; grants: insert, list, review.
pub async fn care_teams_and_grants(h: &Harness) {
    let u = stored_user(h, &[Role::Clinician]).await;
    let patient = h
        .phi
        .create_patient(profile(&format!("CT-{}", Uuid::new_v4().simple())))
        .await
        .expect("patient");
    let member = CareTeamRow {
        patient_id: patient.id,
        user_id: u.id,
        relationship: "attending".into(),
        expires_at: None,
        created_at: t0(),
    };
    h.store
        .apply(Change::AddCareTeamMember(member.clone()))
        .await
        .expect("assign");
    let expiring = CareTeamRow {
        expires_at: Some(t0() + Duration::days(1)),
        ..member.clone()
    };
    h.store
        .apply(Change::AddCareTeamMember(expiring.clone()))
        .await
        .expect("reassign");
    let read = h
        .identity
        .care_team_member(patient.id, u.id)
        .await
        .expect("get");
    assert_eq!(read.map(|m| m.expires_at), Some(expiring.expires_at));
    assert_eq!(
        h.identity
            .care_team_of_user(u.id)
            .await
            .expect("list")
            .len(),
        1
    );
    let unknown_user = CareTeamRow {
        user_id: Uuid::now_v7(),
        ..member.clone()
    };
    assert_eq!(
        err_kind(
            h.store
                .apply(Change::AddCareTeamMember(unknown_user.clone()))
                .await
        ),
        ErrorKind::NotFound
    );
    let unknown_patient = CareTeamRow {
        patient_id: Uuid::now_v7(),
        ..member.clone()
    };
    assert_eq!(
        err_kind(
            h.store
                .apply(Change::AddCareTeamMember(unknown_patient.clone()))
                .await
        ),
        ErrorKind::NotFound
    );
    h.store
        .apply(Change::RemoveCareTeamMember {
            patient_id: patient.id,
            user_id: u.id,
        })
        .await
        .expect("remove");
    assert_eq!(
        err_kind(
            h.store
                .apply(Change::RemoveCareTeamMember {
                    patient_id: patient.id,
                    user_id: u.id,
                })
                .await
        ),
        ErrorKind::NotFound
    );

    let grant = GrantRow {
        id: Uuid::now_v7(),
        user_id: u.id,
        patient_id: patient.id,
        reason: vec![9; 20],
        created_at: t0(),
        expires_at: t0() + Duration::hours(4),
        reviewed_at: None,
        reviewed_by: None,
    };
    h.store
        .apply(Change::InsertGrant(grant.clone()))
        .await
        .expect("grant");
    assert_eq!(
        h.identity.grants_of_user(u.id).await.expect("grants"),
        vec![grant.clone()]
    );
    let open = h
        .identity
        .list_grants(true, None, 1000)
        .await
        .expect("list");
    assert!(open.iter().any(|g| g.id == grant.id));
    let admin = stored_user(h, &[Role::Admin]).await;
    h.identity
        .review_grant(grant.id, admin.id, t0())
        .await
        .expect("review");
    let open = h
        .identity
        .list_grants(true, None, 1000)
        .await
        .expect("list");
    assert!(!open.iter().any(|g| g.id == grant.id));
    let all = h
        .identity
        .list_grants(false, None, 1000)
        .await
        .expect("list");
    let reviewed = all.iter().find(|g| g.id == grant.id).expect("listed");
    assert_eq!(reviewed.reviewed_by, Some(admin.id));
    assert_eq!(
        err_kind(
            h.identity
                .review_grant(Uuid::now_v7(), admin.id, t0())
                .await
        ),
        ErrorKind::NotFound
    );
    let ids = h
        .identity
        .list_patient_ids(None, 100_000)
        .await
        .expect("ids");
    assert!(ids.contains(&patient.id));
}

/// Erasing a patient removes its care-team assignments.
pub async fn erasure_removes_care_team_assignments(h: &Harness) {
    let u = stored_user(h, &[Role::Nurse]).await;
    let patient = h
        .phi
        .create_patient(profile(&format!("ER-{}", Uuid::new_v4().simple())))
        .await
        .expect("patient");
    let member = CareTeamRow {
        patient_id: patient.id,
        user_id: u.id,
        relationship: "member".into(),
        expires_at: None,
        created_at: t0(),
    };
    h.store
        .apply(Change::AddCareTeamMember(member.clone()))
        .await
        .expect("assign");
    h.phi.erase_patient(patient.id).await.expect("erase");
    assert!(
        h.identity
            .care_team_member(patient.id, u.id)
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        !h.identity
            .list_patient_ids(None, 100_000)
            .await
            .expect("ids")
            .contains(&patient.id)
    );
    assert_eq!(
        err_kind(
            h.store
                .apply(Change::AddCareTeamMember(member.clone()))
                .await
        ),
        ErrorKind::NotFound
    );
}

/// Service accounts: the user row and its secrets stored together (or not at
/// all), replaced only from the version read, removed idempotently.
pub async fn service_account_secrets_are_versioned(h: &Harness) {
    let row = user(&[Role::Auditor]);
    let secret = ServiceSecretRow {
        user_id: row.id,
        secret_hash: vec![1; 32],
        previous_hash: None,
        previous_until: None,
        rotated_at: t0(),
    };
    h.identity
        .insert_service_account(&row, &secret)
        .await
        .expect("insert");
    assert_eq!(
        h.identity.get_user(row.id).await.expect("get"),
        Some(row.clone())
    );
    assert_eq!(
        h.identity.service_secret(row.id).await.expect("secret"),
        Some(secret.clone())
    );
    // A taken name (email index) stores neither row nor secret.
    let mut twin = user(&[Role::Auditor]);
    twin.email_index = row.email_index;
    let twin_secret = ServiceSecretRow {
        user_id: twin.id,
        ..secret.clone()
    };
    assert_eq!(
        err_kind(h.identity.insert_service_account(&twin, &twin_secret).await),
        ErrorKind::AlreadyExists
    );
    assert_eq!(h.identity.get_user(twin.id).await.expect("get"), None);
    assert_eq!(h.identity.service_secret(twin.id).await.expect("get"), None);
    // Rotation from the version read; a second one from the same version loses.
    let later = t0() + Duration::seconds(5);
    let rotated = ServiceSecretRow {
        user_id: row.id,
        secret_hash: vec![2; 32],
        previous_hash: Some(vec![1; 32]),
        previous_until: Some(later + Duration::hours(1)),
        rotated_at: later,
    };
    h.identity
        .replace_service_secret(&rotated, t0())
        .await
        .expect("rotate");
    assert_eq!(
        h.identity.service_secret(row.id).await.expect("secret"),
        Some(rotated.clone())
    );
    assert_eq!(
        err_kind(h.identity.replace_service_secret(&rotated, t0()).await),
        ErrorKind::Conflict
    );
    h.identity
        .delete_service_secret(row.id)
        .await
        .expect("delete");
    h.identity
        .delete_service_secret(row.id)
        .await
        .expect("delete again");
    assert_eq!(h.identity.service_secret(row.id).await.expect("get"), None);
    assert_eq!(
        err_kind(h.identity.replace_service_secret(&rotated, later).await),
        ErrorKind::NotFound
    );
}

//! Care teams and break-glass: assigning users to a patient's care team,
//! emergency access grants, and their review by admins.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::auditing::Ev;
use super::patients::page_of;
use super::users::secs;
use super::{Alert, AlertKind, Clarity};
use crate::access::{Action, Principal, Reason};
use crate::audit::AuditAction;
use crate::error::{Error, Result};
use crate::model::{CareTeamRow, Change, GrantRow, Page, PageRequest, RecordKind};

const GRANTS: &str = "access_grants";

/// `POST /v1/patients/{id}/care-team`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CareTeamAssignment {
    /// The user to assign.
    pub user_id: Uuid,
    /// e.g. `attending` (default `member`).
    #[serde(default)]
    pub relationship: Option<String>,
    /// When the assignment ends by itself.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// `POST /v1/break-glass`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakGlassRequest {
    /// The patient.
    pub patient_id: Uuid,
    /// Why (10–1000 characters); reviewed by an admin.
    pub reason: String,
    /// A current TOTP code, when break-glass requires MFA.
    #[serde(default)]
    pub totp: Option<String>,
}

/// A granted break-glass access.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BreakGlassGrant {
    /// Grant id.
    pub grant_id: Uuid,
    /// The patient.
    pub patient_id: Uuid,
    /// When it ends by itself.
    pub expires_at: DateTime<Utc>,
}

/// A grant as listed for review.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct GrantView {
    /// Grant id.
    pub grant_id: Uuid,
    /// Who used it.
    pub user_id: Uuid,
    /// The patient.
    pub patient_id: Uuid,
    /// The reason given.
    pub reason: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// When it ends (or ended).
    pub expires_at: DateTime<Utc>,
    /// When an admin reviewed it.
    pub reviewed_at: Option<DateTime<Utc>>,
    /// Which admin.
    pub reviewed_by: Option<Uuid>,
}

impl Clarity {
    /// Assigns a user to a patient's care team (admins).
    ///
    /// # Errors
    /// [`Error::PermissionDenied`]; [`Error::NotFound`] for an unknown patient
    /// or user; [`Error::InvalidInput`].
    pub async fn add_care_team_member(
        &self,
        principal: &Principal,
        patient_id: Uuid,
        assignment: CareTeamAssignment,
    ) -> Result<()> {
        let user = assignment.user_id;
        let prepared = self.assign(principal, patient_id, assignment).await;
        let ev = Ev::of("admin", "care_team.add", AuditAction::Create)
            .patient(patient_id)
            .entity(user);
        self.audited_change(principal, ev, prepared).await
    }

    async fn assign(
        &self,
        principal: &Principal,
        patient_id: Uuid,
        assignment: CareTeamAssignment,
    ) -> Result<(Change, (), Reason)> {
        let reason = self
            .authorize(principal, &Action::ManageCareTeam, None)
            .await?;
        let relationship = assignment.relationship.unwrap_or_else(|| "member".into());
        RecordKind::new(&relationship).map_err(|_| {
            Error::invalid("relationship must be 1-64 characters of a-z, 0-9, '-', '_' or '.'")
        })?;
        if assignment
            .expires_at
            .is_some_and(|end| end <= self.clock.now())
        {
            return Err(Error::invalid("expires_at must be in the future"));
        }
        self.user_row(assignment.user_id).await?;
        let member = CareTeamRow {
            patient_id,
            user_id: assignment.user_id,
            relationship,
            expires_at: assignment.expires_at,
            created_at: self.clock.now(),
        };
        Ok((Change::AddCareTeamMember(member), (), reason))
    }

    /// Removes a user from a patient's care team (admins).
    ///
    /// # Errors
    /// [`Error::PermissionDenied`]; [`Error::NotFound`].
    pub async fn remove_care_team_member(
        &self,
        principal: &Principal,
        patient_id: Uuid,
        user_id: Uuid,
    ) -> Result<()> {
        let prepared = async {
            let reason = self
                .authorize(principal, &Action::ManageCareTeam, None)
                .await?;
            let change = Change::RemoveCareTeamMember {
                patient_id,
                user_id,
            };
            Ok((change, (), reason))
        }
        .await;
        let ev = Ev::of("admin", "care_team.remove", AuditAction::Delete)
            .patient(patient_id)
            .entity(user_id);
        self.audited_change(principal, ev, prepared).await
    }

    /// Emergency access (clinicians): a grant on one patient that needs a
    /// reason (and a TOTP code when `access.require_mfa_for_break_glass`),
    /// ends by itself after `access.break_glass_secs`, raises an alert and is
    /// listed for review (S-AC-4).
    ///
    /// # Errors
    /// [`Error::PermissionDenied`]; [`Error::InvalidInput`] for a missing
    /// reason; [`Error::MfaRequired`]; [`Error::NotFound`] for an unknown patient.
    pub async fn break_glass(
        &self,
        principal: &Principal,
        request: BreakGlassRequest,
    ) -> Result<BreakGlassGrant> {
        let patient_id = request.patient_id;
        let prepared = self.grant_break_glass(principal, request).await;
        let mut ev = Ev::of("security", "break_glass", AuditAction::Execute).patient(patient_id);
        ev.entity = prepared.as_ref().ok().map(|(_, g, _)| g.grant_id);
        let granted = self.audited_change(principal, ev, prepared).await?;
        self.raise(&Alert {
            kind: AlertKind::BreakGlass,
            user_id: Some(principal.user_id),
            patient_id: Some(patient_id),
        });
        Ok(granted)
    }

    async fn grant_break_glass(
        &self,
        principal: &Principal,
        request: BreakGlassRequest,
    ) -> Result<(Change, BreakGlassGrant, Reason)> {
        self.authorize(principal, &Action::BreakGlass, None).await?;
        let reason = request.reason.trim();
        let length = reason.chars().count();
        if !(10..=1000).contains(&length) || reason.chars().any(|c| c.is_control() && c != '\n') {
            return Err(Error::invalid(
                "reason must be 10-1000 characters saying why emergency access is needed",
            ));
        }
        if self.config.access.require_mfa_for_break_glass {
            let user = self.user_row(principal.user_id).await?;
            let code = request.totp.as_deref().ok_or(Error::MfaRequired)?;
            // Guessing codes here counts against the account like failed logins.
            self.check_account_throttle(&user).await?;
            if let Err(e) = self.check_totp(&user, code).await {
                self.record_account_failure(&user, principal.context.client_address)
                    .await?;
                return Err(e);
            }
        }
        if self
            .phi
            .store()
            .get_patient(request.patient_id)
            .await?
            .is_none()
        {
            return Err(Error::NotFound { what: "patient" });
        }
        let now = self.clock.now();
        let id = Uuid::now_v7();
        let grant = GrantRow {
            id,
            user_id: principal.user_id,
            patient_id: request.patient_id,
            reason: self.directory.seal(GRANTS, id, 0, &reason)?,
            created_at: now,
            expires_at: now + chrono::Duration::seconds(secs(self.config.access.break_glass_secs)),
            reviewed_at: None,
            reviewed_by: None,
        };
        let granted = BreakGlassGrant {
            grant_id: id,
            patient_id: grant.patient_id,
            expires_at: grant.expires_at,
        };
        Ok((Change::InsertGrant(grant), granted, Reason::BreakGlass))
    }

    /// Break-glass grants for review (admins), oldest first.
    ///
    /// # Errors
    /// [`Error::PermissionDenied`]; [`Error::InvalidInput`] for a bad page.
    pub async fn list_grants(
        &self,
        principal: &Principal,
        unreviewed_only: bool,
        page: &PageRequest,
    ) -> Result<Page<GrantView>> {
        let result = self.grants_page(principal, unreviewed_only, page).await;
        let ev = Ev::of("admin", "grant.list", AuditAction::Read);
        self.audited(principal, ev, result).await
    }

    async fn grants_page(
        &self,
        principal: &Principal,
        unreviewed_only: bool,
        page: &PageRequest,
    ) -> Result<(Page<GrantView>, Reason)> {
        let reason = self
            .authorize(principal, &Action::ReviewGrants, None)
            .await?;
        let limit = page.limit()?;
        let rows = self
            .identity
            .list_grants(unreviewed_only, page.after()?, limit + 1)
            .await?;
        let items = rows
            .into_iter()
            .map(|g| {
                Ok(GrantView {
                    reason: self.directory.open_sealed(GRANTS, g.id, 0, &g.reason)?,
                    grant_id: g.id,
                    user_id: g.user_id,
                    patient_id: g.patient_id,
                    created_at: g.created_at,
                    expires_at: g.expires_at,
                    reviewed_at: g.reviewed_at,
                    reviewed_by: g.reviewed_by,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((page_of(items, limit, |g| g.grant_id), reason))
    }

    /// Marks a grant reviewed by the caller (admins).
    ///
    /// # Errors
    /// [`Error::PermissionDenied`]; [`Error::NotFound`].
    pub async fn review_grant(&self, principal: &Principal, grant_id: Uuid) -> Result<()> {
        let result = async {
            let reason = self
                .authorize(principal, &Action::ReviewGrants, None)
                .await?;
            self.identity
                .review_grant(grant_id, principal.user_id, self.clock.now())
                .await?;
            Ok(((), reason))
        }
        .await;
        let ev = Ev::of("admin", "grant.review", AuditAction::Update).entity(grant_id);
        self.audited(principal, ev, result).await
    }
}

impl std::fmt::Debug for BreakGlassRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Personal data and secrets stay out of Debug output.
        f.debug_struct("BreakGlassRequest")
            .field("patient_id", &self.patient_id)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for GrantView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Personal data and secrets stay out of Debug output.
        f.debug_struct("GrantView")
            .field("grant_id", &self.grant_id)
            .field("user_id", &self.user_id)
            .field("patient_id", &self.patient_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

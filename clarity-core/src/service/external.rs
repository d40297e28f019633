//! Callers who come with an OpenID Connect provider's access token
//! (resource-server mode, S-ID-1): the token is verified
//! ([`crate::auth::oidc`]), its subject found among the linked identities
//! (or provisioned, where the provider allows it), its roles mapped, and
//! the principal carries the provider and subject into every audit event.
//! Back-channel logout ends a subject's or a provider session's tokens at
//! once, on every instance (the link is cached with invalidation).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Clarity;
use super::auditing::Ev;
use super::users::{NO_PASSWORD_EXTERNAL, Profile, USERS};
use crate::access::{Action, Principal};
use crate::audit::{AuditAction, AuditOutcome};
use crate::auth::oidc::{ExternalToken, OidcVerifier, Refusal};
use crate::crypto::IndexField;
use crate::error::{Error, Result};
use crate::model::{ExternalIdentity, ExternalIdentityRow, RequestContext, Role, UserRow};

/// The domain of provisioned users' login names (reserved: RFC 2606).
const EXTERNAL_DOMAIN: &str = "identity-provider.invalid";

/// `POST /v1/users/{id}/identities`: a subject at a configured provider to
/// link to a user.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityLink {
    /// The provider's issuer, as configured under `[[auth.oidc]]`.
    pub issuer: String,
    /// The subject (`sub`) at that provider.
    pub subject: String,
}

/// A user's link to a subject at an identity provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkedIdentity {
    /// The link's id (derived from issuer and subject).
    pub id: Uuid,
    /// The provider's issuer.
    pub issuer: String,
    /// The subject at that provider.
    pub subject: String,
    /// The Clarity user.
    pub user_id: Uuid,
    /// When it was linked.
    pub created_at: DateTime<Utc>,
    /// Tokens issued until then no longer count (a logout).
    pub logged_out_at: Option<DateTime<Utc>>,
}

impl From<ExternalIdentityRow> for LinkedIdentity {
    fn from(row: ExternalIdentityRow) -> Self {
        LinkedIdentity {
            id: row.id,
            issuer: row.issuer,
            subject: row.subject,
            user_id: row.user_id,
            created_at: row.created_at,
            logged_out_at: row.logged_out_at,
        }
    }
}

impl Clarity {
    /// Whether `token` is for the OpenID Connect path: providers are
    /// configured and it has a JWT's shape.
    pub(super) fn is_external_token(&self, token: &str) -> bool {
        self.oidc.is_enabled() && OidcVerifier::looks_like_jwt(token)
    }

    /// The principal of a provider's access token (see the module docs).
    pub(super) async fn check_external(&self, token: &str) -> Result<Principal> {
        let now = self.clock.now();
        let verified = self.verified_external(token, now).await?;
        let identity = ExternalIdentity {
            issuer: verified.issuer.clone(),
            subject: verified.subject.clone(),
        };
        let id = ExternalIdentityRow::id_for(&identity.issuer, &identity.subject);
        let link = match self.identity.external_identity(id).await? {
            Some(link) => link,
            None if verified.provision => self.provision(&verified, id, now).await?,
            None => return Err(Error::NotLinked),
        };
        if link
            .logged_out_at
            .is_some_and(|at| verified.issued_at <= at)
        {
            self.oidc.count_refusal(Refusal::LoggedOut);
            return Err(Error::Unauthenticated);
        }
        if let Some(sid) = &verified.session {
            let ended = ExternalIdentityRow::session_id_for(&identity.issuer, sid);
            if self.identity.external_session_ended(ended).await?.is_some() {
                self.oidc.count_refusal(Refusal::LoggedOut);
                return Err(Error::Unauthenticated);
            }
        }
        let user = self.user_row(link.user_id).await.map_err(|e| match e {
            Error::NotFound { .. } => Error::Unauthenticated,
            other => other,
        })?;
        if user.disabled {
            return Err(Error::Unauthenticated);
        }
        let roles = verified.roles;
        if roles.is_empty() {
            return Err(Error::IdentityRoles {
                message: "the identity provider grants no role that is mapped to a Clarity role",
            });
        }
        if roles.check_assignable().is_err() {
            return Err(Error::IdentityRoles {
                message: "the identity provider grants admin together with a role that reads \
                          PHI; Clarity allows neither to such an account (separation of duties)",
            });
        }
        if roles.contains(Role::Admin) && self.config.auth.require_mfa_for_admin && !verified.mfa {
            return Err(Error::MfaRequired);
        }
        if user.roles != roles {
            self.follow_provider_roles(&user, &verified, &identity)
                .await?;
        }
        Ok(Principal {
            user_id: user.id,
            session_id: ExternalIdentityRow::session_id_for(
                &identity.issuer,
                verified.session.as_deref().unwrap_or(&identity.subject),
            ),
            roles,
            patient_id: user.patient_id,
            mfa: verified.mfa,
            context: RequestContext::default(),
            identity: Some(Arc::new(identity)),
        })
    }

    /// The verified token, from the cache when this exact token was verified
    /// before and has not expired since.
    async fn verified_external(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<Arc<ExternalToken>> {
        let key = crate::auth::hash_secret(token);
        if let Some(hit) = self.verified_external.get(&key) {
            if now < hit.expires_at + chrono::Duration::seconds(crate::auth::oidc::MAX_SKEW_SECS) {
                return Ok(hit);
            }
            self.verified_external.remove(&key);
        }
        let verified = Arc::new(self.oidc.verify(token, now).await.map_err(Refusal::error)?);
        self.verified_external.insert(key, Arc::clone(&verified));
        Ok(verified)
    }

    /// Creates the user of a first token from a provider that provisions,
    /// with the token's mapped roles, and links the subject to it.
    async fn provision(
        &self,
        verified: &ExternalToken,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<ExternalIdentityRow> {
        let roles = verified.roles;
        if roles.is_empty() || roles.check_assignable().is_err() {
            // Nothing is created for a token whose roles would be refused.
            return Err(Error::IdentityRoles {
                message: "the identity provider grants no mapped role, or admin together with \
                          a role that reads PHI; no account was created",
            });
        }
        let user_id = Uuid::now_v7();
        let profile = Profile {
            email: format!("{}@{EXTERNAL_DOMAIN}", id.simple()),
            display_name: verified.display_name.clone(),
        };
        let user = UserRow {
            id: user_id,
            email_index: self
                .phi
                .indexer()
                .index(IndexField::UserEmail, &profile.email),
            profile: self.directory.seal(USERS, user_id, 1, &profile)?,
            password_hash: NO_PASSWORD_EXTERNAL.to_string(),
            roles,
            disabled: false,
            patient_id: None,
            mfa_secret: None,
            mfa_enabled: false,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        let link = ExternalIdentityRow {
            id,
            issuer: verified.issuer.clone(),
            subject: verified.subject.clone(),
            user_id,
            created_at: now,
            logged_out_at: self.identity.external_session_ended(id).await?,
        };
        match self
            .identity
            .link_external_identity(&link, Some(&user))
            .await
        {
            Ok(()) => {}
            // Another request (or instance) provisioned this subject first.
            Err(Error::AlreadyExists { .. }) => {
                return self
                    .identity
                    .external_identity(id)
                    .await?
                    .ok_or(Error::Unauthenticated);
            }
            Err(e) => return Err(e),
        }
        let mut ev = Ev::of("admin", "user.provision", AuditAction::Create);
        ev.entity = Some(user_id);
        let identity = ExternalIdentity {
            issuer: link.issuer.clone(),
            subject: link.subject.clone(),
        };
        self.record_external(
            Some(user_id),
            &identity,
            ev,
            AuditOutcome::Success,
            "identity_provider",
        )
        .await?;
        Ok(link)
    }

    /// Stores the roles the provider now grants on the user's row, so that
    /// lists of users show them; audited.
    async fn follow_provider_roles(
        &self,
        user: &UserRow,
        verified: &ExternalToken,
        identity: &ExternalIdentity,
    ) -> Result<()> {
        let mut row = user.clone();
        row.roles = verified.roles;
        row.version += 1;
        row.updated_at = self.clock.now();
        let profile: Profile =
            self.directory
                .open_sealed(USERS, user.id, user.version, &user.profile)?;
        row.profile = self.directory.seal(USERS, user.id, row.version, &profile)?;
        match self.identity.update_user(&row, user.version).await {
            // A concurrent request updated it first: its roles are as fresh.
            Ok(()) | Err(Error::Conflict { .. }) => {}
            Err(e) => return Err(e),
        }
        let mut ev = Ev::of("admin", "user.roles.provider", AuditAction::Update);
        ev.entity = Some(user.id);
        self.record_external(
            Some(user.id),
            identity,
            ev,
            AuditOutcome::Success,
            "identity_provider",
        )
        .await
    }

    /// Records an event naming `identity`, by `actor`.
    async fn record_external(
        &self,
        actor: Option<Uuid>,
        identity: &ExternalIdentity,
        ev: Ev,
        outcome: AuditOutcome,
        reason: &str,
    ) -> Result<()> {
        let mut event = super::auditing::draft(
            None,
            actor,
            ev,
            outcome,
            Some(reason.to_string()),
            RequestContext::default(),
        );
        event.identity = Some(Arc::new(identity.clone()));
        self.audit.append(event).await
    }

    /// Handles an OpenID Connect back-channel logout: `logout_token` is
    /// verified (signature, issuer, `aud` = the provider's
    /// `logout_client_id`, the logout event, `iat`, `jti`, no `nonce`), then
    /// the tokens of the subject it names issued until its `iat`, and every
    /// token of the provider session it names, stop counting at once. Audited.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] (no detail) for a token that does not verify.
    pub async fn backchannel_logout(
        &self,
        logout_token: &str,
        context: RequestContext,
    ) -> Result<()> {
        let now = self.clock.now();
        let ev = Ev::of("logout", "auth.backchannel_logout", AuditAction::Execute);
        let verified = match self.oidc.verify_logout(logout_token, now).await {
            Ok(verified) => verified,
            Err(refusal) => {
                self.record_with_context(
                    None,
                    None,
                    ev,
                    AuditOutcome::MinorFailure,
                    Some(refusal.as_str().to_string()),
                    context,
                )
                .await?;
                return Err(match refusal {
                    Refusal::Unavailable => refusal.error(),
                    _ => Error::invalid("the logout token was refused"),
                });
            }
        };
        let mut actor = None;
        if let Some(subject) = &verified.subject {
            let id = ExternalIdentityRow::id_for(&verified.issuer, subject);
            // Kept apart from the link too, so that a subject linked or
            // provisioned later (or unlinked and linked again) still has
            // its earlier tokens ended.
            self.identity
                .end_external_session(id, verified.issued_at)
                .await?;
            self.identity
                .end_external_logins(id, verified.issued_at)
                .await?;
            actor = self
                .identity
                .external_identity(id)
                .await?
                .map(|link| link.user_id);
        }
        if let Some(sid) = &verified.session {
            let id = ExternalIdentityRow::session_id_for(&verified.issuer, sid);
            self.identity.end_external_session(id, now).await?;
        }
        let mut event = super::auditing::draft(
            None,
            actor,
            ev,
            AuditOutcome::Success,
            Some("identity_provider".into()),
            context,
        );
        event.identity = Some(Arc::new(ExternalIdentity {
            issuer: verified.issuer,
            subject: verified.subject.unwrap_or_default(),
        }));
        self.audit.append(event).await
    }

    /// Ends the caller's own tokens from its provider (its logout): every
    /// token of its subject issued until now.
    pub(super) async fn logout_external(
        &self,
        principal: &Principal,
        identity: &ExternalIdentity,
    ) -> Result<()> {
        let id = ExternalIdentityRow::id_for(&identity.issuer, &identity.subject);
        let result = self
            .identity
            .end_external_logins(id, self.clock.now())
            .await
            .map(|_| ((), crate::access::Reason::Role));
        let ev = Ev::of("logout", "auth.logout", AuditAction::Execute);
        self.audited(principal, ev, result).await
    }

    /// Links a subject at a configured provider to a user (admins), so the
    /// provider's tokens for that subject authenticate as the user.
    ///
    /// # Errors
    /// [`Error::PermissionDenied`]; [`Error::InvalidInput`] for an issuer
    /// that is not configured or an empty subject; [`Error::NotFound`] for
    /// an unknown user; [`Error::AlreadyExists`] when the subject is linked.
    pub async fn link_identity(
        &self,
        principal: &Principal,
        user_id: Uuid,
        link: IdentityLink,
    ) -> Result<LinkedIdentity> {
        let result = async {
            let reason = self
                .authorize(principal, &Action::ManageUsers, None)
                .await?;
            if !self
                .config
                .auth
                .oidc
                .iter()
                .any(|p| p.issuer == link.issuer)
            {
                return Err(Error::invalid(
                    "issuer: not a provider configured under [[auth.oidc]]",
                ));
            }
            if link.subject.is_empty() || link.subject.len() > 255 {
                return Err(Error::invalid("subject: 1 to 255 bytes"));
            }
            let user = self.user_row(user_id).await?;
            if super::users::is_service_account(&user) {
                return Err(Error::invalid(
                    "a service account authenticates with its client secret, not a provider",
                ));
            }
            if user.roles.contains(Role::Patient) || user.patient_id.is_some() {
                // A provider's roles would replace the patient role while the
                // account stays linked to its record.
                return Err(Error::invalid(
                    "a patient's account cannot be linked to an identity provider",
                ));
            }
            let id = ExternalIdentityRow::id_for(&link.issuer, &link.subject);
            let row = ExternalIdentityRow {
                id,
                issuer: link.issuer,
                subject: link.subject,
                user_id,
                created_at: self.clock.now(),
                // A logout the provider sent before the link still counts.
                logged_out_at: self.identity.external_session_ended(id).await?,
            };
            self.identity.link_external_identity(&row, None).await?;
            Ok((LinkedIdentity::from(row), reason))
        }
        .await;
        let ev = Ev::of("admin", "user.identity.link", AuditAction::Create).entity(user_id);
        self.audited(principal, ev, result).await
    }

    /// Removes a user's link `link_id` (admins): the provider's tokens for
    /// that subject no longer authenticate.
    ///
    /// # Errors
    /// [`Error::PermissionDenied`]; [`Error::NotFound`] when the user has no
    /// such link.
    pub async fn unlink_identity(
        &self,
        principal: &Principal,
        user_id: Uuid,
        link_id: Uuid,
    ) -> Result<()> {
        let result = async {
            let reason = self
                .authorize(principal, &Action::ManageUsers, None)
                .await?;
            let owned = self
                .identity
                .external_identity(link_id)
                .await?
                .is_some_and(|l| l.user_id == user_id);
            if !owned {
                return Err(Error::NotFound {
                    what: "identity link",
                });
            }
            self.identity.unlink_external_identity(link_id).await?;
            Ok(((), reason))
        }
        .await;
        let ev = Ev::of("admin", "user.identity.unlink", AuditAction::Delete).entity(user_id);
        self.audited(principal, ev, result).await
    }

    /// A user's links to identity providers (admins).
    ///
    /// # Errors
    /// [`Error::PermissionDenied`]; [`Error::NotFound`] for an unknown user.
    pub async fn list_identities(
        &self,
        principal: &Principal,
        user_id: Uuid,
    ) -> Result<Vec<LinkedIdentity>> {
        let result = async {
            let reason = self
                .authorize(principal, &Action::ManageUsers, None)
                .await?;
            self.user_row(user_id).await?;
            let links = self.identity.external_identities_of(user_id).await?;
            Ok((
                links.into_iter().map(LinkedIdentity::from).collect(),
                reason,
            ))
        }
        .await;
        let ev = Ev::of("admin", "user.identity.list", AuditAction::Read).entity(user_id);
        self.audited(principal, ev, result).await
    }
}

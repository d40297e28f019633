//! [`Invalidation`]: what a write changed, named by ids only, so that caches
//! (this instance's and, through a channel, the others') drop it.

use uuid::Uuid;

/// Something a write changed, named by ids only. Its text form (see
/// [`Invalidation::encode`]) travels between instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Invalidation {
    /// One session (logout, revocation, refresh-token reuse).
    Session(Uuid),
    /// Every session of a user (disable, password change).
    UserSessions(Uuid),
    /// A user's roles, status or profile.
    User(Uuid),
    /// One care-team membership.
    CareTeam {
        /// The patient.
        patient: Uuid,
        /// The member.
        user: Uuid,
    },
    /// A user's break-glass grants.
    Grants(Uuid),
    /// A patient's profile and data key (update, erasure).
    Patient(Uuid),
    /// A patient's wrapped data key (rotation).
    DataKey(Uuid),
    /// One record (update, delete).
    Record(Uuid),
    /// A link to an identity provider's subject (link, unlink, logout),
    /// by [`crate::model::ExternalIdentityRow::id_for`].
    ExternalIdentity(Uuid),
    /// A provider session ended by a back-channel logout, by
    /// [`crate::model::ExternalIdentityRow::session_id_for`].
    ExternalSession(Uuid),
    /// Everything.
    All,
}

impl Invalidation {
    /// The wire form: `s:<id>`, `us:<id>`, `u:<id>`, `t:<patient>:<user>`,
    /// `g:<id>`, `p:<id>`, `k:<id>`, `r:<id>`, `x:<id>`, `xs:<id>` or `all`.
    pub fn encode(&self) -> String {
        match self {
            Invalidation::Session(id) => format!("s:{id}"),
            Invalidation::UserSessions(id) => format!("us:{id}"),
            Invalidation::User(id) => format!("u:{id}"),
            Invalidation::CareTeam { patient, user } => format!("t:{patient}:{user}"),
            Invalidation::Grants(id) => format!("g:{id}"),
            Invalidation::Patient(id) => format!("p:{id}"),
            Invalidation::DataKey(id) => format!("k:{id}"),
            Invalidation::Record(id) => format!("r:{id}"),
            Invalidation::ExternalIdentity(id) => format!("x:{id}"),
            Invalidation::ExternalSession(id) => format!("xs:{id}"),
            Invalidation::All => "all".to_string(),
        }
    }

    /// Parses [`Invalidation::encode`]'s form; `None` for anything else.
    pub fn decode(text: &str) -> Option<Invalidation> {
        if text == "all" {
            return Some(Invalidation::All);
        }
        let (tag, rest) = text.split_once(':')?;
        if tag == "t" {
            let (patient, user) = rest.split_once(':')?;
            return Some(Invalidation::CareTeam {
                patient: Uuid::parse_str(patient).ok()?,
                user: Uuid::parse_str(user).ok()?,
            });
        }
        let id = Uuid::parse_str(rest).ok()?;
        Some(match tag {
            "s" => Invalidation::Session(id),
            "us" => Invalidation::UserSessions(id),
            "u" => Invalidation::User(id),
            "g" => Invalidation::Grants(id),
            "p" => Invalidation::Patient(id),
            "k" => Invalidation::DataKey(id),
            "r" => Invalidation::Record(id),
            "x" => Invalidation::ExternalIdentity(id),
            "xs" => Invalidation::ExternalSession(id),
            _ => return None,
        })
    }
}

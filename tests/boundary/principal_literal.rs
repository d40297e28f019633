// error: E0451
// S-API-1: a Principal cannot be built by hand (its fields are private).
use clarity_core::access::Principal;
use clarity_core::model::{Role, RoleSet};

fn main() {
    let _forged = Principal {
        user_id: Default::default(),
        session_id: Default::default(),
        roles: RoleSet::from_roles([Role::Admin]),
        patient_id: None,
        mfa: true,
        context: Default::default(),
        identity: None,
    };
}

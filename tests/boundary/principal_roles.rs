// error: E0616
// S-API-1: an authenticated principal's roles cannot be edited.
use clarity_core::access::Principal;
use clarity_core::model::{Role, RoleSet};

fn promote(principal: &mut Principal) {
    principal.roles = RoleSet::from_roles([Role::Clinician]);
}

fn main() {
    let _ = promote;
}

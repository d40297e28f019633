// error: E0603
// S-API-1: key providers, which hand out the root secret, are crate-private.
fn around(path: &std::path::Path) {
    let _keys = clarity_core::crypto::LocalKeyring::open(path);
}

fn main() {
    let _ = around;
}

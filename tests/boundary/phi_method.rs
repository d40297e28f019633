// error: E0599
// S-API-1: the encrypting store under the service is not reachable.
async fn around(clarity: &clarity_core::Clarity) {
    let _raw = clarity.phi();
}

fn main() {
    let _ = around;
}

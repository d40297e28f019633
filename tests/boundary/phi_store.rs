// error: E0603
// S-API-1: the encrypting layer cannot be opened without the service.
async fn around(config: &clarity_core::Config) {
    let _phi = clarity_core::vault::PhiStore::open(config).await;
}

fn main() {
    let _ = around;
}

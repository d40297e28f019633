// error: E0603
// S-API-1: the raw backends (ciphertext rows, wrapped keys) are crate-private.
async fn around(config: &clarity_core::Config) {
    let _rows = clarity_core::store::open(&config.store, &config.data_dir).await;
}

fn main() {
    let _ = around;
}

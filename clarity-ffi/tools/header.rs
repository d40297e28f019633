//! Generates `include/clarity.h` with cbindgen: `cargo run -p clarity-ffi
//! --example header -- PATH`. scripts/test writes it to a temporary file
//! and fails when it differs from the committed header.

// A development tool: failing loudly is what it should do.
#![allow(clippy::unwrap_used)]

use std::path::Path;

fn main() {
    let out = std::env::args()
        .nth(1)
        .expect("usage: header OUTPUT.h (e.g. clarity-ffi/include/clarity.h)");
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("read clarity-ffi/cbindgen.toml");
    config.after_includes = Some(version_defines());
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("generate the header")
        .write_to_file(out);
}

/// `CLARITY_VERSION` and its parts, from the crate version.
fn version_defines() -> String {
    format!(
        "\n/* The version of the library this header belongs to; compare with clarity_version(). */\n\
         #define CLARITY_VERSION \"{}\"\n\
         #define CLARITY_VERSION_MAJOR {}\n\
         #define CLARITY_VERSION_MINOR {}\n\
         #define CLARITY_VERSION_PATCH {}",
        env!("CARGO_PKG_VERSION"),
        env!("CARGO_PKG_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MINOR"),
        env!("CARGO_PKG_VERSION_PATCH"),
    )
}

//! The committed header belongs to this crate version: its `CLARITY_VERSION`
//! macros equal the crate version, which `clarity_version()` returns.

use std::ffi::CStr;

fn define(header: &str, name: &str) -> String {
    header
        .lines()
        .find_map(|l| l.strip_prefix(&format!("#define {name} ")))
        .unwrap_or_else(|| panic!("{name} is not defined in clarity.h"))
        .trim()
        .trim_matches('"')
        .to_string()
}

#[test]
fn header_version_is_the_crate_version() {
    let header = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/clarity.h"))
        .expect("read include/clarity.h");
    assert_eq!(
        define(&header, "CLARITY_VERSION"),
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(
        define(&header, "CLARITY_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MAJOR")
    );
    assert_eq!(
        define(&header, "CLARITY_VERSION_MINOR"),
        env!("CARGO_PKG_VERSION_MINOR")
    );
    assert_eq!(
        define(&header, "CLARITY_VERSION_PATCH"),
        env!("CARGO_PKG_VERSION_PATCH")
    );
    // SAFETY: clarity_version returns a static NUL-terminated string.
    let library = unsafe { CStr::from_ptr(clarity::clarity_version()) };
    assert_eq!(library.to_str().expect("utf-8"), env!("CARGO_PKG_VERSION"));
}

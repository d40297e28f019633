//! This machine's name, for files that each host appends to on its own
//! (the erasure ledger, the audit witness) so that instances sharing a
//! directory never write to the same file.

/// The host's name (`/proc/sys/kernel/hostname`), `local` when unknown.
pub(crate) fn name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "local".to_string())
}

/// `name` usable in a file name: characters other than letters, digits,
/// `.`, `-` and `_` become `_`.
pub(crate) fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

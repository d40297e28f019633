//! Criterion benchmarks of Clarity's hot paths live in `benches/`; this
//! library target is empty. Run them with `cargo bench -p clarity-benches`.

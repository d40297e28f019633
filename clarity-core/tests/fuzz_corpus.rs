//! The fuzz targets' committed corpora and every crash the fuzzer ever found
//! (`fuzz/corpus/<target>/`, `fuzz/regressions/<target>/`), replayed on
//! stable Rust as ordinary tests: what once broke an input path stays fixed
//! (S-IN-1, S-ERR-1, S-AUTH-3, S-INT-1). The coverage-guided runs are in
//! `scripts/fuzz` (docs/RELIABILITY.md).

use std::path::PathBuf;

use clarity_core::testing::fuzz::TARGETS;

fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(kind)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_and_regression_input_passes_its_target() {
    for (target, run) in TARGETS {
        let corpus = inputs("corpus", target);
        assert!(!corpus.is_empty(), "fuzz/corpus/{target} has seeds");
        let regressions = inputs("regressions", target);
        for path in corpus.iter().chain(&regressions) {
            let data = std::fs::read(path).expect("read a fuzz input");
            run(&data);
        }
        println!(
            "{target}: {} seeds, {} regressions",
            corpus.len(),
            regressions.len()
        );
    }
}

/// The first bug the fuzzer found (fuzz/regressions/ffi_json): numbers in a
/// stored document must read back as the same numbers, however often a
/// document is parsed and written again (serde_json `float_roundtrip`).
#[test]
fn numbers_in_documents_survive_repeated_round_trips() {
    let text = r#"{"n":1E9,"m":1234567890123456789901234567890,"f":0.30000000000000004,"e":-2.2250738585072014e-308}"#;
    let first: clarity_core::crypto::Json = serde_json::from_str(text).expect("parse");
    let written = serde_json::to_string(&first).expect("serialise");
    let second: clarity_core::crypto::Json = serde_json::from_str(&written).expect("parse again");
    assert_eq!(second, first, "the same numbers after a round trip");
    assert_eq!(serde_json::to_string(&second).expect("serialise"), written);
}

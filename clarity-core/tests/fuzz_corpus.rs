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

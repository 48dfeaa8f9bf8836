//! Replays the fuzzers' committed corpus and crash reproducers (`server/fuzz/corpus/<target>/`,
//! `server/fuzz/artifacts/<target>/`) through the fuzz targets' bodies: whatever the fuzzer once
//! found stays fixed, and the corpus keeps exercising every target in `make test`.

use keyward_server::fuzz_targets::{TARGETS, run};

#[test]
fn the_committed_fuzz_corpus_replays_cleanly() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for target in TARGETS {
        let mut inputs = 0;
        for dir in ["corpus", "artifacts"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                let outcome = std::panic::catch_unwind(|| run(target, &data));
                assert!(outcome.is_ok(), "{target}: {} fails", path.display());
                inputs += 1;
            }
        }
        assert!(inputs > 0, "{target}: no corpus committed");
    }
}

//! Replays every committed input of fuzz/corpus/TARGET/ through its target: the corpus is the
//! fuzzers' regression suite, run on the stable toolchain by scripts/test.sh. Inputs that once
//! failed are kept there under names starting with `regress-`.

use std::path::Path;

#[test]
fn every_corpus_input_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut total = 0;
    for &(name, target) in handoff_init_fuzz::TARGETS {
        let dir = root.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{} is empty", dir.display());
        for file in &files {
            let data = std::fs::read(file).unwrap();
            let caught = std::panic::catch_unwind(|| target(&data));
            assert!(caught.is_ok(), "{name}: {} fails", file.display());
        }
        total += files.len();
    }
    let dirs = std::fs::read_dir(&root).unwrap().count();
    assert_eq!(
        dirs,
        handoff_init_fuzz::TARGETS.len(),
        "a corpus dir without a target"
    );
    eprintln!("replayed {total} corpus inputs");
}

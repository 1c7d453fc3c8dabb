//! Replays the committed fuzz seed corpus (`fuzz/corpus/`) through the
//! same harnesses `cargo fuzz` runs, so a regression found by fuzzing and
//! added to the corpus stays fixed.

use std::path::Path;

fn each(dir: &str, f: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(dir);
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        f(&data);
        n += 1;
    }
    n
}

#[test]
fn decode_corpus() {
    assert!(each("decode", accord::fuzzing::fuzz_decode) > 10);
}

#[test]
fn join_corpus() {
    assert!(each("join", accord::fuzzing::fuzz_join) > 5);
}

#[test]
fn otlp_corpus() {
    assert!(each("otlp", accord::fuzzing::fuzz_otlp) > 5);
}

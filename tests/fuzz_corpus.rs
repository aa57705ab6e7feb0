//! Replays every input of the fuzz corpus (`tests/fuzz/corpus/<target>/`) through the same
//! entry points the fuzz targets use, so a regression found once by fuzzing stays found.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(target);
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        run(&data);
        n += 1;
    }
    n
}

#[test]
fn request_head_corpus() {
    assert!(replay("request_head", proxyd::fuzz::request_head) > 0);
}

#[test]
fn response_head_corpus() {
    assert!(replay("response_head", proxyd::fuzz::response_head) > 0);
}

#[test]
fn chunked_corpus() {
    assert!(replay("chunked", proxyd::fuzz::chunked) > 0);
}

#[test]
fn h2_frames_corpus() {
    assert!(replay("h2_frames", proxyd::fuzz::h2_frames) > 0);
}

#[test]
fn hpack_corpus() {
    assert!(replay("hpack", proxyd::fuzz::hpack) > 0);
}

#[test]
fn h2_conn_corpus() {
    assert!(replay("h2_conn", proxyd::fuzz::h2_conn) > 0);
}

//! `incubator bench-serve` measures what it says: its clients are served (every record of the
//! run reaches every reading client, the page loads succeed). Since the server began refusing
//! foreign `Host` names, the clients' `Host: x` got 403 answers, counted as page loads, and
//! every stream received nothing ("0-0 of 2459", first record after "inf s"), so the
//! benchmark printed a load that never happened.
#![cfg(not(feature = "cuda"))]

mod common;
use common::*;

#[test]
fn every_client_is_served_every_record_and_the_page_loads_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), TINY);
    let out = incubator(&[
        "bench-serve",
        "--rounds",
        "1",
        "--clients",
        "3",
        "--stalled",
        "1",
        "--page-loaders",
        "1",
        "-c",
        &cfg,
    ]);
    assert_ok(&out, "bench-serve");
    let text = String::from_utf8_lossy(&out.stdout);
    let row = text
        .lines()
        .find(|l| l.starts_with("| 1 |"))
        .unwrap_or_else(|| panic!("no round in:\n{text}"));
    let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
    // "| round | ... | records per client (min-max) of written | page loads | slowest first record |"
    let (records, pages, first) = (cells[7], cells[8], cells[9]);
    let n: Vec<usize> = records
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(
        n.len() == 3 && n[2] > 0 && n[0] == n[2] && n[1] == n[2],
        "not every record reached every client: {row}"
    );
    assert!(pages.parse::<usize>().unwrap() > 0, "{row}");
    let first: f64 = first.trim_end_matches(" s").parse().unwrap();
    assert!(first.is_finite(), "{row}");
}

//! `bench --rounds N`: each preset measured N times, the table giving the median with the
//! lowest and highest of the rounds printed above it; with `--pytorch`, ours and PyTorch in
//! turn, the first of each pair alternating, and the ratio the median of the rounds' ratios.
#![cfg(not(feature = "cuda"))]

mod common;
use common::*;

/// The numbers of a line, in order (`1.66 [1.62, 1.72]` gives three).
fn numbers(line: &str) -> Vec<f64> {
    line.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter_map(|w| w.trim_matches('.').parse().ok())
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn lines_starting<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(prefix)).collect()
}

/// The table cells of the preset's row, after the preset's name.
fn row_cells(text: &str) -> Vec<String> {
    let row = lines_starting(text, "| mnist-small |");
    assert_eq!(row.len(), 1, "{text}");
    row[0]
        .trim_matches('|')
        .split('|')
        .skip(1)
        .map(|c| c.trim().to_string())
        .collect()
}

#[test]
fn rounds_give_the_median_lowest_and_highest_of_what_each_round_measured() {
    let mut args = SMALL_BENCH.to_vec();
    args.extend(["--rounds", "3"]);
    let out = incubator(&args);
    assert_ok(&out, "bench --rounds 3");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("3 rounds per preset") && text.contains("with 75.0% confidence"),
        "{text}"
    );
    let rounds = lines_starting(&text, "mnist-small round ");
    assert_eq!(rounds.len(), 3, "{text}");
    // "mnist-small round 2: 405.8 samples/s"
    let rates: Vec<f64> = rounds.iter().map(|l| numbers(l)[1]).collect();
    for (i, l) in rounds.iter().enumerate() {
        assert_eq!(numbers(l)[0], (i + 1) as f64, "{l}");
    }
    let cells = row_cells(&text);
    let (lo, hi) = (
        rates.iter().cloned().fold(f64::MAX, f64::min),
        rates.iter().cloned().fold(0.0, f64::max),
    );
    // three rounds: the median is one of them, printed as that round printed it
    assert_eq!(
        cells[1],
        format!("{:.1} [{lo:.1}, {hi:.1}]", median(rates.clone())),
        "{text}"
    );
    // the table comes after the rounds
    let table = text.find("| preset |").unwrap();
    assert!(text.find("mnist-small round 3").unwrap() < table, "{text}");
}

#[test]
#[ignore = "needs INCUBATOR_TORCH_PYTHON: a python with torch (./scripts/test.sh sets it)"]
fn rounds_against_pytorch_alternate_who_goes_first_and_give_the_median_ratio() {
    let python = std::env::var("INCUBATOR_TORCH_PYTHON")
        .expect("INCUBATOR_TORCH_PYTHON is not set: ./scripts/test.sh sets it");
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(python);
    let mut args = SMALL_BENCH.to_vec();
    args.extend(["--rounds", "4", "--pytorch", python.to_str().unwrap()]);
    let out = incubator(&args);
    assert_ok(&out, "bench --rounds 4 --pytorch");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("with 87.5% confidence"), "{text}");
    let rounds = lines_starting(&text, "mnist-small round ");
    assert_eq!(rounds.len(), 4, "{text}");
    let mut ratios = Vec::new();
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for (i, l) in rounds.iter().enumerate() {
        // "mnist-small round 2 (PyTorch first): ours 405.8, PyTorch 245.0 samples/s, ratio 1.656"
        let first = if i % 2 == 0 {
            "(ours first)"
        } else {
            "(PyTorch first)"
        };
        assert!(l.contains(first), "round {}: {l}", i + 1);
        let n = numbers(l);
        let (o, t, r) = (n[1], n[2], n[3]);
        assert!((o / t - r).abs() < 2e-3 * r, "{l}");
        ours.push(o);
        theirs.push(t);
        ratios.push(r);
    }
    let cells = row_cells(&text);
    let check = |cell: &str, v: &[f64], tol: f64| {
        let n = numbers(cell);
        assert_eq!(n.len(), 3, "{cell}");
        let lo = v.iter().cloned().fold(f64::MAX, f64::min);
        let hi = v.iter().cloned().fold(0.0, f64::max);
        for (got, want) in n.iter().zip([median(v.to_vec()), lo, hi]) {
            assert!(
                (got - want).abs() <= tol,
                "{cell}: {got} against {want} ({v:?})"
            );
        }
    };
    // the rounds print their figures rounded: one unit of the table's last digit
    check(&cells[1], &ours, 0.1);
    check(&cells[2], &theirs, 0.1);
    check(&cells[3], &ratios, 0.01);
}

/// `--pytorch` hands Python the benchmark script as `-c` source: a run writes nothing to the
/// temporary folder (each run used to leave `incubator-bench-PID.py` there, at a name another
/// user of the machine could predict). A stand-in for Python checks how it is called and
/// answers as `bench.py` does.
#[test]
fn pytorch_gets_its_script_as_source_and_nothing_is_left_in_the_temporary_folder() {
    let dir = tempfile::tempdir().unwrap();
    let python = stand_in_python(
        dir.path(),
        r#"case "$2" in *"def main"*) ;; *) echo "not bench.py's source" >&2; exit 2 ;; esac
case "$3" in
  --matmul) echo '{"torch": "stand-in", "device": "cpu", "cpu_capability": "AVX2", "matmul_gflops": 100.0}' ;;
  *) echo '{"samples_per_sec": 50.0, "peak_rss_mib": 10.0}' ;;
esac"#,
    );
    let mut args = SMALL_BENCH.to_vec();
    args.extend(["--pytorch", python.to_str().unwrap()]);
    let (out, left) = incubator_in_tmpdir(dir.path(), &args);
    assert_ok(&out, "bench --pytorch (stand-in)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("PyTorch stand-in (cpu"), "{text}");
    // the stand-in's samples/s in PyTorch's column
    assert_eq!(row_cells(&text)[2], "50.0", "{text}");
    assert!(left.is_empty(), "left in the temporary folder: {left:?}");
}

//! docs/plugins.md shows real code: every Rust block is a verbatim piece of the source file its
//! first line names, so each is compiled (and tested) with its crate; the worked example is
//! shown whole, and it is as short as the guide says.

use std::path::Path;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The guide's ```rust blocks: (file named in the first line, the rest).
fn rust_blocks(guide: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = guide.lines();
    while let Some(line) = lines.next() {
        if line.trim() != "```rust" {
            continue;
        }
        let mut body: Vec<&str> = Vec::new();
        for l in lines.by_ref() {
            if l.trim() == "```" {
                break;
            }
            body.push(l);
        }
        let first = body.first().copied().unwrap_or_default();
        let file = first.strip_prefix("// ").unwrap_or_else(|| {
            panic!("a rust block must start with `// <file>`, this one with {first:?}")
        });
        out.push((file.to_string(), body[1..].join("\n")));
    }
    out
}

#[test]
fn every_rust_block_of_the_guide_is_verbatim_source() {
    let guide = std::fs::read_to_string(repo().join("docs/plugins.md")).unwrap();
    let blocks = rust_blocks(&guide);
    assert!(blocks.len() >= 6, "{} blocks", blocks.len());
    for (file, body) in &blocks {
        let source = std::fs::read_to_string(repo().join(file))
            .unwrap_or_else(|e| panic!("the guide names {file}: {e}"));
        assert!(
            source.contains(body.as_str()),
            "this block of docs/plugins.md is not in {file} as written:\n{body}"
        );
    }

    // The worked example, whole: every line of code of plugins/feature-kd/src/lib.rs is in
    // one of its blocks.
    let example = "plugins/feature-kd/src/lib.rs";
    let source = std::fs::read_to_string(repo().join(example)).unwrap();
    let shown: Vec<&str> = blocks
        .iter()
        .filter(|(f, _)| f == example)
        .flat_map(|(_, b)| b.lines())
        .collect();
    for line in source.lines() {
        let code = !line.trim().is_empty() && !line.starts_with("//!");
        assert!(
            !code || shown.contains(&line),
            "the guide leaves out {line:?}"
        );
    }
    let n = source.lines().count();
    assert!(n < 100, "the example has {n} lines");
    assert!(
        guide.contains(&format!("in {n} lines")),
        "the guide should say the example is {n} lines long"
    );
    let template = std::fs::read_to_string(repo().join("plugins/template/src/lib.rs")).unwrap();
    let t = template.lines().count();
    assert!(
        guide.contains(&format!("a complete strategy of {t} lines")),
        "the guide should say the template is {t} lines long"
    );
}

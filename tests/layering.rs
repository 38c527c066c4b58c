//! Imports run one way. Within each crate, no two files import each other, directly or
//! through others, and in the engine the layers hold: data, kernels (`ops/`) and telemetry
//! at the bottom; model, train, plugin, stages above; a lower layer never imports a higher
//! one. Read from the sources' own `use` lines and `crate::` / `super::` paths (re-exports of
//! a `mod.rs` or `lib.rs` are a facade, not an import), tests left out.
//!
//! `cargo test --test layering -- --nocapture` prints each crate's file graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

/// What each facade (`mod.rs`, `lib.rs`) re-exports: name -> the module it comes from.
type Reexports = BTreeMap<Module, BTreeMap<String, String>>;

/// A crate's files by module path, and each file's imports (as module paths it names).
struct CrateGraph {
    files: BTreeMap<Module, PathBuf>,
    edges: BTreeMap<Module, BTreeSet<Module>>,
}

/// This checkout, or another one named by `LAYERING_ROOT` (to see what the check finds in an
/// older tree).
fn repo() -> PathBuf {
    std::env::var_os("LAYERING_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `a/b.rs` -> [a, b]; `a/mod.rs` -> [a]; `lib.rs` / `main.rs` -> [].
fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut m: Module = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(m.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        m.pop();
    }
    m
}

/// The code of a file without comments and without its `#[cfg(test)]` module.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `a::{b, c::{d as e, self}}` -> [a::b, a::c::d, a::c].
fn expand(tree: &str) -> Vec<String> {
    let tree: String = tree.split_whitespace().collect::<Vec<_>>().join(" ");
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap().trim();
        return vec![path.to_string()];
    };
    let prefix = tree[..open].trim_end_matches("::").trim();
    let inner = &tree[open + 1..tree.rfind('}').unwrap()];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .flat_map(expand)
        .map(|p| match p.as_str() {
            "self" => prefix.to_string(),
            _ if prefix.is_empty() => p,
            _ => format!("{prefix}::{p}"),
        })
        .collect()
}

/// The paths a file's code names: its `use` trees (re-exports of a facade left out) and the
/// paths written inline (`crate::`, `super::`, `self::`, and `name::`, which [`resolve`] keeps
/// where `name` is a child module).
fn named_paths(code: &str, facade: bool) -> Vec<String> {
    let mut paths = Vec::new();
    let mut rest = code;
    // the code outside `use` statements, for the inline paths
    let mut inline = String::new();
    while let Some(at) = find_use(rest) {
        inline.push_str(&rest[..at]);
        let stmt_start = &rest[at..];
        let end = stmt_start.find(';').unwrap_or(stmt_start.len());
        let stmt = &stmt_start[..end];
        let public = stmt.starts_with("pub");
        let tree = stmt.splitn(2, "use ").nth(1).unwrap_or("");
        if !(public && facade) {
            paths.extend(expand(tree));
        }
        rest = &stmt_start[end..];
    }
    inline.push_str(rest);
    let code = inline.as_str();
    let bytes = code.as_bytes();
    let mut from = 0;
    while let Some(at) = code[from..].find("::") {
        let at = from + at;
        from = at + 2;
        let start = code[..at]
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
            .map_or(0, |i| i + 1);
        let word = &code[start..at];
        let before = start.checked_sub(1).map(|i| bytes[i] as char);
        let first_lower = word.starts_with(|c: char| c.is_ascii_lowercase());
        // (`crate::`, `super::` and `self::` paths too; a macro's `$crate::` is the macro's)
        if first_lower && !matches!(before, Some(':' | '$')) {
            let len = code[start..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(code.len() - start);
            paths.push(code[start..start + len].trim_end_matches(':').to_string());
        }
    }
    paths
}

/// Where the next `use` statement starts (at a line start, after optional `pub ...`).
fn find_use(text: &str) -> Option<usize> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        let stripped = t
            .strip_prefix("pub(crate) ")
            .or_else(|| t.strip_prefix("pub(super) "))
            .or_else(|| t.strip_prefix("pub "))
            .unwrap_or(t);
        if stripped.starts_with("use ") {
            return Some(offset + (line.len() - t.len()));
        }
        offset += line.len();
    }
    None
}

/// The module a path names, from module `here` of a crate with modules `known`: the longest
/// prefix that is a module; `None` for another crate.
fn resolve(
    path: &str,
    here: &Module,
    known: &BTreeMap<Module, PathBuf>,
    reexports: &Reexports,
) -> Option<Module> {
    let mut segs: Vec<&str> = path.split("::").collect();
    let mut base: Module = match segs.first().copied() {
        Some("crate") => {
            segs.remove(0);
            Vec::new()
        }
        Some("self") => {
            segs.remove(0);
            here.clone()
        }
        Some("super") => {
            let mut m = here.clone();
            while segs.first() == Some(&"super") {
                segs.remove(0);
                m.pop();
            }
            m
        }
        Some(first) => {
            // a child module of this one (`use strategy::Tap` in a mod.rs), else another crate
            let mut child = here.clone();
            child.push(first.to_string());
            if !known.contains_key(&child) {
                return None;
            }
            here.clone()
        }
        None => return None,
    };
    let mut found = base.clone();
    for s in segs {
        base.push(s.to_string());
        if known.contains_key(&base) {
            found = base.clone();
        } else {
            // a name a facade re-exports: the module it comes from
            if let Some(from) = reexports.get(&found).and_then(|r| r.get(s)) {
                return resolve(from, &found, known, reexports).or(Some(found));
            }
            break;
        }
    }
    Some(found)
}

/// A facade's `pub use` trees by the name each makes visible.
fn reexports_of(code: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = code;
    while let Some(at) = find_use(rest) {
        let stmt_start = &rest[at..];
        let end = stmt_start.find(';').unwrap_or(stmt_start.len());
        let stmt = &stmt_start[..end];
        if stmt.starts_with("pub") {
            let tree = stmt.splitn(2, "use ").nth(1).unwrap_or("");
            for (path, name) in expand_named(tree) {
                out.insert(name, path);
            }
        }
        rest = &stmt_start[end..];
    }
    out
}

/// [`expand`] with the name each path is visible under (its last segment, or its `as`).
fn expand_named(tree: &str) -> Vec<(String, String)> {
    let flat: String = tree.split_whitespace().collect::<Vec<_>>().join(" ");
    let renamed = |p: &str| -> (String, String) {
        match p.split_once(" as ") {
            Some((path, name)) => (path.trim().to_string(), name.trim().to_string()),
            None => {
                let name = p.rsplit("::").next().unwrap_or(p).to_string();
                (p.to_string(), name)
            }
        }
    };
    if !flat.contains('{') {
        return vec![renamed(&flat)];
    }
    // keep renames through the expansion: expand a version with `as` joined to the path
    expand(&flat.replace(" as ", "__AS__"))
        .into_iter()
        .map(|p| renamed(&p.replace("__AS__", " as ")))
        .collect()
}

fn graph(src: &Path) -> CrateGraph {
    let mut list = Vec::new();
    rust_files(src, &mut list);
    let files: BTreeMap<Module, PathBuf> = list
        .into_iter()
        .filter(|f| !f.components().any(|c| c.as_os_str() == "bin"))
        .map(|f| (module_of(src, &f), f))
        .collect();
    let mut reexports = Reexports::new();
    for (m, file) in &files {
        let name = file.file_name().unwrap().to_string_lossy();
        if matches!(name.as_ref(), "mod.rs" | "lib.rs" | "main.rs") {
            let code = code(&std::fs::read_to_string(file).unwrap());
            reexports.insert(m.clone(), reexports_of(&code));
        }
    }
    let mut edges = BTreeMap::new();
    for (m, file) in &files {
        let name = file.file_name().unwrap().to_string_lossy();
        let facade = matches!(name.as_ref(), "mod.rs" | "lib.rs" | "main.rs");
        let code = code(&std::fs::read_to_string(file).unwrap());
        let targets: BTreeSet<Module> = named_paths(&code, facade)
            .iter()
            .filter_map(|p| resolve(p, m, &files, &reexports))
            .filter(|t| t != m && !t.is_empty())
            .collect();
        edges.insert(m.clone(), targets);
    }
    CrateGraph { files, edges }
}

/// Strongly connected components of more than one file (Tarjan).
fn circles(g: &CrateGraph) -> Vec<Vec<Module>> {
    struct State<'a> {
        g: &'a CrateGraph,
        index: BTreeMap<&'a Module, usize>,
        low: BTreeMap<&'a Module, usize>,
        stack: Vec<&'a Module>,
        on_stack: BTreeSet<&'a Module>,
        out: Vec<Vec<Module>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a Module) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in &s.g.edges[v] {
            if !s.g.edges.contains_key(w) {
                continue;
            }
            let w = s.g.edges.get_key_value(w).unwrap().0;
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                s.on_stack.remove(w);
                comp.push(w.clone());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.edges.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.out
}

fn show(m: &Module) -> String {
    if m.is_empty() {
        "(root)".into()
    } else {
        m.join("/")
    }
}

const CRATES: [&str; 6] = [
    "core/src",
    "core/events/src",
    "core/compare/src",
    "core/testkit/src",
    "src",
    "dashboard/src",
];

#[test]
fn no_two_files_import_each_other_directly_or_through_others() {
    let mut found = Vec::new();
    for krate in CRATES {
        let g = graph(&repo().join(krate));
        assert!(g.files.len() >= 3, "{krate}: {} files", g.files.len());
        for (m, targets) in &g.edges {
            let t: Vec<String> = targets.iter().map(show).collect();
            println!("{krate}: {} -> {}", show(m), t.join(", "));
        }
        for c in circles(&g) {
            let ties: Vec<String> = c
                .iter()
                .flat_map(|a| {
                    g.edges[a]
                        .iter()
                        .filter(|b| c.contains(b))
                        .map(move |b| format!("{} -> {}", show(a), show(b)))
                })
                .collect();
            found.push(format!("{krate}: {}", ties.join("; ")));
        }
    }
    assert!(found.is_empty(), "circles:\n{}", found.join("\n"));
}

/// The engine's layers, bottom first; a file may import its own layer's and lower ones'.
const ENGINE_LAYERS: &[&[&str]] = &[
    &[
        "device",
        "panic_message",
        "faults",
        "interrupt",
        "stage_lock",
        "collective",
        "nccl",
    ],
    &["ops", "data", "telemetry"],
    &["model", "config", "checkpoint", "split"],
    &["train"],
    &["run_dir"],
    &["plugin"],
    &["stages", "sdk"],
];

fn layer(m: &Module) -> Option<usize> {
    let top = m.first()?;
    ENGINE_LAYERS.iter().position(|l| l.contains(&top.as_str()))
}

#[test]
fn the_engine_layers_import_downwards_only() {
    let g = graph(&repo().join("core/src"));
    let mut wrong = Vec::new();
    for (m, targets) in &g.edges {
        let Some(from) = layer(m) else {
            assert!(m.is_empty(), "{}: a module of no layer", show(m));
            continue;
        };
        for t in targets {
            let to = layer(t).unwrap_or_else(|| panic!("{}: a module of no layer", show(t)));
            if to > from {
                wrong.push(format!(
                    "{} (layer {from}) -> {} (layer {to})",
                    show(m),
                    show(t)
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "upward imports:\n{}", wrong.join("\n"));
}

/// The layer list in the dashboard's `lib.rs` is true: each module imports only modules
/// before it (within `views/`, the circle test holds the files apart).
#[test]
fn the_dashboards_layer_list_is_true() {
    let lib = std::fs::read_to_string(repo().join("dashboard/src/lib.rs")).unwrap();
    let doc: String = lib
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .collect::<Vec<_>>()
        .join(" ");
    let list = &doc[doc.find("Layers").expect("a layer list")..];
    let order: Vec<&str> = list.split('`').skip(1).step_by(2).collect();
    assert!(order.len() >= 10, "{order:?}");
    let rank = |m: &Module| {
        let top = m.first().map(String::as_str).unwrap_or("");
        order.iter().position(|n| *n == top)
    };
    let g = graph(&repo().join("dashboard/src"));
    let mut wrong = Vec::new();
    for (m, targets) in &g.edges {
        if m.is_empty() {
            continue;
        }
        let from = rank(m).unwrap_or_else(|| panic!("{} is not in the list", show(m)));
        for t in targets {
            let to = rank(t).unwrap_or_else(|| panic!("{} is not in the list", show(t)));
            if to > from {
                wrong.push(format!("{} -> {}", show(m), show(t)));
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the list: {wrong:?}");
}

/// The reader finds what it is for: brace trees, renames, `self`, relative paths.
#[test]
fn the_reader_sees_the_imports_it_is_for() {
    assert_eq!(
        expand("crate::a::{b, c::{d as e, self}}"),
        ["crate::a::b", "crate::a::c::d", "crate::a::c"]
    );
    let known: BTreeMap<Module, PathBuf> = [
        vec![],
        vec!["a".to_string()],
        vec!["a".to_string(), "b".to_string()],
        vec!["c".to_string()],
    ]
    .into_iter()
    .map(|m| (m, PathBuf::new()))
    .collect();
    let ab = vec!["a".to_string(), "b".to_string()];
    // the facade `a` re-exports `X` from `a::b`
    let mut re = Reexports::new();
    re.insert(
        vec!["a".to_string()],
        reexports_of("pub use b::{W as X};\n"),
    );
    let r = |p: &str, here: &Module| resolve(p, here, &known, &re);
    assert_eq!(
        r("super::X", &ab),
        Some(vec!["a".to_string(), "b".to_string()])
    );
    assert_eq!(r("crate::a::X", &vec![]), Some(ab.clone()));
    assert_eq!(r("crate::a::Z", &vec![]), Some(vec!["a".to_string()]));
    assert_eq!(r("crate::c::f", &ab), Some(vec!["c".to_string()]));
    assert_eq!(r("b::Y", &vec!["a".to_string()]), Some(ab.clone()));
    assert_eq!(r("serde::Deserialize", &ab), None);
    let code = "pub use inner::X;\nuse crate::c::{self};\nfn f() { crate::a::b::g(); b::h(); }\n";
    let facade = named_paths(code, true);
    assert!(!facade.iter().any(|p| p.starts_with("inner")), "{facade:?}");
    assert!(facade.contains(&"crate::a::b::g".to_string()), "{facade:?}");
    assert!(facade.contains(&"b::h".to_string()), "{facade:?}");
    assert!(named_paths(code, false).contains(&"inner::X".to_string()));
}

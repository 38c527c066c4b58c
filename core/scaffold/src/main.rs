//! `incubator-new-plugin`: a plugin crate without a build of the engine first (this binary
//! needs only the standard library). The same as `incubator plugin new`.

use incubator_scaffold::{
    new_out_of_tree, new_plugin, next_steps_in_workspace, next_steps_out_of_tree, EngineSource,
};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "usage: incubator-new-plugin NAME [--workspace DIR]
       incubator-new-plugin NAME --path DIR [--engine DIR | --engine-git URL [--rev REV]]

  NAME              the plugin's name: lowercase letters, digits and '-' (e.g. feature-kd)
  --workspace DIR   the engine's repository root, for a plugin in its plugins/ (default: .)
  --path DIR        make the crate here instead, outside the engine's workspace
  --engine DIR      with --path: the engine repository to depend on (default: the one this
                    binary was built from)
  --engine-git URL  with --path: depend on the engine by git URL instead
  --rev REV         with --engine-git: the commit or tag";

/// The parsed command line.
struct Args {
    name: String,
    workspace: Option<PathBuf>,
    path: Option<PathBuf>,
    engine: Option<PathBuf>,
    engine_git: Option<String>,
    rev: Option<String>,
}

fn parse(mut words: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        name: String::new(),
        workspace: None,
        path: None,
        engine: None,
        engine_git: None,
        rev: None,
    };
    while let Some(word) = words.next() {
        let mut value = || words.next().ok_or_else(|| format!("{word} needs a value"));
        match word.as_str() {
            "-h" | "--help" => return Err(String::new()),
            "--workspace" => args.workspace = Some(value()?.into()),
            "--path" => args.path = Some(value()?.into()),
            "--engine" => args.engine = Some(value()?.into()),
            "--engine-git" => args.engine_git = Some(value()?),
            "--rev" => args.rev = Some(value()?),
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag}")),
            name if args.name.is_empty() => args.name = name.to_string(),
            extra => return Err(format!("one plugin at a time: {extra:?} is a second name")),
        }
    }
    let out_of_tree = args.engine.is_some() || args.engine_git.is_some() || args.rev.is_some();
    if args.name.is_empty() {
        Err("give the plugin's name".into())
    } else if args.path.is_some() && args.workspace.is_some() {
        Err("--path and --workspace exclude each other".into())
    } else if out_of_tree && args.path.is_none() {
        Err("--engine, --engine-git and --rev go with --path".into())
    } else if args.engine.is_some() && args.engine_git.is_some() {
        Err("--engine and --engine-git exclude each other".into())
    } else if args.rev.is_some() && args.engine_git.is_none() {
        Err("--rev goes with --engine-git".into())
    } else {
        Ok(args)
    }
}

/// The engine repository this binary was built in (it lives at `core/scaffold` there).
fn built_from() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("core/scaffold is two folders below the repository root")
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(problem) => {
            if !problem.is_empty() {
                eprintln!("error: {problem}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(if problem.is_empty() { 0 } else { 2 });
        }
    };
    let made = match (&args.path, args.engine_git) {
        (Some(dir), Some(url)) => {
            new_out_of_tree(&args.name, dir, &EngineSource::Git { url, rev: args.rev })
                .map(|d| next_steps_out_of_tree(&args.name, &d))
        }
        (Some(dir), None) => {
            let engine = args.engine.unwrap_or_else(|| built_from().to_path_buf());
            match std::path::absolute(&engine) {
                Ok(root) => new_out_of_tree(&args.name, dir, &EngineSource::Path(root))
                    .map(|d| next_steps_out_of_tree(&args.name, &d)),
                Err(e) => {
                    eprintln!("error: --engine {}: {e}", engine.display());
                    return ExitCode::FAILURE;
                }
            }
        }
        (None, _) => {
            let ws = args.workspace.unwrap_or_else(|| PathBuf::from("."));
            new_plugin(&args.name, &ws).map(|d| next_steps_in_workspace(&args.name, &d))
        }
    };
    match made {
        Ok(steps) => {
            println!("{steps}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(line: &str) -> Result<Args, String> {
        parse(line.split_whitespace().map(str::to_string))
    }

    #[test]
    fn options_parse_and_contradictions_are_refused() {
        let a = parsed("kd --path ../kd --engine-git https://x/incubator.git --rev v1").unwrap();
        assert_eq!(
            (
                a.name.as_str(),
                a.path,
                a.engine_git.as_deref(),
                a.rev.as_deref()
            ),
            (
                "kd",
                Some(PathBuf::from("../kd")),
                Some("https://x/incubator.git"),
                Some("v1")
            )
        );
        let a = parsed("kd").unwrap();
        assert!(a.path.is_none() && a.workspace.is_none());
        for (line, problem) in [
            ("", "give the plugin's name"),
            ("kd --path", "--path needs a value"),
            ("kd other", "a second name"),
            ("kd --force", "unknown option --force"),
            ("kd --engine .", "go with --path"),
            ("kd --path p --workspace w", "exclude each other"),
            (
                "kd --path p --engine e --engine-git u",
                "exclude each other",
            ),
            ("kd --path p --rev r", "--rev goes with --engine-git"),
        ] {
            let e = parsed(line)
                .err()
                .unwrap_or_else(|| panic!("{line:?} was taken"));
            assert!(e.contains(problem), "{line:?}: {e}");
        }
        assert_eq!(
            parsed("--help").err(),
            Some(String::new()),
            "help is not an error"
        );
    }

    #[test]
    fn the_default_engine_is_the_repository_this_was_built_in() {
        let root = built_from();
        assert!(root.join("core/Cargo.toml").is_file() && root.join("src/cli.rs").is_file());
        assert!(!root.to_string_lossy().contains(".."), "{}", root.display());
    }
}

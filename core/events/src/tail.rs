//! Following a run directory's event files (`events/<stage>.jsonl`) as they grow, for the
//! live server and the native dashboard. A reader keeps a byte offset per
//! stage file and returns only complete new lines; its position is a token a client sends
//! back to resume exactly where it stopped (`meta=1234;incubate-0=567`).

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Most bytes read from one file per poll: a client far behind catches up in slices, so a
/// server's memory per client stays bounded whatever the size of the run.
const MAX_READ: u64 = 1 << 20;

pub struct RunTail {
    events_dir: PathBuf,
    offsets: BTreeMap<String, u64>,
}

impl RunTail {
    /// A reader at the position `token` names (`None` or empty: from the start).
    pub fn new(run_dir: &Path, token: Option<&str>) -> RunTail {
        let mut offsets = BTreeMap::new();
        for part in token.unwrap_or("").split(';').filter(|p| !p.is_empty()) {
            if let Some((stage, off)) = part.split_once('=') {
                if let Ok(off) = off.parse() {
                    offsets.insert(stage.to_string(), off);
                }
            }
        }
        RunTail {
            events_dir: run_dir.join("events"),
            offsets,
        }
    }

    /// Where this reader is: the token that resumes here.
    pub fn token(&self) -> String {
        self.offsets
            .iter()
            .map(|(s, o)| format!("{s}={o}"))
            .collect::<Vec<_>>()
            .join(";")
    }

    /// New complete lines of every stage file, each with the token just after it.
    pub fn poll(&mut self) -> Vec<(String, String)> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.events_dir)
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|e| e == "jsonl"));
        files.sort();
        let mut out = Vec::new();
        for path in files {
            let stage = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let start = self.offsets.get(&stage).copied().unwrap_or(0);
            let Ok(chunk) = read_from(&path, start) else {
                continue;
            };
            // only whole lines: the engine may be in the middle of writing one
            let Some(end) = chunk.iter().rposition(|&b| b == b'\n') else {
                continue;
            };
            let mut at = start;
            for line in chunk[..=end].split(|&b| b == b'\n') {
                if line.is_empty() {
                    continue;
                }
                at += line.len() as u64 + 1;
                self.offsets.insert(stage.clone(), at);
                out.push((self.token(), String::from_utf8_lossy(line).into_owned()));
            }
        }
        out
    }
}

fn read_from(path: &Path, start: u64) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    if len <= start {
        return Ok(Vec::new());
    }
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    f.take((len - start).min(MAX_READ)).read_to_end(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn returns_whole_new_lines_and_resumes_from_its_token() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("events")).unwrap();
        let meta = dir.path().join("events/meta.jsonl");
        let mut f = std::fs::File::create(&meta).unwrap();
        f.write_all(b"{\"a\":1}\n{\"a\":2}\n{\"a\":").unwrap();
        let mut tail = RunTail::new(dir.path(), None);
        let got = tail.poll();
        assert_eq!(got.len(), 2, "the half-written line waits");
        assert_eq!(got[1].0, "meta=16");
        assert!(tail.poll().is_empty());
        f.write_all(b"3}\n").unwrap();
        std::fs::write(dir.path().join("events/e2e.jsonl"), "{\"b\":1}\n").unwrap();
        let got = tail.poll();
        assert_eq!(got.len(), 2);
        assert_eq!(got.last().unwrap().0, "e2e=8;meta=24");
        // a client that saw only the first record resumes after it
        let mut resumed = RunTail::new(dir.path(), Some("meta=8"));
        let lines: Vec<String> = resumed.poll().into_iter().map(|(_, l)| l).collect();
        assert_eq!(lines, vec!["{\"b\":1}", "{\"a\":2}", "{\"a\":3}"]);
    }
}

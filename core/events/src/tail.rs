//! Following a run directory's event files (`events/<stage>.jsonl`) as they grow, for the
//! live server and the native dashboard. A reader keeps a byte offset per
//! stage file and returns only complete new lines; its position is a token a client sends
//! back to resume exactly where it stopped (`meta=1234;incubate-0=567`).

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Most bytes read from one file per poll by default (64 KiB): a server's client far behind
/// catches up in slices, so what each client costs stays bounded whatever the size of the run.
pub const MAX_READ: u64 = 64 << 10;
/// Longer lines are not events; a reader skips them.
const LONGEST_LINE: u64 = 16 << 20;

pub struct RunTail {
    events_dir: PathBuf,
    offsets: BTreeMap<String, u64>,
    max_read: u64,
}

impl RunTail {
    /// A reader at the position `token` names (`None` or empty: from the start).
    pub fn new(run_dir: &Path, token: Option<&str>) -> RunTail {
        let mut offsets = BTreeMap::new();
        for part in token.unwrap_or("").split(';').filter(|p| !p.is_empty()) {
            if let Some((stage, off)) = part.split_once('=') {
                if !is_stage_name(stage) {
                    continue;
                }
                if let Ok(off) = off.parse() {
                    offsets.insert(stage.to_string(), off);
                }
            }
        }
        RunTail {
            events_dir: run_dir.join("events"),
            offsets,
            max_read: MAX_READ,
        }
    }

    /// Reads up to `bytes` per file and poll (a reader with one consumer, such as the native
    /// dashboard, can take larger slices than a server with many).
    pub fn with_max_read(mut self, bytes: u64) -> RunTail {
        self.max_read = bytes.max(1);
        self
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
        files.retain(|p| {
            p.extension().is_some_and(|e| e == "jsonl")
                && p.file_stem()
                    .and_then(|s| s.to_str())
                    .is_some_and(is_stage_name)
        });
        files.sort();
        let mut out = Vec::new();
        for path in files {
            let stage = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let start = self.offsets.get(&stage).copied().unwrap_or(0);
            // A line longer than the slice is read whole with larger reads.
            let mut limit = self.max_read;
            let chunk = loop {
                let Ok(chunk) = read_from(&path, start, limit) else {
                    break None;
                };
                if chunk.contains(&b'\n') || (chunk.len() as u64) < limit || limit >= LONGEST_LINE {
                    break Some(chunk);
                }
                limit = (limit * 4).min(LONGEST_LINE);
            };
            let Some(chunk) = chunk else {
                continue;
            };
            // only whole lines: the engine may be in the middle of writing one
            let Some(end) = chunk.iter().rposition(|&b| b == b'\n') else {
                if chunk.len() as u64 >= LONGEST_LINE {
                    // no event is this long: step over it rather than wait on it forever
                    self.offsets.insert(stage, start + chunk.len() as u64);
                }
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

/// Stage names are slugs (`meta`, `incubate-2`); anything else in a token (which clients send
/// back and which goes out again as an SSE id, where a line break is not allowed) or in a
/// file name is not ours.
fn is_stage_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn read_from(path: &Path, start: u64, max_read: u64) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    if len <= start {
        return Ok(Vec::new());
    }
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    f.take((len - start).min(max_read)).read_to_end(&mut buf)?;
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

    #[test]
    fn a_token_from_a_client_cannot_put_a_line_break_into_an_id() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("events")).unwrap();
        std::fs::write(dir.path().join("events/meta.jsonl"), "{}\n").unwrap();
        // the fuzzer's input: `?from=metroma%0Dfrom=89` (a carriage return in a stage name)
        let mut tail = RunTail::new(dir.path(), Some("metroma\rfrom=89;meta=0"));
        let got = tail.poll();
        assert_eq!(got, vec![("meta=3".to_string(), "{}".to_string())]);
        assert!(!tail.token().contains('\r'));
    }

    #[test]
    fn a_line_longer_than_the_slice_is_still_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("events")).unwrap();
        let long = format!("{{\"error\":\"{}\"}}", "x".repeat(1000));
        std::fs::write(
            dir.path().join("events/meta.jsonl"),
            format!("{long}\n{{}}\n"),
        )
        .unwrap();
        let mut tail = RunTail::new(dir.path(), None).with_max_read(100);
        let mut got = tail.poll();
        got.extend(tail.poll());
        let lines: Vec<&str> = got.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(lines, vec![long.as_str(), "{}"]);
    }
}

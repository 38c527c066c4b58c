//! The JSONL event files: `RUN/events/<slug>.jsonl`, one [`Record`] per line.

use anyhow::{bail, Context};
use incubator_events::Record;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Appends records to one stage's file.
///
/// The file is unbuffered on purpose: each line goes to the OS in one write as soon as it is
/// emitted, because the stages are separate processes and a dashboard tails these files live.
pub struct JsonlWriter {
    path: PathBuf,
    file: File,
}

impl JsonlWriter {
    pub fn open(path: &Path) -> anyhow::Result<JsonlWriter> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        drop_torn_tail(&mut file).with_context(|| format!("repairing {}", path.display()))?;
        Ok(JsonlWriter {
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write(&mut self, record: &Record) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(record)?;
        line.push(b'\n');
        // One write of the whole line, so a reader never sees half of one unless the process dies.
        self.file
            .write_all(&line)
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

/// A process killed mid-write leaves a last line without its newline. A resumed stage appends to
/// the same file, which would glue its first record onto that fragment and turn it into a
/// malformed line in the middle; cut the fragment off instead.
fn drop_torn_tail(file: &mut File) -> std::io::Result<()> {
    let meta = file.metadata()?;
    if !meta.is_file() || meta.len() == 0 {
        return Ok(());
    }
    let mut last = [0u8];
    file.seek(SeekFrom::End(-1))?;
    file.read_exact(&mut last)?;
    if last[0] == b'\n' {
        return Ok(());
    }
    // Rare (only after a crash), so reading the whole file is fine.
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_end(&mut bytes)?;
    let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    file.set_len(keep as u64)
}

/// All records of all `RUN/events/*.jsonl` files, in time order (ties keep file and line order).
pub fn read_events(run_dir: &Path) -> anyhow::Result<Vec<Record>> {
    if !run_dir.is_dir() {
        bail!("run directory {} does not exist", run_dir.display());
    }
    let dir = run_dir.join("events");
    if !dir.exists() {
        return Ok(Vec::new()); // No stage has started yet.
    }
    let mut paths = Vec::new();
    for entry in fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "jsonl") {
            paths.push(path);
        }
    }
    paths.sort();
    let mut records = Vec::new();
    for path in &paths {
        let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        parse_lines(path, &bytes, &mut records)?;
    }
    records.sort_by(|a, b| a.time.total_cmp(&b.time));
    Ok(records)
}

/// The records of one event file's contents; a torn last line (a writer killed mid-line) is
/// skipped, any other malformed line is an error naming the file and line.
pub fn parse_lines(path: &Path, bytes: &[u8], out: &mut Vec<Record>) -> anyhow::Result<()> {
    let complete = bytes.last().is_none_or(|&b| b == b'\n');
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if body.is_empty() {
        return Ok(());
    }
    let lines: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_slice::<Record>(line) {
            Ok(record) => out.push(record),
            // A writer killed mid-line, or one still writing it while we read: not an error.
            Err(_) if !complete && i + 1 == lines.len() => {}
            Err(e) => bail!("{}:{}: malformed event: {e}", path.display(), i + 1),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use incubator_events::{Event, StageId};

    fn eval(stage: StageId, time: f64, step: u64) -> Record {
        Record::new(
            stage,
            time,
            Event::Eval {
                step,
                epoch: 1,
                split: Default::default(),
                top1: 0.5,
                top5: 0.75,
                loss: 1.25,
            },
        )
    }

    fn events_dir(run: &Path) -> PathBuf {
        let dir = run.join("events");
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn line(r: &Record) -> String {
        serde_json::to_string(r).unwrap() + "\n"
    }

    #[test]
    fn round_trip_across_two_stage_files_in_time_order() {
        let run = tempfile::tempdir().unwrap();
        let dir = events_dir(run.path());
        let meta = [eval(StageId::META, 1.0, 1), eval(StageId::META, 3.0, 2)];
        let inc = [
            eval(StageId::incubate(0), 2.0, 1),
            eval(StageId::incubate(0), 4.0, 2),
        ];
        for (name, records) in [("meta.jsonl", &meta), ("incubate-0.jsonl", &inc)] {
            let mut w = JsonlWriter::open(&dir.join(name)).unwrap();
            records.iter().for_each(|r| w.write(r).unwrap());
        }
        fs::write(dir.join("notes.txt"), "not an event file").unwrap();
        let got = read_events(run.path()).unwrap();
        assert_eq!(
            got,
            vec![
                meta[0].clone(),
                inc[0].clone(),
                meta[1].clone(),
                inc[1].clone()
            ]
        );
    }

    #[test]
    fn malformed_middle_line_names_file_and_line() {
        let run = tempfile::tempdir().unwrap();
        let path = events_dir(run.path()).join("meta.jsonl");
        let good = line(&eval(StageId::META, 1.0, 1));
        fs::write(&path, format!("{good}{{\"v\":1,\"time\":oops}}\n{good}")).unwrap();
        let err = format!("{:#}", read_events(run.path()).unwrap_err());
        assert!(
            err.contains(&format!("{}:2: malformed event", path.display())),
            "{err}"
        );
    }

    #[test]
    fn truncated_last_line_is_skipped() {
        let run = tempfile::tempdir().unwrap();
        let path = events_dir(run.path()).join("meta.jsonl");
        let (a, b) = (eval(StageId::META, 1.0, 1), eval(StageId::META, 2.0, 2));
        let torn = &line(&b)[..20];
        fs::write(&path, format!("{}{torn}", line(&a))).unwrap();
        assert_eq!(read_events(run.path()).unwrap(), vec![a.clone()]);

        // A resumed stage appends after the fragment has been cut off.
        JsonlWriter::open(&path).unwrap().write(&b).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), line(&a) + &line(&b));
        assert_eq!(read_events(run.path()).unwrap(), vec![a, b]);
    }

    #[test]
    fn diverged_loss_reads_back_as_nan() {
        let run = tempfile::tempdir().unwrap();
        let path = events_dir(run.path()).join("meta.jsonl");
        let mut w = JsonlWriter::open(&path).unwrap();
        w.write(&Record::new(
            StageId::META,
            1.0,
            Event::Eval {
                step: 1,
                epoch: 1,
                split: Default::default(),
                top1: 0.0,
                top5: 0.0,
                loss: f64::NAN,
            },
        ))
        .unwrap();
        match &read_events(run.path()).unwrap()[..] {
            [Record {
                event: Event::Eval { loss, .. },
                ..
            }] => assert!(loss.is_nan()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn missing_events_dir_is_empty_but_missing_run_dir_is_an_error() {
        let run = tempfile::tempdir().unwrap();
        assert!(read_events(run.path()).unwrap().is_empty());
        assert!(read_events(&run.path().join("nope")).is_err());
    }
}

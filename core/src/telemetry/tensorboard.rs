//! TensorBoard files through tensorboard-rs, one log directory per stage:
//! `RUN/tensorboard/<slug>/`, so TensorBoard lists each stage (and module) as a run of its own.
//! Tags are the same in every stage (`train/loss`, `val/top1`, `final/test_top1`; each
//! evaluation's tag group is its split: `val/` per epoch and `test/` once at the end when the
//! run holds out a validation split, `test/` per epoch when it does not), so one chart
//! overlays the assembled model, the E2E baseline and the modules. Each stage is also an HParams
//! session: the run's configuration (every scalar of `config.toml`, and the stage) as its
//! hyperparameters, its scalars as metrics; a sweep directory opened as one logdir lists every
//! stage of every run in the HParams table.
//!
//! tensorboard-rs panics instead of returning errors (`expect` on every I/O step, and
//! `unimplemented!()` in about a dozen methods, `add_hparams` among them), so every call into it
//! goes through [`catch_unwind`], and HParams summaries are built from its protobuf types.

use anyhow::Context;
use incubator_compare::Setting;
use incubator_events::{Event, Record};
use protobuf::well_known_types::Value;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use tensorboard_proto::plugin_hparams::{HParamsPluginData, SessionEndInfo, SessionStartInfo};
use tensorboard_proto::summary::{
    Summary, SummaryMetadata, SummaryMetadata_PluginData, Summary_Value,
};
use tensorboard_rs::summary::scalar;
use tensorboard_rs::summary_writer::FileWriter;

pub struct TensorBoardWriter {
    writer: Option<FileWriter>,
    /// The session's hyperparameters, written once this process starts training.
    hparams: BTreeMap<String, Setting>,
    session_started: bool,
}

impl TensorBoardWriter {
    pub fn open(
        logdir: &Path,
        hparams: BTreeMap<String, Setting>,
    ) -> anyhow::Result<TensorBoardWriter> {
        fs_err::create_dir_all(logdir)?;
        // If its writer thread dies inside `FileWriter::new`, the half-built writer panics
        // again while unwinding, which aborts the process: so fail here on an unwritable directory.
        let probe = logdir.join(".write-probe");
        std::fs::File::create(&probe)
            .and_then(|_| std::fs::remove_file(&probe))
            .with_context(|| format!("{} is not writable", logdir.display()))?;
        let writer = guarded(|| FileWriter::new(logdir))?;
        Ok(TensorBoardWriter {
            writer: Some(writer),
            hparams,
            session_started: false,
        })
    }

    pub fn write(&mut self, record: &Record) -> anyhow::Result<()> {
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        let mut summaries: Vec<(Summary, u64)> = scalars(&record.event)
            .into_iter()
            .map(|(tag, value, step)| (scalar(&tag, value as f32), step))
            .collect();
        match &record.event {
            Event::StageStarted { .. } if !self.session_started => {
                let mut hp = self.hparams.clone();
                hp.insert("stage".into(), Setting::Text(record.stage.slug()));
                hp.insert(
                    "stage_kind".into(),
                    Setting::Text(record.stage.stage.as_str().into()),
                );
                summaries.push((session_start(&hp, record.time), 0));
                self.session_started = true;
            }
            Event::StageFinished { .. } => summaries.push((session_end(1, record.time), 0)),
            Event::StageFailed { .. } => summaries.push((session_end(3, record.time), 0)),
            _ => {}
        }
        let result = guarded(|| {
            for (summary, step) in summaries {
                writer.add_summary(summary, step as usize);
            }
        });
        self.forget_if_failed(result)
    }

    pub fn flush(&mut self) -> anyhow::Result<()> {
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        let result = guarded(|| writer.flush());
        self.forget_if_failed(result)
    }

    /// After a panic the writer's background thread is usually dead, and dropping the writer would
    /// panic again (its `Drop` unwraps a send to that thread), so it is leaked instead.
    fn forget_if_failed(&mut self, result: anyhow::Result<()>) -> anyhow::Result<()> {
        if result.is_err() {
            std::mem::forget(self.writer.take());
        }
        result
    }
}

impl Drop for TensorBoardWriter {
    fn drop(&mut self) {
        // Dropping stops the background thread and waits for it to write everything queued.
        if let Some(writer) = self.writer.take() {
            let _ = guarded(move || drop(writer));
        }
    }
}

fn guarded<T>(f: impl FnOnce() -> T) -> anyhow::Result<T> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        // Its `expect("")` calls make messages like ": SendError { .. }".
        anyhow::anyhow!("tensorboard-rs panicked: {}", msg.trim_start_matches(": "))
    })
}

/// A summary the HParams plugin reads: its data in the metadata's plugin content, under one of
/// the plugin's tags (as TensorBoard's own `hparams.summary` writes them).
fn hparams_summary(tag: &str, mut data: HParamsPluginData) -> Summary {
    data.set_version(0);
    let mut plugin = SummaryMetadata_PluginData::new();
    plugin.set_plugin_name("hparams".into());
    plugin.set_content(protobuf::Message::write_to_bytes(&data).unwrap_or_default());
    let mut meta = SummaryMetadata::new();
    meta.set_plugin_data(plugin);
    let mut value = Summary_Value::new();
    value.set_tag(tag.into());
    value.set_metadata(meta);
    let mut summary = Summary::new();
    summary.set_value(protobuf::RepeatedField::from(vec![value]));
    summary
}

fn session_start(hparams: &BTreeMap<String, Setting>, time: f64) -> Summary {
    let mut info = SessionStartInfo::new();
    for (k, v) in hparams {
        let mut value = Value::new();
        match v {
            Setting::Number(n) => value.set_number_value(*n),
            Setting::Text(t) | Setting::Other(t) => value.set_string_value(t.clone()),
            Setting::Bool(b) => value.set_bool_value(*b),
        }
        info.mut_hparams().insert(k.clone(), value);
    }
    info.set_start_time_secs(time);
    let mut data = HParamsPluginData::new();
    data.set_session_start_info(info);
    hparams_summary("_hparams_/session_start_info", data)
}

/// `status`: 1 success, 3 failure (tensorboard.hparams.Status).
fn session_end(status: i32, time: f64) -> Summary {
    let mut info = SessionEndInfo::new();
    info.set_status(
        <tensorboard_proto::api::Status as protobuf::ProtobufEnum>::from_i32(status)
            .unwrap_or(tensorboard_proto::api::Status::STATUS_UNKNOWN),
    );
    info.set_end_time_secs(time);
    let mut data = HParamsPluginData::new();
    data.set_session_end_info(info);
    hparams_summary("_hparams_/session_end_info", data)
}

/// The scalars an event becomes: (tag, value, step). The same tags in every stage.
fn scalars(event: &Event) -> Vec<(String, f64, u64)> {
    let fixed = |v: Vec<(&str, f64, u64)>| {
        v.into_iter()
            .map(|(tag, value, step)| (tag.to_string(), value, step))
            .collect()
    };
    match event {
        &Event::TrainStep {
            step,
            loss,
            lr,
            grad_norm,
            samples_per_sec,
            ref terms,
            ..
        } => {
            let mut out: Vec<(String, f64, u64)> = fixed(vec![
                ("train/loss", loss, step),
                ("train/lr", lr, step),
                ("train/grad_norm", grad_norm, step),
                ("train/samples_per_sec", samples_per_sec, step),
            ]);
            out.extend(
                terms
                    .iter()
                    .map(|(name, &v)| (format!("train/loss_terms/{name}"), v, step)),
            );
            out
        }
        // the split is the tag's group: `val/top1` per epoch is never mistaken for the test's
        &Event::Eval {
            step,
            split,
            top1,
            top5,
            loss,
            ..
        } => vec![
            (format!("{split}/top1"), top1, step),
            (format!("{split}/top5"), top5, step),
            (format!("{split}/loss"), loss, step),
        ],
        &Event::StageFinished {
            wall_s,
            train_gflop,
            top1,
            top5,
            best_top1,
            best_split,
            val_top1,
            ..
        } => {
            let mut out: Vec<(String, f64, u64)> = fixed(vec![
                ("final/test_top1", top1, 0),
                ("final/test_top5", top5, 0),
                ("final/wall_s", wall_s, 0),
                ("final/train_gflop", train_gflop, 0),
            ]);
            out.push((format!("final/best_{best_split}_top1"), best_top1, 0));
            if !val_top1.is_nan() {
                out.push(("final/val_top1".into(), val_top1, 0));
            }
            out
        }
        // These are text, and tensorboard-rs cannot write text.
        Event::StageStarted { .. }
        | Event::StageSkipped { .. }
        | Event::StageFailed { .. }
        | Event::StageInterrupted { .. } => {
            vec![]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::EventLog;
    use incubator_events::{EvalSplit, StageId};
    use serde_json::{json, Value};
    use std::path::PathBuf;
    use std::process::Command;

    #[test]
    fn panics_become_errors() {
        let err = guarded(|| -> () { unimplemented!("add_text") }).unwrap_err();
        assert!(err.to_string().contains("add_text"), "{err}");
    }

    #[test]
    #[ignore = "needs INCUBATOR_TB_PYTHON: a python with the tensorboard package"]
    fn tensorboard_files_read_back_by_real_reader() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let Some(python) = std::env::var_os("INCUBATOR_TB_PYTHON") else {
            panic!(
                "INCUBATOR_TB_PYTHON is not set. This test reads the TensorBoard files back with \
                 TensorBoard's own Python loader. From the repository root:\n  \
                 python3 -m venv .venv-tb && .venv-tb/bin/pip install tensorboard\n  \
                 INCUBATOR_TB_PYTHON=.venv-tb/bin/python cargo test -p incubator-core --lib \
                 telemetry -- --include-ignored"
            )
        };
        // A relative path means the repository root, where the setup above puts the venv.
        let python = repo.join(PathBuf::from(python));

        let run = tempfile::tempdir().unwrap();
        std::fs::write(
            run.path().join("config.toml"),
            "seed = 3\n[optim]\nbase_lr = 0.001\nschedule = \"deit\"\n[e2e]\nenabled = true\n",
        )
        .unwrap();
        let mut meta = EventLog::open(run.path(), StageId::META).unwrap();
        meta.emit(Event::StageStarted {
            host: "h".into(),
            pid: 1,
            epochs: 1,
            steps_per_epoch: 3,
            resumed_epochs: 0,
            params_total: 1,
            params_trainable: 1,
            depends_on: vec![],
            needs: None,
            held_s: None,
            queued_s: None,
        });
        let mut inc = EventLog::open(run.path(), StageId::incubate(2)).unwrap();
        for step in 1..=3u64 {
            let s = step as f64;
            meta.emit(Event::TrainStep {
                step,
                epoch: s / 3.0,
                loss: 4.0 - s,
                lr: 3e-4,
                grad_norm: 0.5 * s,
                samples_per_sec: 100.0 + s,
                terms: Default::default(),
            });
        }
        meta.emit(Event::Eval {
            step: 3,
            epoch: 1,
            split: EvalSplit::Val,
            top1: 0.375,
            top5: 0.625,
            loss: 2.25,
        });
        meta.emit(Event::Eval {
            step: 3,
            epoch: 1,
            split: EvalSplit::Test,
            top1: 0.25,
            top5: 0.5,
            loss: 2.5,
        });
        meta.emit(Event::StageFinished {
            wall_s: 12.5,
            train_gflop: 1024.0,
            top1: 0.25,
            top5: 0.5,
            best_top1: 0.375,
            best_epoch: 1,
            best_split: EvalSplit::Val,
            val_top1: 0.375,
            epochs: 1,
            teachers: Vec::new(),
        });
        // a run without a validation split: every epoch on the test split
        inc.emit(Event::Eval {
            step: 7,
            epoch: 1,
            split: EvalSplit::Test,
            top1: 0.75,
            top5: 1.0,
            loss: 0.125,
        });
        inc.emit(Event::StageFailed {
            error: "nothing for TensorBoard".into(),
        });
        drop((meta, inc)); // Joins the writers' threads: everything is on disk.

        let out = Command::new(&python)
            .arg(repo.join("tests/tensorboard_reader.py"))
            .arg(run.path())
            .current_dir(&repo)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
        assert!(
            out.status.success(),
            "reader failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: Value = serde_json::from_slice(&out.stdout).unwrap();

        let lr = 3e-4f32 as f64; // Event files hold f32.
                                 // the same tags in every stage: a chart overlays them, the stage is the run
        let expected = json!({
            "meta": {
                "scalars": {
                    "train/loss": [[1, 3.0], [2, 2.0], [3, 1.0]],
                    "train/lr": [[1, lr], [2, lr], [3, lr]],
                    "train/grad_norm": [[1, 0.5], [2, 1.0], [3, 1.5]],
                    "train/samples_per_sec": [[1, 101.0], [2, 102.0], [3, 103.0]],
                    "val/top1": [[3, 0.375]],
                    "val/top5": [[3, 0.625]],
                    "val/loss": [[3, 2.25]],
                    "test/top1": [[3, 0.25]],
                    "test/top5": [[3, 0.5]],
                    "test/loss": [[3, 2.5]],
                    "final/test_top1": [[0, 0.25]],
                    "final/test_top5": [[0, 0.5]],
                    "final/best_val_top1": [[0, 0.375]],
                    "final/val_top1": [[0, 0.375]],
                    "final/wall_s": [[0, 12.5]],
                    "final/train_gflop": [[0, 1024.0]],
                },
                "hparams": {
                    "seed": 3.0, "optim.base_lr": 0.001, "optim.schedule": "deit",
                    "e2e.enabled": true, "stage": "meta", "stage_kind": "meta",
                },
                "status": 1,
            },
            "incubate-2": {
                "scalars": {
                    "test/top1": [[7, 0.75]],
                    "test/top5": [[7, 1.0]],
                    "test/loss": [[7, 0.125]],
                },
                "status": 3,
            },
        });
        assert_eq!(got, expected);

        // TensorBoard's server, as a user opens it: the stages as runs with the same tags, and
        // the meta stage as an HParams session with the configuration and its final top-1
        let out = Command::new(&python)
            .arg(repo.join("tests/tensorboard_reader.py"))
            .arg("--http")
            .arg(run.path().join("tensorboard"))
            .current_dir(&repo)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
        assert!(
            out.status.success(),
            "TensorBoard's server: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let http: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(http["runs"], json!(["incubate-2", "meta"]), "{http}");
        assert!(http["tags"]["incubate-2"]
            .as_array()
            .unwrap()
            .contains(&json!("test/top1")));
        assert!(http["tags"]["meta"]
            .as_array()
            .unwrap()
            .contains(&json!("val/top1")));
        assert!(
            http["hparam_names"]
                .as_array()
                .unwrap()
                .contains(&json!("optim.base_lr")),
            "{http}"
        );
        let session = &http["sessions"][0];
        assert_eq!(session["name"], "meta", "{http}");
        assert_eq!(session["hparams"]["optim.base_lr"], 0.001);
        assert_eq!(session["metrics"][":final/test_top1"], 0.25, "{http}");
    }
}

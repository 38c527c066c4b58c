//! The event format of an incubator run.
//!
//! One record per line in `RUN/events/<stage>.jsonl`. The same records feed the TensorBoard
//! writer and the live dashboard, so this crate is the single source of truth for what a run
//! reports. It depends only on serde, so it compiles for native targets and for wasm32.
//!
//! Compatibility rules: readers ignore fields they do not know (no `deny_unknown_fields`), new
//! optional fields get `#[serde(default)]`, and a change that old readers would misread bumps
//! [`SCHEMA_VERSION`].

pub mod access;
pub mod plan;
pub mod sweep;
pub mod tail;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Version written into every record's `v` field.
pub const SCHEMA_VERSION: u32 = 1;

/// The kind of a pipeline stage.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum StageKind {
    /// Phase PT: the shallow meta model trained end to end.
    Meta,
    /// Phase MT: one target module trained inside the frozen meta model.
    Incubate,
    /// Phase FT: modules stacked into the target, then fine-tuned.
    Assemble,
    /// The end-to-end baseline with the same recipe.
    E2e,
}

impl StageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StageKind::Meta => "meta",
            StageKind::Incubate => "incubate",
            StageKind::Assemble => "assemble",
            StageKind::E2e => "e2e",
        }
    }
}

/// Which stage (and for incubation, which module) a record belongs to.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StageId {
    pub stage: StageKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<usize>,
}

impl StageId {
    pub const META: StageId = StageId {
        stage: StageKind::Meta,
        module: None,
    };
    pub const ASSEMBLE: StageId = StageId {
        stage: StageKind::Assemble,
        module: None,
    };
    pub const E2E: StageId = StageId {
        stage: StageKind::E2e,
        module: None,
    };

    pub fn incubate(module: usize) -> StageId {
        StageId {
            stage: StageKind::Incubate,
            module: Some(module),
        }
    }

    /// File-system and TensorBoard name: `meta`, `incubate-2`, `assemble`, `e2e`.
    pub fn slug(&self) -> String {
        match self.module {
            Some(m) => format!("{}-{m}", self.stage.as_str()),
            None => self.stage.as_str().to_string(),
        }
    }

    /// Inverse of [`StageId::slug`].
    pub fn from_slug(slug: &str) -> Option<StageId> {
        let (kind, module) = match slug.split_once('-') {
            Some((k, m)) => (k, Some(m.parse().ok()?)),
            None => (slug, None),
        };
        let stage = match kind {
            "meta" => StageKind::Meta,
            "incubate" => StageKind::Incubate,
            "assemble" => StageKind::Assemble,
            "e2e" => StageKind::E2e,
            _ => return None,
        };
        (module.is_some() == (stage == StageKind::Incubate)).then_some(StageId { stage, module })
    }
}

impl fmt::Display for StageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.slug())
    }
}

/// Which images a number was measured on. `Val` is the hold-out carved from the training
/// images (`data.val_fraction` / `data.val_per_class`): per-epoch evaluation and the best
/// epoch use it when a run has one, and the test split is then evaluated once, at the end of
/// each stage.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum EvalSplit {
    Train,
    Val,
    /// Logs written before splits were recorded evaluated the test split.
    #[default]
    Test,
}

impl EvalSplit {
    pub fn as_str(self) -> &'static str {
        match self {
            EvalSplit::Train => "train",
            EvalSplit::Val => "val",
            EvalSplit::Test => "test",
        }
    }
}

impl fmt::Display for EvalSplit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What training a teacher cost (a model a strategy distils from, e.g. m2mKD's E2E model):
/// part of the method's cost when it was trained for it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TeacherCost {
    /// As the strategy names it (`"e2e"`, `"../other-run:assemble"`).
    pub spec: String,
    /// Its training compute in GFLOP and wall time; `None` when it was trained elsewhere
    /// (imported, or made of imported weights whose training is not known here).
    #[serde(default)]
    pub gflop: Option<f64>,
    #[serde(default)]
    pub wall_s: Option<f64>,
}

/// One line of the event stream.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Record {
    /// Schema version ([`SCHEMA_VERSION`] when written).
    pub v: u32,
    /// Wall-clock time, seconds since the Unix epoch.
    pub time: f64,
    #[serde(flatten)]
    pub stage: StageId,
    #[serde(flatten)]
    pub event: Event,
}

impl Record {
    pub fn new(stage: StageId, time: f64, event: Event) -> Record {
        Record {
            v: SCHEMA_VERSION,
            time,
            stage,
            event,
        }
    }
}

/// What happened. Tagged by the `event` field.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A stage process began (or resumed) training.
    StageStarted {
        /// Host name and process id: where the stage runs (stages may run on different machines).
        host: String,
        pid: u32,
        epochs: usize,
        steps_per_epoch: usize,
        /// Epochs already done when this process resumed from a checkpoint.
        #[serde(default)]
        resumed_epochs: usize,
        params_total: usize,
        params_trainable: usize,
        /// The modules an incubation waited for (its strategy's `depends_on`; empty for the
        /// reference strategy and for other stages).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        depends_on: Vec<usize>,
        /// The stages this one waited for, by the run's [`plan::StagePlan`]. `None` in logs
        /// written before plans were recorded.
        #[serde(default, skip_serializing_if = "Option::is_none", with = "slugs")]
        needs: Option<Vec<StageId>>,
        /// For a Slurm job: seconds from submission until its dependencies were met (held),
        /// and from then until it started (queued). Absent outside Slurm.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        held_s: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        queued_s: Option<f64>,
    },
    /// One optimizer step (after gradient accumulation).
    TrainStep {
        step: u64,
        /// Fractional epoch at the end of this step.
        #[serde(deserialize_with = "f64_or_nan")]
        epoch: f64,
        #[serde(deserialize_with = "f64_or_nan")]
        loss: f64,
        #[serde(deserialize_with = "f64_or_nan")]
        lr: f64,
        /// Global gradient norm before clipping.
        #[serde(deserialize_with = "f64_or_nan")]
        grad_norm: f64,
        #[serde(deserialize_with = "f64_or_nan")]
        samples_per_sec: f64,
        /// The loss's named terms (unweighted), when it has more than one: a plugin's
        /// auxiliary losses (`aux_ce`, `kd`, `recon`), each a curve of its own.
        #[serde(
            default,
            skip_serializing_if = "BTreeMap::is_empty",
            deserialize_with = "map_f64_or_nan"
        )]
        terms: BTreeMap<String, f64>,
    },
    /// An evaluation: on the validation split after each epoch when the run has one, else on
    /// the test split after each epoch; with a validation split, the test split once at the
    /// end of the stage (`epoch` = the stage's epochs).
    Eval {
        step: u64,
        epoch: usize,
        #[serde(default)]
        split: EvalSplit,
        #[serde(deserialize_with = "f64_or_nan")]
        top1: f64,
        /// Top-5 accuracy (NaN in logs written before it was recorded).
        #[serde(default = "nan", deserialize_with = "f64_or_nan")]
        top5: f64,
        #[serde(deserialize_with = "f64_or_nan")]
        loss: f64,
    },
    /// A stage finished; its result is final.
    StageFinished {
        #[serde(deserialize_with = "f64_or_nan")]
        wall_s: f64,
        /// Training compute in GFLOP (analytic count of forward and backward passes).
        #[serde(deserialize_with = "f64_or_nan")]
        train_gflop: f64,
        /// Top-1 of the final model on the test split: the stage's result.
        #[serde(deserialize_with = "f64_or_nan")]
        top1: f64,
        #[serde(default = "nan", deserialize_with = "f64_or_nan")]
        top5: f64,
        /// The best top-1 of any epoch's evaluation on `best_split`, and that epoch (1-based;
        /// 0: none).
        #[serde(default = "nan", deserialize_with = "f64_or_nan")]
        best_top1: f64,
        #[serde(default)]
        best_epoch: usize,
        /// The split of the per-epoch evaluations (and so of `best_top1`).
        #[serde(default)]
        best_split: EvalSplit,
        /// The final model's top-1 on the validation split (NaN without one).
        #[serde(default = "nan", deserialize_with = "f64_or_nan")]
        val_top1: f64,
        epochs: usize,
        /// The teachers an incubation distilled from, with what they cost.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        teachers: Vec<TeacherCost>,
    },
    /// A stage found its result already on disk and did nothing.
    StageSkipped { reason: String },
    /// A stage stopped with an error; the run directory keeps its last checkpoint.
    StageFailed { error: String },
    /// A stage stopped on a signal (SIGTERM, SIGINT, Slurm's time-limit SIGUSR1) after saving
    /// its state; running it again resumes where it stopped.
    StageInterrupted { signal: String, message: String },
}

/// JSON has no NaN or infinity and serde_json writes them as `null`; reading `null` back as NaN
/// keeps a diverged loss (or an infinite rate) from making the whole stream unreadable.
/// Stage ids as their slugs (`["meta", "incubate-0"]`), as a person reads them in the log.
mod slugs {
    use super::StageId;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ids: &Option<Vec<StageId>>, s: S) -> Result<S::Ok, S::Error> {
        match ids {
            Some(ids) => s.collect_seq(ids.iter().map(StageId::slug)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<StageId>>, D::Error> {
        let Some(slugs) = Option::<Vec<String>>::deserialize(d)? else {
            return Ok(None);
        };
        slugs
            .iter()
            .map(|s| {
                StageId::from_slug(s)
                    .ok_or_else(|| D::Error::custom(format!("{s:?} is not a stage")))
            })
            .collect::<Result<_, _>>()
            .map(Some)
    }
}

fn nan() -> f64 {
    f64::NAN
}

fn f64_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

fn map_f64_or_nan<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, f64>, D::Error> {
    let raw = BTreeMap::<String, Option<f64>>::deserialize(d)?;
    Ok(raw
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or(f64::NAN)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_round_trip() {
        for id in [
            StageId::META,
            StageId::incubate(11),
            StageId::ASSEMBLE,
            StageId::E2E,
        ] {
            assert_eq!(StageId::from_slug(&id.slug()), Some(id));
        }
        assert_eq!(StageId::from_slug("incubate"), None);
        assert_eq!(StageId::from_slug("meta-1"), None);
        assert_eq!(StageId::from_slug("bogus"), None);
    }

    #[test]
    fn record_json_shape_is_flat() {
        let r = Record::new(
            StageId::incubate(2),
            1.5,
            Event::Eval {
                step: 10,
                epoch: 1,
                split: EvalSplit::Val,
                top1: 0.5,
                top5: 0.75,
                loss: 1.25,
            },
        );
        let line = serde_json::to_string(&r).unwrap();
        assert_eq!(
            line,
            r#"{"v":1,"time":1.5,"stage":"incubate","module":2,"event":"eval","step":10,"epoch":1,"split":"val","top1":0.5,"top5":0.75,"loss":1.25}"#
        );
        assert_eq!(serde_json::from_str::<Record>(&line).unwrap(), r);
    }

    #[test]
    fn logs_without_top5_or_best_epoch_still_read() {
        let eval = r#"{"v":1,"time":1.5,"stage":"meta","event":"eval","step":10,"epoch":1,"top1":0.5,"loss":1.25}"#;
        match serde_json::from_str::<Record>(eval).unwrap().event {
            // written before splits were recorded: every evaluation was on the test split
            Event::Eval {
                top1, top5, split, ..
            } => assert!(top1 == 0.5 && top5.is_nan() && split == EvalSplit::Test),
            other => panic!("{other:?}"),
        }
        let done = r#"{"v":1,"time":2.0,"stage":"meta","event":"stage_finished","wall_s":1.0,"train_gflop":2.0,"top1":0.5,"epochs":3}"#;
        match serde_json::from_str::<Record>(done).unwrap().event {
            Event::StageFinished {
                top5,
                best_top1,
                best_epoch,
                best_split,
                val_top1,
                ..
            } => assert!(
                top5.is_nan()
                    && best_top1.is_nan()
                    && best_epoch == 0
                    && best_split == EvalSplit::Test
                    && val_top1.is_nan()
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn non_finite_values_survive_as_nan() {
        let r = Record::new(
            StageId::META,
            1.0,
            Event::Eval {
                step: 1,
                epoch: 1,
                split: EvalSplit::Test,
                top1: f64::INFINITY,
                top5: 1.0,
                loss: f64::NAN,
            },
        );
        let line = serde_json::to_string(&r).unwrap();
        assert!(
            line.contains(r#""top1":null,"top5":1.0,"loss":null"#),
            "{line}"
        );
        match serde_json::from_str::<Record>(&line).unwrap().event {
            Event::Eval { top1, loss, .. } => assert!(top1.is_nan() && loss.is_nan()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_fields_are_tolerated() {
        let line = r#"{"v":1,"time":2.0,"stage":"meta","event":"stage_failed","error":"x","future":[1,2]}"#;
        let r: Record = serde_json::from_str(line).unwrap();
        assert_eq!(r.event, Event::StageFailed { error: "x".into() });
        assert_eq!(r.stage, StageId::META);
    }

    /// One record of every event kind, as the engine writes them.
    pub fn every_kind() -> Vec<Record> {
        let events = vec![
            Event::StageStarted {
                host: "node1".into(),
                pid: 7,
                epochs: 3,
                steps_per_epoch: 10,
                resumed_epochs: 1,
                params_total: 100,
                params_trainable: 40,
                depends_on: vec![0],
                needs: Some(vec![StageId::META, StageId::incubate(0)]),
                held_s: Some(30.0),
                queued_s: Some(2.5),
            },
            Event::TrainStep {
                step: 5,
                epoch: 0.5,
                loss: 2.25,
                lr: 1e-3,
                grad_norm: 0.75,
                samples_per_sec: 512.0,
                terms: BTreeMap::from([("aux_ce".into(), 1.5), ("task".into(), 2.0)]),
            },
            Event::Eval {
                step: 10,
                epoch: 1,
                split: EvalSplit::Val,
                top1: 0.5,
                top5: 0.875,
                loss: 1.5,
            },
            Event::Eval {
                step: 30,
                epoch: 3,
                split: EvalSplit::Test,
                top1: 0.875,
                top5: 1.0,
                loss: 0.5,
            },
            Event::StageFinished {
                wall_s: 12.5,
                train_gflop: 3.25,
                top1: 0.875,
                top5: 1.0,
                best_top1: 0.9,
                best_epoch: 2,
                best_split: EvalSplit::Val,
                val_top1: 0.8,
                epochs: 3,
                teachers: vec![
                    TeacherCost {
                        spec: "e2e".into(),
                        gflop: Some(40.0),
                        wall_s: Some(9.5),
                    },
                    TeacherCost {
                        spec: "../imported:e2e".into(),
                        gflop: None,
                        wall_s: None,
                    },
                ],
            },
            Event::StageSkipped {
                reason: "done".into(),
            },
            Event::StageFailed {
                error: "boom".into(),
            },
        ];
        events
            .into_iter()
            .enumerate()
            .map(|(i, e)| Record::new(StageId::incubate(i), 1000.0 + i as f64, e))
            .collect()
    }

    #[test]
    fn every_event_kind_round_trips_through_a_jsonl_line() {
        for r in every_kind() {
            let line = serde_json::to_string(&r).unwrap();
            assert!(!line.contains('\n'));
            let back: Record = serde_json::from_str(&line).unwrap();
            assert_eq!(back, r, "{line}");
        }
    }

    #[test]
    fn records_of_older_writers_still_read() {
        // version 1 before `resumed_epochs` existed
        let old = r#"{"v":1,"time":5.0,"stage":"e2e","event":"stage_started","host":"h","pid":1,"epochs":2,"steps_per_epoch":3,"params_total":4,"params_trainable":4}"#;
        let r: Record = serde_json::from_str(old).unwrap();
        assert!(matches!(
            r.event,
            Event::StageStarted {
                resumed_epochs: 0,
                epochs: 2,
                ..
            }
        ));
        // an event kind from a newer writer is an error for this record only: readers skip it
        let newer = r#"{"v":2,"time":5.0,"stage":"e2e","event":"checkpoint_saved","path":"x"}"#;
        assert!(serde_json::from_str::<Record>(newer).is_err());
    }
}

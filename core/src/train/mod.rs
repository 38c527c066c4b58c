//! The training recipe (DeiT's, as the reference uses it) and the loop that applies it.

pub mod batch;
pub mod contrastive;
pub mod data_parallel;
pub mod evaluate;
pub mod feed;
pub mod folder_pipelines;
pub mod job;
pub mod loss;
pub mod observe;
pub mod optimizer;
pub mod outcome;
pub mod resume;
pub mod schedule;
pub mod shard;
pub mod state;
pub mod trainer;

pub use evaluate::{evaluate, EvalResult};
pub use trainer::{train, TrainJob, TrainOutcome};

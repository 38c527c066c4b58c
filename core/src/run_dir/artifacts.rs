//! Where each stage's results live in the run directory: one place for every stage, command
//! and teacher that reads or writes them (no stage reaches into another for a path).

use super::RunDir;
use crate::events::StageId;
use std::path::PathBuf;

/// The metadata key of an imported checkpoint that names the file it came from.
pub const IMPORTED_FROM: &str = "imported_from";

impl RunDir {
    /// The final model of a stage that trains one: meta, assemble (after fine-tuning), e2e.
    pub fn model_path(&self, stage: StageId) -> PathBuf {
        self.stage_dir(stage).join("model.safetensors")
    }

    /// Weights the baseline starts from instead of a random initialisation (`incubator import
    /// --as init`: a pretrained model fine-tuned end to end).
    pub fn init_path(&self) -> PathBuf {
        self.stage_dir(StageId::E2E).join("init.safetensors")
    }

    /// Module `i`'s trained unit.
    pub fn module_path(&self, i: usize) -> PathBuf {
        self.stage_dir(StageId::incubate(i))
            .join("module.safetensors")
    }

    /// The extra networks trained with module `i` (auxiliary heads), kept for inspection.
    pub fn extras_path(&self, i: usize) -> PathBuf {
        self.stage_dir(StageId::incubate(i))
            .join("extras.safetensors")
    }

    /// The assembled model before fine-tuning.
    pub fn assembled_path(&self) -> PathBuf {
        self.stage_dir(StageId::ASSEMBLE)
            .join("assembled.safetensors")
    }

    /// The stacked modules' numbers before fine-tuning.
    pub fn stacked_path(&self) -> PathBuf {
        self.stage_dir(StageId::ASSEMBLE).join("stacked.json")
    }
}

//! `incubator slurm submit` and `incubator slurm status`: a whole run as Slurm jobs. The meta
//! model first; the K incubations as a job array after it (`afterok`), or one job per module
//! when the strategy orders them; assembly + fine-tune after all of them; the E2E baseline on
//! its own. Every job runs the same stage command as a local run, on a run directory every
//! node sees (a shared filesystem); finished stages are not submitted again.

pub mod requeue;
pub mod script;
pub mod status;

use crate::commands::stage::StageArgs;
use incubator_core::config::RunConfig;
use incubator_core::events::{StageId, StageKind};
use incubator_core::stages::OpenRun;
use script::Job;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What was submitted, kept in `RUN/slurm/jobs.json` for `status`.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, Default)]
pub struct Submitted {
    /// Job name (`meta`, `incubate`, `incubate-2`, `assemble`, `e2e`) -> Slurm job id.
    pub jobs: BTreeMap<String, String>,
    /// Array jobs: name -> module indices.
    pub arrays: BTreeMap<String, Vec<usize>>,
    /// Jobs whose stages train as several processes: name -> processes (ranks).
    #[serde(default)]
    pub tasks: BTreeMap<String, u32>,
}

pub fn jobs_path(run: &Path) -> PathBuf {
    run.join("slurm").join("jobs.json")
}

pub fn read_submitted(run: &Path) -> Submitted {
    std::fs::read(jobs_path(run))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// The jobs a run still needs, with their scripts.
pub fn plan(engine: &OpenRun, binary: &Path) -> anyhow::Result<Vec<Job>> {
    // The Slurm resources were checked with the rest of the config when the run opened.
    let s = &engine.cfg.slurm;
    let run_dir = std::fs::canonicalize(&engine.run.root)?;
    let run_name = run_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".into());
    let done = |id: StageId| engine.run.summary(id).map(|s| s.is_some());
    let slurm_dir = run_dir.join("slurm");
    let job = |name: &str,
               res: &incubator_core::config::SlurmResources,
               array: Option<Vec<usize>>,
               args: &str,
               after: Vec<String>| {
        let res = res.over(&s.default);
        Job {
            name: name.to_string(),
            script: script::render(
                &run_name,
                name,
                &run_dir,
                binary,
                &res,
                array.as_deref(),
                args,
            ),
            path: slurm_dir.join(format!("{name}.sbatch")),
            array,
            after,
            tasks: res.tasks(),
        }
    };

    // Stages already finished are not submitted; a job waits for the jobs of this submission
    // that write what it reads, not for those its dependencies already wait for.
    let plan = &engine.plan;
    let mut pending = Vec::new();
    for s in plan.stages() {
        if !done(s.id)? {
            pending.push(s.id);
        }
    }
    // independent modules: one array, SLURM_ARRAY_TASK_ID is the module
    let incubations: Vec<StageId> = pending
        .iter()
        .copied()
        .filter(|p| p.stage == StageKind::Incubate)
        .collect();
    let as_array =
        !incubations.is_empty() && plan.module_dependencies().iter().all(|d| d.is_empty());
    let job_of = |id: StageId| match id.stage {
        StageKind::Incubate if as_array => "incubate".to_string(),
        _ => id.slug(),
    };
    let after = |ids: &[StageId]| -> Vec<String> {
        let mut names: Vec<String> = ids
            .iter()
            .flat_map(|&id| plan.nearest(id, |n| pending.contains(&n) && !ids.contains(&n)))
            .map(job_of)
            .collect();
        names.sort();
        names.dedup();
        names
    };
    let mut jobs = Vec::new();
    for &id in &pending {
        let resources = match id.stage {
            StageKind::Meta => &s.meta,
            StageKind::Incubate => &s.incubate,
            StageKind::Assemble => &s.assemble,
            StageKind::E2e => &s.e2e,
        };
        if id.stage == StageKind::Incubate && as_array {
            if id != incubations[0] {
                continue; // the array's first module stands for all of them
            }
            let modules = incubations.iter().filter_map(|m| m.module).collect();
            let args = "incubate --module \"$SLURM_ARRAY_TASK_ID\"";
            jobs.push(job(
                "incubate",
                resources,
                Some(modules),
                args,
                after(&incubations),
            ));
        } else {
            let args = incubator_core::stages::plan::command(id);
            jobs.push(job(&id.slug(), resources, None, &args, after(&[id])));
        }
    }
    Ok(jobs)
}

/// Refuses jobs of several processes for a binary built without MPI (`with_mpi`).
fn runs_here(jobs: &[Job], with_mpi: bool) -> Result<(), String> {
    match jobs.iter().find(|j| j.tasks > 1) {
        Some(j) if !with_mpi => Err(format!(
            "the {} job trains as {} processes (slurm tasks_per_stage), but this incubator was \
             built without MPI: {}, or set tasks_per_stage = 1",
            j.name,
            j.tasks,
            crate::ranks::BUILD_WITH_MPI
        )),
        _ => Ok(()),
    }
}

fn sbatch(path: &Path, after: &[String]) -> anyhow::Result<String> {
    let mut cmd = Command::new("sbatch");
    cmd.arg("--parsable");
    if !after.is_empty() {
        cmd.arg(format!("--dependency=afterok:{}", after.join(":")));
    }
    let out = cmd.arg(path).output().map_err(|e| {
        anyhow::anyhow!("cannot run sbatch ({e}): is this a Slurm login node with sbatch on PATH?")
    })?;
    if !out.status.success() {
        anyhow::bail!(
            "sbatch {} refused it: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let id = String::from_utf8_lossy(&out.stdout);
    Ok(id.trim().split(';').next().unwrap_or("").to_string())
}

pub fn submit(args: &StageArgs, dry_run: bool) -> anyhow::Result<()> {
    let cfg = (!args.config.is_empty())
        .then(|| RunConfig::load_layers(&args.config))
        .transpose()?;
    submit_run(&args.run_dir, cfg.as_ref(), &args.plugins, dry_run)
}

/// Submits the unfinished stages of the run in `run_dir` (created with `cfg` if new).
pub fn submit_run(
    run_dir: &Path,
    cfg: Option<&RunConfig>,
    plugins: &[PathBuf],
    dry_run: bool,
) -> anyhow::Result<()> {
    if !plugins.is_empty() {
        anyhow::bail!("--plugin is not passed to cluster jobs: list the libraries in the config's plugins.libraries instead");
    }
    // what the run is, not its data: submitting reads no dataset
    let engine = OpenRun::open(
        run_dir,
        cfg,
        incubator_core::run_dir::OpenMode::Start,
        &crate::commands::plugin_sources(plugins),
    )?;
    let binary = match &engine.cfg.slurm.binary {
        Some(b) => b.clone(),
        None => std::env::current_exe()?,
    };
    let jobs = plan(&engine, &binary)?;
    // a binary without MPI would refuse on the nodes, after the jobs went in
    if engine.cfg.slurm.binary.is_none() {
        runs_here(&jobs, cfg!(feature = "mpi")).map_err(anyhow::Error::msg)?;
    }
    if jobs.is_empty() {
        outln!(
            "every stage of {} has finished; nothing to submit",
            engine.run.root.display()
        );
        return Ok(());
    }
    let run_dir = std::fs::canonicalize(&engine.run.root)?;
    if dry_run {
        for j in &jobs {
            let after = if j.after.is_empty() {
                String::new()
            } else {
                format!(" --dependency=afterok:<{}>", j.after.join(">:<"))
            };
            outln!(
                "# sbatch --parsable{after} {}\n{}",
                j.path.display(),
                j.script
            );
        }
        return Ok(());
    }
    fs_err::create_dir_all(run_dir.join("slurm").join("logs"))?;
    let mut submitted = read_submitted(&run_dir);
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    for j in &jobs {
        fs_err::write(&j.path, &j.script)?;
        let after: Vec<String> = j.after.iter().map(|n| ids[n].clone()).collect();
        let id = sbatch(&j.path, &after)?;
        outln!(
            "{:<12} job {id}{}{}",
            j.name,
            j.array
                .as_ref()
                .map(|a| format!(" (array {a:?})"))
                .unwrap_or_default(),
            if j.tasks > 1 {
                format!(", {} processes a stage", j.tasks)
            } else {
                String::new()
            }
        );
        ids.insert(j.name.clone(), id.clone());
        submitted.jobs.insert(j.name.clone(), id);
        match &j.array {
            Some(a) => {
                submitted.arrays.insert(j.name.clone(), a.clone());
            }
            None => {
                submitted.arrays.remove(&j.name);
            }
        }
        if j.tasks > 1 {
            submitted.tasks.insert(j.name.clone(), j.tasks);
        } else {
            submitted.tasks.remove(&j.name);
        }
        fs_err::write(jobs_path(&run_dir), serde_json::to_vec_pretty(&submitted)?)?;
    }
    outln!(
        "`incubator slurm status {}` follows them",
        run_dir.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_of_several_processes_need_a_binary_built_with_mpi() {
        let job = |name: &str, tasks| Job {
            name: name.into(),
            script: String::new(),
            path: PathBuf::new(),
            array: None,
            after: Vec::new(),
            tasks,
        };
        let jobs = [job("meta", 1), job("incubate", 4)];
        assert_eq!(runs_here(&jobs, true), Ok(()));
        let e = runs_here(&jobs, false).unwrap_err();
        assert!(
            e.contains("the incubate job trains as 4 processes")
                && e.contains("--features mpi")
                && e.contains("tasks_per_stage = 1"),
            "{e}"
        );
        assert_eq!(runs_here(&jobs[..1], false), Ok(()));
    }
}

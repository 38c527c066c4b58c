//! `incubator sweep`: a grid of configurations x seeds as ordinary run directories under one
//! sweep directory, trained here (`run`) or on Slurm (`submit`), and the report over seeds.

pub mod local;
pub mod plan;
pub mod plot;
pub mod report;
pub mod results;
pub mod spec;

use plan::{finished, SweepDir};
use std::path::Path;

/// Writes the report (Markdown, JSON, SVG plots) of whatever has finished; prints the table.
pub fn write_report(dir: &SweepDir) -> anyhow::Result<report::SweepReport> {
    let plan = dir.read_plan()?;
    let rep = report::SweepReport::build(dir, &plan)?;
    let mut md = rep.to_markdown();
    if rep.points.is_empty() {
        outln!("{md}");
        outln!("no run has finished yet: no plots");
    } else {
        let plots = dir.root.join("plots");
        fs_err::create_dir_all(&plots)?;
        let compute = plots.join("accuracy-vs-compute.svg");
        plot::accuracy_vs_compute(&rep, &compute)?;
        md.push_str("\n![top-1 against compute](plots/accuracy-vs-compute.svg)\n");
        let axis = plots.join("accuracy-vs-axis.svg");
        if let Some(name) = plot::accuracy_vs_axis(&rep, &axis)? {
            md.push_str(&format!(
                "\n![top-1 against {name}](plots/accuracy-vs-axis.svg)\n"
            ));
        }
        out!("{md}");
    }
    incubator_core::checkpoint::write_atomic(&dir.root.join("report.md"), md.as_bytes())?;
    incubator_core::checkpoint::write_atomic(
        &dir.root.join("report.json"),
        serde_json::to_string_pretty(&rep)?.as_bytes(),
    )?;
    outln!(
        "\nreport written to {}",
        dir.root.join("report.md").display()
    );
    Ok(rep)
}

/// `incubator sweep run`: every unfinished run here, then the report.
pub fn run(file: &Path, root: &Path, opts: &local::LocalOptions) -> anyhow::Result<()> {
    let spec = spec::SweepSpec::load(file)?;
    let dir = SweepDir::new(root);
    let (_, runs) = dir.prepare(&spec)?;
    let failures = local::run_all(&dir, &runs, opts)?;
    write_report(&dir)?;
    if !failures.is_empty() {
        anyhow::bail!(
            "{} of {} runs failed:\n  {}\nfix the cause and run the same command again: finished runs are skipped, failed ones resume",
            failures.len(),
            runs.len(),
            failures.join("\n  ")
        );
    }
    Ok(())
}

/// `incubator sweep submit`: every unfinished run's stages as Slurm jobs.
pub fn submit(file: &Path, root: &Path, dry_run: bool) -> anyhow::Result<()> {
    let spec = spec::SweepSpec::load(file)?;
    let dir = SweepDir::new(root);
    let (_, runs) = dir.prepare(&spec)?;
    let mut submitted = 0;
    for r in &runs {
        let run_dir = dir.run_dir(&r.point, r.seed);
        if finished(&run_dir)? {
            continue;
        }
        outln!("== {} seed {}", r.point, r.seed);
        crate::slurm::submit_run(&run_dir, Some(&r.config), &[], dry_run)?;
        submitted += 1;
    }
    outln!(
        "{submitted} of {} runs submitted{}; when they finish: incubator sweep report -d {}",
        runs.len(),
        if dry_run { " (dry run)" } else { "" },
        root.display()
    );
    Ok(())
}

//! `incubator-dashboard RUN_DIR...` or `incubator-dashboard --url http://127.0.0.1:8787`:
//! the dashboard in a native window.

#[cfg(not(target_arch = "wasm32"))]
fn main() -> eframe::Result {
    use clap::Parser;
    use incubator_dashboard::source::{DirSource, HttpSource, Source};

    /// The incubator dashboard: runs live from their directories or from a server.
    #[derive(Parser)]
    #[command(version)]
    struct Args {
        /// Run directories to show (they may still be training).
        runs: Vec<std::path::PathBuf>,
        /// A live server (`incubator serve`) to show every run of.
        #[arg(long)]
        url: Option<String>,
    }

    let args = Args::parse();
    let mut sources: Vec<Box<dyn Source>> = args
        .runs
        .into_iter()
        .map(|d| Box::new(DirSource::new(d)) as Box<dyn Source>)
        .collect();
    if let Some(url) = &args.url {
        match HttpSource::all(url) {
            Ok(list) => sources.extend(list.into_iter().map(|s| Box::new(s) as Box<dyn Source>)),
            Err(e) => {
                eprintln!("error: {e}; is `incubator serve` running there?");
                std::process::exit(1);
            }
        }
    }
    if sources.is_empty() {
        eprintln!("error: give run directories or --url (see --help)");
        std::process::exit(2);
    }
    eframe::run_native(
        "incubator dashboard",
        eframe::NativeOptions {
            viewport: egui::ViewportBuilder::default().with_inner_size([1400.0, 900.0]),
            ..Default::default()
        },
        Box::new(|_cc| Ok(Box::new(incubator_dashboard::DashboardApp::new(sources)))),
    )
}

#[cfg(target_arch = "wasm32")]
fn main() {}

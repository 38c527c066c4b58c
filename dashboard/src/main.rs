//! `incubator-dashboard DIR...` (run or sweep directories) or
//! `incubator-dashboard --url http://127.0.0.1:8787`: the dashboard in a native window. It
//! remembers the open view and every view's settings between sessions.

#[cfg(not(target_arch = "wasm32"))]
fn main() -> eframe::Result {
    use clap::Parser;
    use incubator_dashboard::source::{DirSource, HttpSource, Source};

    /// The incubator dashboard: runs live from their directories or from a server.
    #[derive(Parser)]
    #[command(version)]
    struct Args {
        /// Run directories, or sweep directories (every run of the sweep, grouped by
        /// configuration), to show; they may still be training.
        runs: Vec<std::path::PathBuf>,
        /// Start from the default views instead of what the last session showed.
        #[arg(long)]
        fresh: bool,
        /// Open what a link of the browser dashboard shows: its part after `#`
        /// (`view=timeline&state=...`).
        #[arg(long)]
        link: Option<String>,
        /// A live server (`incubator serve`) to show every run of: the address it printed
        /// (with `?token=...` when it has a token).
        #[arg(long)]
        url: Option<String>,
        /// The server's token, when --url does not carry it.
        #[arg(long, env = "INCUBATOR_TOKEN", hide_env_values = true)]
        token: Option<String>,
    }

    let args = Args::parse();
    let mut sources: Vec<Box<dyn Source>> = Vec::new();
    for dir in args.runs {
        match DirSource::open(dir) {
            Ok(list) => sources.extend(list.into_iter().map(|s| Box::new(s) as Box<dyn Source>)),
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        }
    }
    if let Some(url) = &args.url {
        match HttpSource::all(url, args.token.as_deref()) {
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
        Box::new(move |cc| {
            let mut app = incubator_dashboard::DashboardApp::new(sources);
            let remembered = cc.storage.and_then(|s| {
                eframe::get_value::<incubator_dashboard::memory::Memory>(
                    s,
                    incubator_dashboard::app::MEMORY_KEY,
                )
            });
            if let Some(memory) = remembered.filter(|_| !args.fresh) {
                app.restore(memory);
            }
            if let Some(link) = &args.link {
                if !app.follow_link(link) {
                    eprintln!("warning: --link {link:?} names no view; showing the last one");
                }
            }
            Ok(Box::new(app))
        }),
    )
}

#[cfg(target_arch = "wasm32")]
fn main() {}

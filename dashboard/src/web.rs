//! The browser build: the same app on a canvas, fed by the server's event streams
//! (EventSource reconnects by itself and sends `Last-Event-ID`, so the stream resumes).

use crate::app::DashboardApp;
use crate::source::{parse, parse_run_list, path_segment, Source};
use incubator_events::Record;
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

/// One run's stream from the server that served this page.
struct WebSource {
    name: String,
    group: Option<String>,
    queue: Rc<RefCell<Vec<Record>>>,
    config: Rc<RefCell<Option<String>>>,
    problem: Rc<RefCell<Option<String>>>,
    _events: web_sys::EventSource,
    _closures: Vec<Closure<dyn FnMut(web_sys::Event)>>,
}

impl WebSource {
    fn open(name: String, group: Option<String>) -> Result<WebSource, JsValue> {
        let events =
            web_sys::EventSource::new(&api(&format!("api/runs/{}/events", path_segment(&name))))?;
        let queue: Rc<RefCell<Vec<Record>>> = Default::default();
        let problem: Rc<RefCell<Option<String>>> = Default::default();
        let on_message = {
            let (queue, problem) = (queue.clone(), problem.clone());
            Closure::<dyn FnMut(web_sys::Event)>::new(move |e: web_sys::Event| {
                if let Some(m) = e.dyn_ref::<web_sys::MessageEvent>() {
                    if let Some(r) = m.data().as_string().as_deref().and_then(parse) {
                        queue.borrow_mut().push(r);
                        *problem.borrow_mut() = None;
                    }
                }
            })
        };
        events.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        let on_error = {
            let (problem, name) = (problem.clone(), name.clone());
            Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
                *problem.borrow_mut() = Some(format!("{name}: connection lost, reconnecting"));
            })
        };
        events.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        let config: Rc<RefCell<Option<String>>> = Default::default();
        let slot = config.clone();
        let url = api(&format!("api/runs/{}/config", path_segment(&name)));
        wasm_bindgen_futures::spawn_local(async move {
            if let Ok(text) = fetch_text(&url).await {
                *slot.borrow_mut() = Some(text);
            }
        });
        Ok(WebSource {
            name,
            group,
            queue,
            config,
            problem,
            _events: events,
            _closures: vec![on_message, on_error],
        })
    }
}

impl Source for WebSource {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn group(&self) -> Option<String> {
        self.group.clone()
    }
    fn poll(&mut self) -> Vec<Record> {
        std::mem::take(&mut *self.queue.borrow_mut())
    }
    fn config(&mut self) -> Option<String> {
        self.config.borrow().clone()
    }
    fn problem(&self) -> Option<String> {
        self.problem.borrow().clone()
    }
}

async fn fetch_text(url: &str) -> Result<String, JsValue> {
    let window = web_sys::window().ok_or("no window")?;
    let resp: web_sys::Response = wasm_bindgen_futures::JsFuture::from(window.fetch_with_str(url))
        .await?
        .dyn_into()?;
    if resp.status() == 401 {
        return Err("this server needs its token: open the address it printed when it started (it ends in ?token=...)".into());
    }
    if !resp.ok() {
        return Err(format!("{url}: HTTP {}", resp.status()).into());
    }
    let text = wasm_bindgen_futures::JsFuture::from(resp.text()?).await?;
    text.as_string().ok_or_else(|| "not text".into())
}

/// A server path with the token this page was opened with (`/?token=T`), when it has one:
/// the server also sets a cookie, but a browser that refuses cookies still gets through.
fn api(path: &str) -> String {
    let search = web_sys::window()
        .and_then(|w| w.location().search().ok())
        .unwrap_or_default();
    let token = incubator_events::access::token_in_query(search.trim_start_matches('?'));
    incubator_events::access::with_token(path, token)
}

/// The page's URL fragment, without the `#`.
fn fragment() -> String {
    web_sys::window()
        .and_then(|w| w.location().hash().ok())
        .unwrap_or_default()
        .trim_start_matches('#')
        .to_string()
}

/// The app, keeping the URL's fragment on what it shows (so the address bar is always a link
/// to the current view), and following the fragment when the user edits it or goes back.
pub struct LinkedApp {
    pub app: DashboardApp,
    /// The fragment as last written or followed.
    shown: String,
}

impl eframe::App for LinkedApp {
    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        let now = fragment();
        if now != self.shown && !now.is_empty() {
            // changed from outside (typed, pasted, back button)
            self.app.follow_link(&now);
            self.shown = now;
        }
        self.app.show(ui);
        let link = self.app.link();
        if link != self.shown {
            if let Some(history) = web_sys::window().and_then(|w| w.history().ok()) {
                let _ =
                    history.replace_state_with_url(&JsValue::NULL, "", Some(&format!("#{link}")));
            }
            self.shown = link;
        }
        let _ = frame;
    }

    fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
        Some(self)
    }
}

thread_local! {
    static RUNNER: RefCell<Option<eframe::WebRunner>> = const { RefCell::new(None) };
}

/// Starts the dashboard on the page's `<canvas id="dashboard">`.
#[wasm_bindgen(start)]
pub fn start() {
    wasm_bindgen_futures::spawn_local(async {
        if let Err(e) = run().await {
            web_sys::console::error_1(&e);
            // on the page too: a blank canvas tells the user nothing
            let body = web_sys::window()
                .and_then(|w| w.document())
                .and_then(|d| d.body());
            if let (Some(body), Some(text)) = (body, e.as_string()) {
                body.set_text_content(Some(&text));
            }
        }
    });
}

async fn run() -> Result<(), JsValue> {
    let incoming: Rc<RefCell<Vec<Box<dyn Source>>>> = Default::default();
    let list = parse_run_list(&fetch_text(&api("api/runs")).await?)
        .map_err(|e| JsValue::from(format!("the server's run list: {e}")))?;
    for (name, group) in list {
        incoming
            .borrow_mut()
            .push(Box::new(WebSource::open(name, group)?));
    }
    let document = web_sys::window()
        .ok_or("no window")?
        .document()
        .ok_or("no document")?;
    let canvas: web_sys::HtmlCanvasElement = document
        .get_element_by_id("dashboard")
        .ok_or("no <canvas id=\"dashboard\">")?
        .dyn_into()?;
    let runner = eframe::WebRunner::new();
    let sources = std::mem::take(&mut *incoming.borrow_mut());
    runner
        .start(
            canvas,
            eframe::WebOptions::default(),
            Box::new(move |_cc| {
                let mut app = DashboardApp::new(sources);
                app.follow_link(&fragment());
                Ok(Box::new(LinkedApp {
                    app,
                    shown: String::new(),
                }))
            }),
        )
        .await?;
    RUNNER.with(|r| *r.borrow_mut() = Some(runner));
    Ok(())
}

/// What the app shows, for browser tests (egui draws on a canvas: there is no DOM to read):
/// `{"runs":[{"name":..,"records":..,"stages":{"meta":{"status":..,"steps":..}}}],"frames":..}`.
#[wasm_bindgen]
pub fn dashboard_state() -> String {
    RUNNER.with(|r| {
        let r = r.borrow();
        let Some(runner) = r.as_ref() else {
            return "{}".to_string();
        };
        if runner.has_panicked() {
            return "{\"panicked\":true}".to_string();
        }
        let Some(linked) = runner.app_mut::<LinkedApp>() else {
            return "{}".to_string();
        };
        crate::app::state_json(&linked.app)
    })
}

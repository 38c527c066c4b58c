//! What a dashboard view is: a tab that owns its state (settings, selections, caches), draws
//! from the shared [`Workspace`] and can say what to restore from a link or the next session.
//! Adding a view means one new file and one line in `views::all`; no other view changes.

use crate::workspace::Workspace;
use std::any::Any;

pub trait View: Any {
    /// Stable name in links and saved memory: `curves`, `timeline`.
    fn id(&self) -> &'static str;
    /// The tab's label.
    fn title(&self) -> &'static str;
    fn ui(&mut self, ui: &mut egui::Ui, ws: &Workspace);
    /// What a link or the next session restores (selections and settings; no data).
    fn state(&self) -> serde_json::Value;
    /// Takes back what [`View::state`] gave; what it does not understand is ignored.
    fn restore(&mut self, state: serde_json::Value);
    /// A line of what the view shows, for tests (native and in the browser).
    fn describe(&self, _ws: &Workspace) -> serde_json::Value {
        serde_json::Value::Null
    }
}

/// `state` and `restore` for a view whose state is one serde struct.
pub fn to_state<S: serde::Serialize>(s: &S) -> serde_json::Value {
    serde_json::to_value(s).unwrap_or(serde_json::Value::Null)
}

pub fn from_state<S: serde::de::DeserializeOwned>(target: &mut S, state: serde_json::Value) {
    if let Ok(s) = serde_json::from_value(state) {
        *target = s;
    }
}

/// The concrete view behind a `dyn View` (tests and benchmarks reach into one view's state).
pub fn downcast<T: View>(v: &dyn View) -> Option<&T> {
    (v as &dyn Any).downcast_ref()
}

pub fn downcast_mut<T: View>(v: &mut dyn View) -> Option<&mut T> {
    (v as &mut dyn Any).downcast_mut()
}

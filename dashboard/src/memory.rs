//! What the dashboard remembers: the open view and every view's state. Natively it is saved
//! between sessions (eframe's storage); in the browser the open view and its state live in the
//! URL's fragment, so a pasted link shows the same view with the same selections.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// The open view's id.
    pub view: String,
    /// Each view's state by view id.
    pub views: BTreeMap<String, serde_json::Value>,
}

/// `view=timeline&state=%7B...%7D`: the open view and its state, form-encoded.
pub fn to_fragment(view: &str, state: &serde_json::Value) -> String {
    let mut f = form_urlencoded::Serializer::new(String::new());
    f.append_pair("view", view);
    if !state.is_null() {
        f.append_pair("state", &state.to_string());
    }
    f.finish()
}

/// The inverse of [`to_fragment`] (a leading `#` is allowed); `None` without a view. A state
/// that is not JSON is dropped, the view still opens.
pub fn from_fragment(fragment: &str) -> Option<(String, serde_json::Value)> {
    let mut view = None;
    let mut state = serde_json::Value::Null;
    for (k, v) in form_urlencoded::parse(fragment.trim_start_matches('#').as_bytes()) {
        match k.as_ref() {
            "view" => view = Some(v.into_owned()),
            "state" => state = serde_json::from_str(&v).unwrap_or(serde_json::Value::Null),
            _ => {}
        }
    }
    Some((view?, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fragment_round_trips_with_awkward_characters() {
        let state = serde_json::json!({"run": "model.depth=8/seed0", "hidden": ["e2e", "a&b #c"]});
        let f = to_fragment("curves", &state);
        assert!(!f.contains('#') && !f.contains(' '), "{f}");
        assert_eq!(
            from_fragment(&format!("#{f}")),
            Some(("curves".into(), state))
        );
        assert_eq!(
            from_fragment("view=timeline&state=%7Bbroken"),
            Some(("timeline".into(), serde_json::Value::Null))
        );
        assert_eq!(from_fragment("state=%7B%7D"), None);
        assert_eq!(from_fragment(""), None);
    }
}

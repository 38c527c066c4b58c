//! The text of a caught panic, for errors that report it instead of unwinding further (a
//! plugin's panic failing its stage, a decoder's failing its batch).

/// The text of a panic payload (`&str` or `String`), as the panic printed it.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".into()
    }
}

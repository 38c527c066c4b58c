//! What a plugin call returns when it fails: a typed error the engine can tell apart (a
//! refused option value, refused inputs, an engine service that failed underneath), so that
//! plugins need not depend on `anyhow` and the engine need not guess from a message.

use std::error::Error;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// A `[plugins.options]` value the plugin cannot work with.
    #[error("plugins.options.{key}: {message}")]
    Option { key: String, message: String },
    /// Inputs the plugin cannot work with: a meta model of another shape, a teacher of
    /// another split, a part that is not there.
    #[error("{0}")]
    Refused(String),
    /// An engine service the plugin called failed (loading the meta model or a teacher,
    /// adding an extra network): its error, whole, for the engine to report or act on (a stop
    /// requested while a teacher trained stays a stop).
    #[error(transparent)]
    Engine(Box<dyn Error + Send + Sync>),
}

impl PluginError {
    /// A refused `[plugins.options]` value: `key` is the option, `message` says what it must be.
    pub fn option(key: &str, message: impl Into<String>) -> PluginError {
        PluginError::Option {
            key: key.into(),
            message: message.into(),
        }
    }

    /// The engine's error in a plugin error.
    pub fn engine(e: anyhow::Error) -> PluginError {
        PluginError::Engine(e.into())
    }

    /// Back to the engine's error type, the engine's own error unwrapped again.
    pub fn into_anyhow(self) -> anyhow::Error {
        match self {
            PluginError::Engine(e) => anyhow::Error::from_boxed(e),
            other => anyhow::Error::new(other),
        }
    }
}

/// Returns `Err(PluginError::Refused(format!(...)))` from the enclosing function: a plugin's
/// `bail!`.
///
/// ```ignore
/// if meta.parts.len() != k {
///     refuse!("needs {k} meta parts, got {}", meta.parts.len());
/// }
/// ```
#[macro_export]
macro_rules! refuse {
    ($($arg:tt)*) => {
        return ::std::result::Result::Err($crate::plugin::PluginError::Refused(format!($($arg)*)))
    };
}

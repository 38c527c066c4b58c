//! Typed plugin options: each plugin declares the `[plugins.options]` keys it reads (name,
//! type, default, help). A run refuses unknown or ill-typed keys before anything trains, and
//! `incubator plugins list` / `check` show them.

use std::fmt;

/// The type of an option's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptionKind {
    /// A number (an integer is accepted too).
    Float,
    /// A whole number.
    Int,
    Bool,
    Text,
}

impl fmt::Display for OptionKind {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            OptionKind::Float => "number",
            OptionKind::Int => "integer",
            OptionKind::Bool => "boolean",
            OptionKind::Text => "string",
        })
    }
}

impl OptionKind {
    /// Whether a TOML value is of this kind.
    pub fn accepts(self, v: &toml::Value) -> bool {
        matches!(
            (self, v),
            (
                OptionKind::Float,
                toml::Value::Float(_) | toml::Value::Integer(_)
            ) | (OptionKind::Int, toml::Value::Integer(_))
                | (OptionKind::Bool, toml::Value::Boolean(_))
                | (OptionKind::Text, toml::Value::String(_))
        )
    }
}

/// One option a plugin reads.
#[derive(Clone, Debug, PartialEq)]
pub struct OptionSpec {
    pub name: String,
    pub kind: OptionKind,
    pub default: toml::Value,
    pub help: String,
}

impl OptionSpec {
    pub fn float(name: &str, default: f64, help: &str) -> OptionSpec {
        OptionSpec::new(name, OptionKind::Float, toml::Value::Float(default), help)
    }
    pub fn int(name: &str, default: i64, help: &str) -> OptionSpec {
        OptionSpec::new(name, OptionKind::Int, toml::Value::Integer(default), help)
    }
    pub fn bool(name: &str, default: bool, help: &str) -> OptionSpec {
        OptionSpec::new(name, OptionKind::Bool, toml::Value::Boolean(default), help)
    }
    pub fn text(name: &str, default: &str, help: &str) -> OptionSpec {
        OptionSpec::new(
            name,
            OptionKind::Text,
            toml::Value::String(default.into()),
            help,
        )
    }
    fn new(name: &str, kind: OptionKind, default: toml::Value, help: &str) -> OptionSpec {
        OptionSpec {
            name: name.into(),
            kind,
            default,
            help: help.into(),
        }
    }
}

impl fmt::Display for OptionSpec {
    /// `alpha (number, default 0.5): weight of the distillation term`
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{} ({}, default {}): {}",
            self.name, self.kind, self.default, self.help
        )
    }
}

//! Plugin options, declared once: a plugin's options are one struct whose fields are the
//! `[plugins.options]` keys it reads. Its doc comments are the help, its `Default` the
//! defaults, `#[schemars(range(min = .., max = ..))]` the bounds and [`PluginOptions::check`]
//! anything else. From the struct the engine derives what `incubator plugins list` shows,
//! refuses unknown keys, ill-typed and out-of-range values before any stage trains, and hands
//! the plugin its values typed ([`super::PluginContext::options`]).

use super::{PluginContext, PluginError};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::fmt;

/// A plugin's options struct. Derive it with [`crate::plugin_options!`], which adds the
/// serde and schemars derives through the engine's copies of those crates:
///
/// ```ignore
/// incubator_core::sdk::plugin_options! {
///     pub struct FeatureKdOptions {
///         /// weight of the feature loss at the start; it decays linearly to 0
///         #[schemars(range(min = 0.0))]
///         pub hint_weight: f64,
///     }
/// }
/// impl Default for FeatureKdOptions {
///     fn default() -> Self { FeatureKdOptions { hint_weight: 1.0 } }
/// }
/// impl PluginOptions for FeatureKdOptions {}
/// ```
pub trait PluginOptions: DeserializeOwned + Serialize + JsonSchema + Default + 'static {
    /// Checks that the declared ranges cannot express: against each other, or against the
    /// run (its model, split and recipe). Runs before any stage trains.
    fn check(&self, _ctx: &PluginContext) -> Result<(), PluginError> {
        Ok(())
    }
}

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

/// A bound on a number: `(value, inclusive)`.
pub type Bound = Option<(f64, bool)>;

/// One option a plugin reads, as its options struct declares it.
#[derive(Clone, Debug, PartialEq)]
pub struct OptionSpec {
    pub name: String,
    pub kind: OptionKind,
    /// The default, as the config would write it; `None` where the option has none (absent
    /// means unset).
    pub default: Option<toml::Value>,
    pub help: String,
    pub min: Bound,
    pub max: Bound,
    /// The values a text option takes; empty: any.
    pub choices: Vec<String>,
}

impl OptionSpec {
    /// Why `value` is refused, if it is: out of range, or not one of the choices.
    pub fn refuses(&self, value: &toml::Value) -> Option<String> {
        if let Some(x) = value.as_float().or(value.as_integer().map(|i| i as f64)) {
            if !x.is_finite() {
                return Some(format!("{x} is not a finite number"));
            }
            let below = self.min.is_some_and(|(m, incl)| x < m || (!incl && x == m));
            let above = self.max.is_some_and(|(m, incl)| x > m || (!incl && x == m));
            if below || above {
                return Some(format!("{x} is out of range: it must be {}", self.range()));
            }
        }
        if let (Some(s), false) = (value.as_str(), self.choices.is_empty()) {
            if !self.choices.iter().any(|c| c == s) {
                return Some(format!("{s:?} is not one of {}", self.choices_text()));
            }
        }
        None
    }

    fn range(&self) -> String {
        let lo = self
            .min
            .map(|(m, incl)| format!("{} {m}", if incl { ">=" } else { ">" }));
        let hi = self
            .max
            .map(|(m, incl)| format!("{} {m}", if incl { "<=" } else { "<" }));
        [lo, hi]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" and ")
    }

    fn choices_text(&self) -> String {
        let quoted: Vec<String> = self.choices.iter().map(|c| format!("{c:?}")).collect();
        quoted.join(", ")
    }
}

impl fmt::Display for OptionSpec {
    /// `alpha (number, >= 0 and <= 1, default 0.5): weight of the distillation term`
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} ({}", self.name, self.kind)?;
        if self.min.is_some() || self.max.is_some() {
            write!(f, ", {}", self.range())?;
        }
        if !self.choices.is_empty() {
            write!(f, ", one of {}", self.choices_text())?;
        }
        match &self.default {
            Some(d) => write!(f, ", default {d}")?,
            None => write!(f, ", unset by default")?,
        }
        write!(f, "): {}", self.help)
    }
}

/// What a plugin declares: the specs of its options and how to check a run's values.
#[derive(Clone)]
pub struct OptionSet {
    pub specs: Vec<OptionSpec>,
    check: Option<fn(&PluginContext) -> Result<(), PluginError>>,
}

impl OptionSet {
    /// No options.
    pub fn none() -> OptionSet {
        OptionSet {
            specs: Vec::new(),
            check: None,
        }
    }

    /// The options of struct `T`.
    pub fn of<T: PluginOptions>() -> OptionSet {
        OptionSet {
            specs: specs_of::<T>(),
            check: Some(|ctx| ctx.options::<T>().map(|_| ())),
        }
    }

    /// Reads the run's values as the plugin will, with every check it declares.
    pub fn check(&self, ctx: &PluginContext) -> Result<(), PluginError> {
        self.check.map_or(Ok(()), |c| c(ctx))
    }
}

impl PluginContext<'_> {
    /// The plugin's options struct with this run's `[plugins.options]` values, checked (types,
    /// ranges, choices, [`PluginOptions::check`]); absent keys take the struct's defaults.
    pub fn options<T: PluginOptions>(&self) -> Result<T, PluginError> {
        read(self)
    }
}

/// Reads `T` from the run's `[plugins.options]` (keys of the other selected plugins are
/// ignored), then checks ranges, choices and [`PluginOptions::check`].
fn read<T: PluginOptions>(ctx: &PluginContext) -> Result<T, PluginError> {
    let given = &ctx.cfg.plugins.options;
    for spec in specs_of::<T>() {
        let Some(value) = given.get(&spec.name) else {
            continue;
        };
        if !spec.kind.accepts(value) {
            return Err(PluginError::option(
                &spec.name,
                format!("{value} must be a {} ({spec})", spec.kind),
            ));
        }
        if let Some(why) = spec.refuses(value) {
            return Err(PluginError::option(&spec.name, format!("{why} ({spec})")));
        }
    }
    let table = toml::Value::Table(given.clone().into_iter().collect());
    let options: T = table
        .try_into()
        .map_err(|e: toml::de::Error| PluginError::option("*", e.message().to_string()))?;
    options.check(ctx)?;
    Ok(options)
}

/// The specs of `T`'s fields, from its JSON schema.
pub fn specs_of<T: PluginOptions>() -> Vec<OptionSpec> {
    let schema = schemars::SchemaGenerator::default().into_root_schema_for::<T>();
    let root = schema.as_value();
    let Some(props) = root.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    props
        .iter()
        .map(|(name, p)| spec_of(name, p, root))
        .collect()
}

fn spec_of(name: &str, p: &Value, root: &Value) -> OptionSpec {
    // an enum's variants live in `$defs`
    let def = p
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/"))
        .and_then(|path| path.split('/').try_fold(root, |v, k| v.get(k)))
        .unwrap_or(p);
    let choices: Vec<String> = match (def.get("enum"), def.get("oneOf")) {
        (Some(Value::Array(values)), _) => values.iter().filter_map(as_string).collect(),
        (_, Some(Value::Array(variants))) => variants
            .iter()
            .filter_map(|v| v.get("const").and_then(as_string))
            .collect(),
        _ => Vec::new(),
    };
    let types: Vec<&str> = match def.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let kind = if !choices.is_empty() || types.contains(&"string") {
        OptionKind::Text
    } else if types.contains(&"integer") {
        OptionKind::Int
    } else if types.contains(&"boolean") {
        OptionKind::Bool
    } else {
        OptionKind::Float
    };
    let bound = |incl: &str, excl: &str| -> Bound {
        match (
            p.get(incl).and_then(Value::as_f64),
            p.get(excl).and_then(Value::as_f64),
        ) {
            (Some(m), _) => Some((m, true)),
            (_, Some(m)) => Some((m, false)),
            _ => None,
        }
    };
    let of_type = if std::ptr::eq(def, p) {
        None
    } else {
        def.get("description")
    };
    let help = [p.get("description"), of_type]
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join(": ");
    OptionSpec {
        name: name.to_string(),
        kind,
        default: p.get("default").and_then(toml_of),
        help: help.replace('\n', " "),
        min: bound("minimum", "exclusiveMinimum"),
        max: bound("maximum", "exclusiveMaximum"),
        choices,
    }
}

fn as_string(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

fn toml_of(v: &Value) -> Option<toml::Value> {
    Some(match v {
        Value::Bool(b) => toml::Value::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => toml::Value::Integer(i),
            None => toml::Value::Float(n.as_f64()?),
        },
        Value::String(s) => toml::Value::String(s.clone()),
        _ => return None,
    })
}

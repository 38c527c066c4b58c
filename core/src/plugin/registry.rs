//! Plugins by name, as timm registers models: configs say `strategy = "deep-incubation"`.
//! Built-ins and libraries register the same way, through a [`Registrar`]. The three kinds
//! live in one generic [`Slot`] each.

use super::options::{OptionSet, OptionSpec};
use super::{AssemblyRule, IncubationStrategy, MetaDesign, PluginContext};
use crate::config::PluginSection;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// Where a registered plugin came from.
#[derive(Clone, Debug, PartialEq)]
pub enum Origin {
    BuiltIn,
    Library(PathBuf),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Origin::BuiltIn => write!(f, "built in"),
            Origin::Library(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The three kinds of plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Strategy,
    MetaDesign,
    Assembly,
}

impl Kind {
    /// The `[plugins]` key that selects one.
    pub fn config_key(self) -> &'static str {
        match self {
            Kind::Strategy => "strategy",
            Kind::MetaDesign => "meta_design",
            Kind::Assembly => "assembly",
        }
    }
    /// The short label of `plugins list`.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Strategy => "strategy",
            Kind::MetaDesign => "meta-design",
            Kind::Assembly => "assembly",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Kind::Strategy => "incubation strategy",
            Kind::MetaDesign => "meta-model design",
            Kind::Assembly => "assembly rule",
        })
    }
}

/// A name already taken when a plugin registered.
#[derive(Clone, Debug, PartialEq)]
pub struct Clash {
    pub kind: Kind,
    pub name: String,
    pub taken_by: Origin,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RegistryError {
    #[error("unknown {kind} {name:?} (plugins.{}); registered: {}{}. Load the library that provides it with plugins.libraries or --plugin", kind.config_key(), if registered.is_empty() { "none".to_string() } else { registered.join(", ") }, if *builtins_off { " (plugins.builtins = false leaves out the built-in deep-incubation)" } else { "" })]
    Unknown {
        kind: Kind,
        name: String,
        registered: Vec<String>,
        builtins_off: bool,
    },
    #[error("{}; rename the plugin's items or load only one of them (plugins.builtins = false leaves the built-ins out)", clashes.iter().map(|c| format!("{} {:?} is already registered ({})", c.kind.label(), c.name, c.taken_by)).collect::<Vec<_>>().join("; "))]
    Taken { clashes: Vec<Clash> },
    #[error("plugins.options.{key} is not an option of the selected plugins; they take: {}. Remove it or fix its name", if offered.is_empty() { "no options".to_string() } else { offered.join("; ") })]
    UnknownOption { key: String, offered: Vec<String> },
    #[error("plugins.options.{key} = {value} must be a {want} ({spec})")]
    OptionType {
        key: String,
        value: String,
        want: super::options::OptionKind,
        spec: String,
    },
    #[error("plugins.options.{key} = {why} ({spec})")]
    OptionValue {
        key: String,
        why: String,
        spec: String,
    },
    #[error("{who} refuses the run's options: {message}")]
    Refused { who: String, message: String },
}

/// What the registry needs of each kind of plugin.
pub trait Item: Send + Sync {
    const KIND: Kind;
    fn item_name(&self) -> &str;
    fn item_options(&self) -> OptionSet;
}

impl Item for dyn IncubationStrategy {
    const KIND: Kind = Kind::Strategy;
    fn item_name(&self) -> &str {
        self.name()
    }
    fn item_options(&self) -> OptionSet {
        self.options()
    }
}

impl Item for dyn MetaDesign {
    const KIND: Kind = Kind::MetaDesign;
    fn item_name(&self) -> &str {
        self.name()
    }
    fn item_options(&self) -> OptionSet {
        self.options()
    }
}

impl Item for dyn AssemblyRule {
    const KIND: Kind = Kind::Assembly;
    fn item_name(&self) -> &str {
        self.name()
    }
    fn item_options(&self) -> OptionSet {
        self.options()
    }
}

struct Entry<T: ?Sized> {
    plugin: Arc<T>,
    origin: Origin,
    version: String,
}

/// The registered plugins of one kind, by name.
pub struct Slot<T: ?Sized> {
    entries: BTreeMap<String, Entry<T>>,
}

impl<T: ?Sized> Default for Slot<T> {
    fn default() -> Self {
        Slot {
            entries: BTreeMap::new(),
        }
    }
}

impl<T: ?Sized + Item> Slot<T> {
    fn get(&self, name: &str, builtins_off: bool) -> Result<Arc<T>, RegistryError> {
        self.entries
            .get(name)
            .map(|e| e.plugin.clone())
            .ok_or_else(|| RegistryError::Unknown {
                kind: T::KIND,
                name: name.into(),
                registered: self.entries.keys().cloned().collect(),
                builtins_off,
            })
    }

    fn clashes(&self, items: &[Arc<T>]) -> Vec<Clash> {
        items
            .iter()
            .filter_map(|p| {
                self.entries.get(p.item_name()).map(|e| Clash {
                    kind: T::KIND,
                    name: p.item_name().into(),
                    taken_by: e.origin.clone(),
                })
            })
            .collect()
    }

    fn commit(&mut self, items: Vec<Arc<T>>, origin: &Origin, version: &str) {
        for plugin in items {
            self.entries.insert(
                plugin.item_name().into(),
                Entry {
                    plugin,
                    origin: origin.clone(),
                    version: version.into(),
                },
            );
        }
    }

    fn list(&self, out: &mut Vec<Listing>) {
        out.extend(self.entries.iter().map(|(n, e)| Listing {
            kind: T::KIND.label(),
            name: n.clone(),
            origin: e.origin.clone(),
            version: e.version.clone(),
            options: e.plugin.item_options().specs,
        }));
    }
}

#[derive(Default)]
pub struct Registry {
    strategies: Slot<dyn IncubationStrategy>,
    meta_designs: Slot<dyn MetaDesign>,
    assemblies: Slot<dyn AssemblyRule>,
    /// `plugins.builtins = false` left the built-ins out (said when a name is not found).
    builtins_off: bool,
}

/// What one plugin crate hands to the engine: its items, committed to the registry together
/// once registration succeeded.
pub struct Registrar {
    origin: Origin,
    version: String,
    strategies: Vec<Arc<dyn IncubationStrategy>>,
    meta_designs: Vec<Arc<dyn MetaDesign>>,
    assemblies: Vec<Arc<dyn AssemblyRule>>,
}

impl Registrar {
    pub fn new(origin: Origin, version: &str) -> Registrar {
        Registrar {
            origin,
            version: version.into(),
            strategies: Vec::new(),
            meta_designs: Vec::new(),
            assemblies: Vec::new(),
        }
    }
    pub fn add_strategy(&mut self, p: Arc<dyn IncubationStrategy>) {
        self.strategies.push(p);
    }
    pub fn add_meta_design(&mut self, p: Arc<dyn MetaDesign>) {
        self.meta_designs.push(p);
    }
    pub fn add_assembly(&mut self, p: Arc<dyn AssemblyRule>) {
        self.assemblies.push(p);
    }
}

/// One row of `incubator plugins list`.
#[derive(Clone, Debug)]
pub struct Listing {
    pub kind: &'static str,
    pub name: String,
    pub origin: Origin,
    pub version: String,
    pub options: Vec<OptionSpec>,
}

impl Registry {
    /// An empty registry; `builtins_off` says that `plugins.builtins = false` left the
    /// built-ins out, which a lookup that fails mentions.
    pub fn empty(builtins_off: bool) -> Registry {
        Registry {
            builtins_off,
            ..Registry::default()
        }
    }

    /// Commits what a plugin registered; refuses all of it if any name is already taken.
    pub fn add(&mut self, r: Registrar) -> Result<(), RegistryError> {
        let mut clashes = self.strategies.clashes(&r.strategies);
        clashes.extend(self.meta_designs.clashes(&r.meta_designs));
        clashes.extend(self.assemblies.clashes(&r.assemblies));
        if !clashes.is_empty() {
            return Err(RegistryError::Taken { clashes });
        }
        let (o, v) = (&r.origin, r.version.as_str());
        self.strategies.commit(r.strategies, o, v);
        self.meta_designs.commit(r.meta_designs, o, v);
        self.assemblies.commit(r.assemblies, o, v);
        Ok(())
    }

    pub fn strategy(&self, name: &str) -> Result<Arc<dyn IncubationStrategy>, RegistryError> {
        self.strategies.get(name, self.builtins_off)
    }
    pub fn meta_design(&self, name: &str) -> Result<Arc<dyn MetaDesign>, RegistryError> {
        self.meta_designs.get(name, self.builtins_off)
    }
    pub fn assembly(&self, name: &str) -> Result<Arc<dyn AssemblyRule>, RegistryError> {
        self.assemblies.get(name, self.builtins_off)
    }

    pub fn list(&self) -> Vec<Listing> {
        let mut out = Vec::new();
        self.strategies.list(&mut out);
        self.meta_designs.list(&mut out);
        self.assemblies.list(&mut out);
        out
    }

    /// The option sets of the plugins `plugins` selects, each with who declared it.
    fn selected(&self, plugins: &PluginSection) -> Result<Vec<(String, OptionSet)>, RegistryError> {
        Ok(vec![
            (
                format!("strategy {}", plugins.strategy),
                self.strategy(&plugins.strategy)?.options(),
            ),
            (
                format!("meta design {}", plugins.meta_design),
                self.meta_design(&plugins.meta_design)?.options(),
            ),
            (
                format!("assembly {}", plugins.assembly),
                self.assembly(&plugins.assembly)?.options(),
            ),
        ])
    }

    /// Checks that the plugins `plugins` selects exist and that every `[plugins.options]` key
    /// is an option one of them declares, with a value of its type and within its range.
    pub fn check_selection(&self, plugins: &PluginSection) -> Result<(), RegistryError> {
        let specs: Vec<(String, OptionSpec)> = self
            .selected(plugins)?
            .into_iter()
            .flat_map(|(who, set)| set.specs.into_iter().map(move |s| (who.clone(), s)))
            .collect();
        for (key, value) in &plugins.options {
            let declared: Vec<&OptionSpec> = specs
                .iter()
                .filter(|(_, s)| &s.name == key)
                .map(|(_, s)| s)
                .collect();
            if declared.is_empty() {
                return Err(RegistryError::UnknownOption {
                    key: key.clone(),
                    offered: specs
                        .iter()
                        .map(|(who, s)| format!("{s} [{who}]"))
                        .collect(),
                });
            }
            if let Some(spec) = declared.iter().find(|s| !s.kind.accepts(value)) {
                return Err(RegistryError::OptionType {
                    key: key.clone(),
                    value: value.to_string(),
                    want: spec.kind,
                    spec: spec.to_string(),
                });
            }
            if let Some((spec, why)) = declared
                .iter()
                .find_map(|s| s.refuses(value).map(|why| (s, why)))
            {
                return Err(RegistryError::OptionValue {
                    key: key.clone(),
                    why,
                    spec: spec.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Reads the run's `[plugins.options]` as each selected plugin will, with every check its
    /// options declare (including those against the run's model and recipe): the values a
    /// plugin would refuse at its stage are refused before anything trains.
    pub fn check_values(&self, ctx: &PluginContext) -> Result<(), RegistryError> {
        for (who, set) in self.selected(&ctx.cfg.plugins)? {
            set.check(ctx).map_err(|e| RegistryError::Refused {
                who,
                message: e.to_string(),
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Init, Network};
    use crate::plugin::{task_loss, Hybrid, HybridInputs, PluginContext, PluginError};

    crate::plugin_options! {
        struct Count {
            /// count
            #[schemars(range(max = 10))]
            n: u32,
        }
    }
    impl Default for Count {
        fn default() -> Self {
            Count { n: 2 }
        }
    }
    impl crate::plugin::PluginOptions for Count {}

    crate::plugin_options! {
        #[derive(Default)]
        struct Keep {
            /// keep glue
            keep: bool,
        }
    }
    impl crate::plugin::PluginOptions for Keep {}

    struct S(&'static str, OptionSet);
    impl IncubationStrategy for S {
        fn name(&self) -> &str {
            self.0
        }
        fn options(&self) -> OptionSet {
            self.1.clone()
        }
        fn hybrid(&self, _: &PluginContext, i: HybridInputs) -> Result<Hybrid, PluginError> {
            Ok(Hybrid::new(i.unit, 0..1, task_loss()))
        }
    }
    struct M;
    impl MetaDesign for M {
        fn name(&self) -> &str {
            "m"
        }
        fn build(&self, _: &PluginContext, _: &mut Init) -> Result<Network, PluginError> {
            Ok(Network { parts: Vec::new() })
        }
    }
    struct A;
    impl AssemblyRule for A {
        fn name(&self) -> &str {
            "a"
        }
        fn options(&self) -> OptionSet {
            OptionSet::of::<Keep>()
        }
        fn assemble(
            &self,
            _: &PluginContext,
            u: Vec<Network>,
            _: Network,
        ) -> Result<Network, PluginError> {
            Ok(u.into_iter().next().unwrap())
        }
    }

    fn registry() -> Registry {
        let mut r = Registrar::new(Origin::BuiltIn, "1");
        r.add_strategy(Arc::new(S("s", OptionSet::of::<Count>())));
        r.add_meta_design(Arc::new(M));
        r.add_assembly(Arc::new(A));
        let mut reg = Registry::empty(false);
        reg.add(r).unwrap();
        reg
    }

    #[test]
    fn errors_are_values_a_caller_can_match() {
        let mut reg = registry();
        let mut again = Registrar::new(Origin::Library("/x.so".into()), "2");
        again.add_strategy(Arc::new(S("s", OptionSet::none())));
        again.add_strategy(Arc::new(S("t", OptionSet::none())));
        assert_eq!(
            reg.add(again),
            Err(RegistryError::Taken {
                clashes: vec![Clash {
                    kind: Kind::Strategy,
                    name: "s".into(),
                    taken_by: Origin::BuiltIn
                }]
            })
        );
        assert!(
            reg.strategy("t").is_err(),
            "a refused registrar adds nothing"
        );
        match reg.assembly("stacked") {
            Err(RegistryError::Unknown {
                kind: Kind::Assembly,
                registered,
                ..
            }) => assert_eq!(registered, ["a"]),
            other => panic!("{:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn options_are_checked_against_every_selected_plugin() {
        let reg = registry();
        let mut sel = PluginSection {
            strategy: "s".into(),
            meta_design: "m".into(),
            assembly: "a".into(),
            ..PluginSection::default()
        };
        sel.options.insert("n".into(), toml::Value::Integer(3));
        sel.options
            .insert("keep".into(), toml::Value::Boolean(true));
        assert_eq!(reg.check_selection(&sel), Ok(()));
        sel.options.insert("n".into(), toml::Value::Float(2.5));
        assert!(matches!(
            reg.check_selection(&sel),
            Err(RegistryError::OptionType { ref key, want: super::super::OptionKind::Int, .. }) if key == "n"
        ));
        sel.options.insert("n".into(), toml::Value::Integer(11));
        let e = reg.check_selection(&sel).unwrap_err();
        assert!(
            matches!(e, RegistryError::OptionValue { ref key, .. } if key == "n"),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            "plugins.options.n = 11 is out of range: it must be >= 0 and <= 10 (n (integer, >= 0 and <= 10, default 2): count)"
        );
        sel.options.insert("keep".into(), toml::Value::Integer(1));
        sel.options.remove("n");
        assert!(matches!(
            reg.check_selection(&sel),
            Err(RegistryError::OptionType { ref key, .. }) if key == "keep"
        ));
        sel.options
            .insert("keep".into(), toml::Value::Boolean(true));
        sel.options.insert("nn".into(), toml::Value::Integer(1));
        let e = reg.check_selection(&sel).unwrap_err();
        assert!(
            matches!(e, RegistryError::UnknownOption { ref key, ref offered } if key == "nn" && offered.len() == 2),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains("n (integer, >= 0 and <= 10, default 2): count [strategy s]"),
            "{e}"
        );
    }
}

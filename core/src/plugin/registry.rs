//! Plugins by name, as timm registers models: configs say `strategy = "deep-incubation"`.
//! Built-ins and libraries register the same way, through a [`Registrar`].

use super::{AssemblyRule, IncubationStrategy, MetaDesign};
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

struct Entry<T: ?Sized> {
    plugin: Arc<T>,
    origin: Origin,
    version: String,
}

#[derive(Default)]
pub struct Registry {
    strategies: BTreeMap<String, Entry<dyn IncubationStrategy>>,
    meta_designs: BTreeMap<String, Entry<dyn MetaDesign>>,
    assemblies: BTreeMap<String, Entry<dyn AssemblyRule>>,
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
}

fn lookup<'a, T: ?Sized>(
    map: &'a BTreeMap<String, Entry<T>>,
    kind: &str,
    key: &str,
    name: &str,
    builtins_off: bool,
) -> Result<Arc<T>, String> {
    map.get(name).map(|e| e.plugin.clone()).ok_or_else(|| {
        let known: Vec<&str> = map.keys().map(String::as_str).collect();
        format!(
            "unknown {kind} {name:?} (plugins.{key}); registered: {}{}. Load the library that provides it with plugins.libraries or --plugin",
            if known.is_empty() { "none".to_string() } else { known.join(", ") },
            if builtins_off { " (plugins.builtins = false leaves out the built-in deep-incubation)" } else { "" }
        )
    })
}

/// Adds `items` under their names (after [`conflicts`] found none taken).
fn commit<T: ?Sized>(
    map: &mut BTreeMap<String, Entry<T>>,
    items: Vec<Arc<T>>,
    name_of: impl Fn(&T) -> String,
    origin: &Origin,
    version: &str,
) {
    for plugin in items {
        map.insert(
            name_of(&plugin),
            Entry {
                plugin,
                origin: origin.clone(),
                version: version.into(),
            },
        );
    }
}

fn conflicts<T: ?Sized>(
    map: &BTreeMap<String, Entry<T>>,
    kind: &str,
    items: &[Arc<T>],
    name_of: impl Fn(&T) -> String,
) -> Vec<String> {
    items
        .iter()
        .filter_map(|p| {
            let name = name_of(p);
            map.get(&name)
                .map(|e| format!("{kind} {name:?} is already registered ({})", e.origin))
        })
        .collect()
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
    pub fn add(&mut self, r: Registrar) -> Result<(), String> {
        let mut clashes = conflicts(&self.strategies, "strategy", &r.strategies, |p| {
            p.name().into()
        });
        clashes.extend(conflicts(
            &self.meta_designs,
            "meta-design",
            &r.meta_designs,
            |p| p.name().into(),
        ));
        clashes.extend(conflicts(
            &self.assemblies,
            "assembly",
            &r.assemblies,
            |p| p.name().into(),
        ));
        if !clashes.is_empty() {
            return Err(format!(
                "{}; rename the plugin's items or load only one of them (plugins.builtins = false leaves the built-ins out)",
                clashes.join("; ")
            ));
        }
        let (o, v) = (&r.origin, r.version.as_str());
        commit(
            &mut self.strategies,
            r.strategies,
            |p| p.name().into(),
            o,
            v,
        );
        commit(
            &mut self.meta_designs,
            r.meta_designs,
            |p| p.name().into(),
            o,
            v,
        );
        commit(
            &mut self.assemblies,
            r.assemblies,
            |p| p.name().into(),
            o,
            v,
        );
        Ok(())
    }

    pub fn strategy(&self, name: &str) -> Result<Arc<dyn IncubationStrategy>, String> {
        lookup(
            &self.strategies,
            "incubation strategy",
            "strategy",
            name,
            self.builtins_off,
        )
    }
    pub fn meta_design(&self, name: &str) -> Result<Arc<dyn MetaDesign>, String> {
        lookup(
            &self.meta_designs,
            "meta-model design",
            "meta_design",
            name,
            self.builtins_off,
        )
    }
    pub fn assembly(&self, name: &str) -> Result<Arc<dyn AssemblyRule>, String> {
        lookup(
            &self.assemblies,
            "assembly rule",
            "assembly",
            name,
            self.builtins_off,
        )
    }

    pub fn list(&self) -> Vec<Listing> {
        let row = |kind, name: &String, origin: &Origin, version: &String| Listing {
            kind,
            name: name.clone(),
            origin: origin.clone(),
            version: version.clone(),
        };
        let mut out = Vec::new();
        out.extend(
            self.strategies
                .iter()
                .map(|(n, e)| row("strategy", n, &e.origin, &e.version)),
        );
        out.extend(
            self.meta_designs
                .iter()
                .map(|(n, e)| row("meta-design", n, &e.origin, &e.version)),
        );
        out.extend(
            self.assemblies
                .iter()
                .map(|(n, e)| row("assembly", n, &e.origin, &e.version)),
        );
        out
    }
}

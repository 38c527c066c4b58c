//! Plugins by name, as timm registers models: configs say `strategy = "deep-incubation"`.

use super::{AssemblyRule, IncubationStrategy, MetaDesign};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Where a registered plugin came from.
#[derive(Clone, Debug, PartialEq)]
pub enum Origin {
    BuiltIn,
    Library(PathBuf),
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
) -> Result<Arc<T>, String> {
    map.get(name).map(|e| e.plugin.clone()).ok_or_else(|| {
        let known: Vec<&str> = map.keys().map(String::as_str).collect();
        format!(
            "unknown {kind} {name:?} (plugins.{key}); registered: {}",
            known.join(", ")
        )
    })
}

impl Registry {
    pub fn add_strategy(&mut self, p: Arc<dyn IncubationStrategy>, origin: Origin, version: &str) {
        self.strategies.insert(
            p.name().to_string(),
            Entry {
                plugin: p,
                origin,
                version: version.into(),
            },
        );
    }
    pub fn add_meta_design(&mut self, p: Arc<dyn MetaDesign>, origin: Origin, version: &str) {
        self.meta_designs.insert(
            p.name().to_string(),
            Entry {
                plugin: p,
                origin,
                version: version.into(),
            },
        );
    }
    pub fn add_assembly(&mut self, p: Arc<dyn AssemblyRule>, origin: Origin, version: &str) {
        self.assemblies.insert(
            p.name().to_string(),
            Entry {
                plugin: p,
                origin,
                version: version.into(),
            },
        );
    }

    pub fn strategy(&self, name: &str) -> Result<Arc<dyn IncubationStrategy>, String> {
        lookup(&self.strategies, "incubation strategy", "strategy", name)
    }
    pub fn meta_design(&self, name: &str) -> Result<Arc<dyn MetaDesign>, String> {
        lookup(&self.meta_designs, "meta-model design", "meta_design", name)
    }
    pub fn assembly(&self, name: &str) -> Result<Arc<dyn AssemblyRule>, String> {
        lookup(&self.assemblies, "assembly rule", "assembly", name)
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

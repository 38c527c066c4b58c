//! Networks a loss runs beside a hybrid's path: an auxiliary classifier trained with the unit
//! (DGL, InfoPro), a decoder, a frozen reference layer, a teacher. They are part of what a
//! stage trains (their parameters are listed under `aux.{name}.`), and the compute of every
//! pass through them is counted, so a strategy that adds passes pays for them in the stage's
//! GFLOP.

use super::block::Mode;
use super::network::{logits, Network};
use super::params::{HasParams, ParamMut, ParamRef};
use super::part::Traced;
use crate::device::{Act, Rows};
use dfdx::prelude::*;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Whether the optimizer updates an extra network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Trained together with the unit (an auxiliary head). Saved beside the module as
    /// `incubate-i/extras.safetensors`; never part of the assembled model.
    Trained,
    /// Never updated (a teacher, a reference layer); gradients may still pass through it.
    Frozen,
}

struct Extra {
    name: String,
    net: Network,
    role: Role,
    /// Forward FLOPs per sample by input `(tokens, width)`, measured once per shape.
    flops: Mutex<BTreeMap<(usize, usize), f64>>,
}

/// The extra networks of a hybrid, by name.
#[derive(Default)]
pub struct Extras {
    items: Vec<Extra>,
    /// FLOPs spent in them since the last [`Extras::take_flops`].
    spent: Mutex<f64>,
}

impl Extras {
    pub fn none() -> Extras {
        Extras::default()
    }

    /// Adds `net` under `name` (letters, digits, `-` and `_`; unique).
    pub fn add(&mut self, name: &str, net: Network, role: Role) -> anyhow::Result<()> {
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            anyhow::bail!("extra network name {name:?}: use letters, digits, '-' and '_' only");
        }
        if self.items.iter().any(|e| e.name == name) {
            anyhow::bail!("two extra networks are named {name:?}; give each its own name");
        }
        self.items.push(Extra {
            name: name.to_string(),
            net,
            role,
            flops: Mutex::new(BTreeMap::new()),
        });
        Ok(())
    }

    pub fn names(&self) -> Vec<&str> {
        self.items.iter().map(|e| e.name.as_str()).collect()
    }

    fn find(&self, name: &str) -> &Extra {
        self.items.iter().find(|e| e.name == name).unwrap_or_else(|| {
            panic!(
                "the loss ran the extra network {name:?}, but the hybrid has only {:?}; add it to Hybrid::extras",
                self.names()
            )
        })
    }

    /// The network under `name` (e.g. to inspect it in a test).
    pub fn get(&self, name: &str) -> Option<&Network> {
        self.items.iter().find(|e| e.name == name).map(|e| &e.net)
    }

    pub fn role(&self, name: &str) -> Option<Role> {
        self.items.iter().find(|e| e.name == name).map(|e| e.role)
    }

    /// Runs `name` on a traced activation: gradients reach `x` (and the extra's parameters,
    /// which the optimizer updates if it is [`Role::Trained`]). Counted as forward + backward.
    pub fn run(&self, name: &str, x: Act<Traced>) -> Act<Traced> {
        let extra = self.find(name);
        self.count(extra, x.shape(), 3.0);
        extra.net.run_traced(x, &mut Mode::eval())
    }

    /// Runs `name` on an activation without gradients (a teacher's module). Counted as forward.
    pub fn run_plain(&self, name: &str, x: Act<NoneTape>) -> Act<NoneTape> {
        let extra = self.find(name);
        self.count(extra, x.shape(), 1.0);
        extra.net.run_plain(x, &mut Mode::eval())
    }

    /// The logits of `name`, a whole network from patches to one class token, without
    /// gradients (a teacher model or a teacher hybrid).
    pub fn predict(&self, name: &str, patches: Act<NoneTape>) -> Rows<NoneTape> {
        logits(self.run_plain(name, patches))
    }

    fn count(&self, extra: &Extra, shape: &(usize, usize, usize), passes: f64) {
        let (b, t, w) = *shape;
        let per_sample = *extra
            .flops
            .lock()
            .expect("no panics while holding it")
            .entry((t, w))
            .or_insert_with(|| extra.net.flops_on(t, w));
        *self.spent.lock().expect("no panics while holding it") += passes * per_sample * b as f64;
    }

    /// FLOPs spent in extra networks since the last call.
    pub fn take_flops(&self) -> f64 {
        std::mem::take(&mut *self.spent.lock().expect("no panics while holding it"))
    }

    /// Parameter names of the trained extras (as [`HasParams`] lists them).
    pub fn trained_param_names(&self) -> Vec<String> {
        self.items
            .iter()
            .filter(|e| e.role == Role::Trained)
            .flat_map(|e| self.param_names(&e.name))
            .collect()
    }

    /// Parameter names of the extra `name` (`aux.{name}.…`); none if there is no such extra.
    pub fn param_names(&self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(e) = self.items.iter().find(|e| e.name == name) {
            e.net.params(&format!("aux.{}.", e.name), &mut out);
        }
        out.into_iter().map(|(n, _)| n).collect()
    }
}

impl HasParams for Extras {
    fn params<'a>(&'a self, prefix: &str, out: &mut Vec<(String, ParamRef<'a>)>) {
        for e in &self.items {
            e.net.params(&format!("{prefix}aux.{}.", e.name), out);
        }
    }
    fn params_mut<'a>(&'a mut self, prefix: &str, out: &mut Vec<(String, ParamMut<'a>)>) {
        for e in &mut self.items {
            e.net.params_mut(&format!("{prefix}aux.{}.", e.name), out);
        }
    }
}

/// A network and the extras trained beside it: what the optimizer and the resumable state see.
pub struct WithExtras<'m> {
    pub net: &'m mut Network,
    pub extras: &'m mut Extras,
}

impl HasParams for WithExtras<'_> {
    fn params<'a>(&'a self, prefix: &str, out: &mut Vec<(String, ParamRef<'a>)>) {
        self.net.params(prefix, out);
        self.extras.params(prefix, out);
    }
    fn params_mut<'a>(&'a mut self, prefix: &str, out: &mut Vec<(String, ParamMut<'a>)>) {
        self.net.params_mut(prefix, out);
        self.extras.params_mut(prefix, out);
    }
}

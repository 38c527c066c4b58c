//! Parameters addressed by path names (`stem.pos_embed`, `blocks.3.attn.qkv.weight`,
//! `head.weight`), the way splitting and assembling modules needs them.

use crate::device::{Matrix, Vector};
use dfdx::prelude::*;

/// A borrowed parameter of either rank. Every ViT parameter is a vector or a matrix.
pub enum ParamRef<'a> {
    Vector(&'a Vector),
    Matrix(&'a Matrix),
}

pub enum ParamMut<'a> {
    Vector(&'a mut Vector),
    Matrix(&'a mut Matrix),
}

impl ParamRef<'_> {
    pub fn shape(&self) -> Vec<usize> {
        match self {
            ParamRef::Vector(t) => vec![t.shape().0],
            ParamRef::Matrix(t) => vec![t.shape().0, t.shape().1],
        }
    }
    pub fn numel(&self) -> usize {
        self.shape().iter().product()
    }
    pub fn to_vec(&self) -> Vec<f32> {
        match self {
            ParamRef::Vector(t) => t.as_vec(),
            ParamRef::Matrix(t) => t.as_vec(),
        }
    }
}

impl ParamMut<'_> {
    pub fn as_ref(&self) -> ParamRef<'_> {
        match self {
            ParamMut::Vector(t) => ParamRef::Vector(t),
            ParamMut::Matrix(t) => ParamRef::Matrix(t),
        }
    }
}

/// Anything that owns parameters lists them under a prefix (`"blocks.3."`).
pub trait HasParams {
    fn params<'a>(&'a self, prefix: &str, out: &mut Vec<(String, ParamRef<'a>)>);
    fn params_mut<'a>(&'a mut self, prefix: &str, out: &mut Vec<(String, ParamMut<'a>)>);

    fn named_params(&self) -> Vec<(String, ParamRef<'_>)> {
        let mut out = Vec::new();
        self.params("", &mut out);
        out
    }
    fn named_params_mut(&mut self) -> Vec<(String, ParamMut<'_>)> {
        let mut out = Vec::new();
        self.params_mut("", &mut out);
        out
    }
    fn num_params(&self) -> usize {
        self.named_params().iter().map(|(_, p)| p.numel()).sum()
    }
}

/// Lists named fields of a struct as parameters, with or without a nested prefix.
/// `params!(self, prefix, out; vectors: [...], matrices: [...], children: [...])`.
#[macro_export]
macro_rules! impl_params {
    ($ty:ty { $(vec $v:ident,)* $(mat $m:ident,)* $(opt_vec $ov:ident,)* $(child $c:ident,)* }) => {
        impl $crate::model::params::HasParams for $ty {
            fn params<'a>(&'a self, prefix: &str, out: &mut Vec<(String, $crate::model::params::ParamRef<'a>)>) {
                $(out.push((format!("{prefix}{}", stringify!($v)), $crate::model::params::ParamRef::Vector(&self.$v)));)*
                $(out.push((format!("{prefix}{}", stringify!($m)), $crate::model::params::ParamRef::Matrix(&self.$m)));)*
                $(if let Some(t) = &self.$ov { out.push((format!("{prefix}{}", stringify!($ov)), $crate::model::params::ParamRef::Vector(t))); })*
                $(self.$c.params(&format!("{prefix}{}.", stringify!($c)), out);)*
            }
            fn params_mut<'a>(&'a mut self, prefix: &str, out: &mut Vec<(String, $crate::model::params::ParamMut<'a>)>) {
                $(out.push((format!("{prefix}{}", stringify!($v)), $crate::model::params::ParamMut::Vector(&mut self.$v)));)*
                $(out.push((format!("{prefix}{}", stringify!($m)), $crate::model::params::ParamMut::Matrix(&mut self.$m)));)*
                $(if let Some(t) = &mut self.$ov { out.push((format!("{prefix}{}", stringify!($ov)), $crate::model::params::ParamMut::Vector(t))); })*
                $(self.$c.params_mut(&format!("{prefix}{}.", stringify!($c)), out);)*
            }
        }
    };
}

/// Whether AdamW should decay this parameter: the DeiT recipe exempts biases, 1-D parameters
/// (norms), the position embedding and the class token.
pub fn decays(name: &str, shape: &[usize]) -> bool {
    let leaf = name.rsplit('.').next().unwrap_or(name);
    shape.len() > 1 && leaf != "bias" && leaf != "pos_embed" && leaf != "cls_token"
}

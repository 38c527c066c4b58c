//! Linear and LayerNorm on run-time dimensions, from dfdx tensor ops.

use super::init::Init;
use crate::device::{Matrix, Rows, Vector};
use crate::impl_params;
use dfdx::prelude::*;

use crate::device::Dev;

/// `y = x W^T + b`, with `W` stored (out, in) as in PyTorch so checkpoints map one to one.
pub struct Linear {
    pub weight: Matrix,
    pub bias: Option<Vector>,
}
impl_params!(Linear { mat weight, opt_vec bias, });

impl Linear {
    pub fn new(init: &mut Init, inp: usize, out: usize, bias: bool) -> Linear {
        let w = init.trunc_normal(inp * out, 0.02);
        Linear {
            weight: init.matrix(out, inp, w),
            bias: bias.then(|| init.filled(out, 0.0)),
        }
    }

    pub fn out_features(&self) -> usize {
        self.weight.shape().0
    }

    pub fn forward<T: Tape<f32, Dev>>(&self, x: Rows<T>) -> Rows<T> {
        let y = x.matmul(self.weight.retaped::<T>().permute::<_, Axes2<1, 0>>());
        match &self.bias {
            Some(b) => crate::ops::bias::add_bias(y, b),
            None => y,
        }
    }
}

/// LayerNorm over the last axis with affine weight and bias.
pub struct LayerNorm {
    pub weight: Vector,
    pub bias: Vector,
    pub eps: f64,
}
impl_params!(LayerNorm { vec weight, vec bias, });

impl LayerNorm {
    pub fn new(init: &mut Init, dim: usize, eps: f64) -> LayerNorm {
        LayerNorm {
            weight: init.filled(dim, 1.0),
            bias: init.filled(dim, 0.0),
            eps,
        }
    }

    pub fn forward<T: Tape<f32, Dev>>(&self, x: Rows<T>) -> Rows<T> {
        use crate::ops::bias::{add_bias, scale_columns};
        add_bias(
            scale_columns(x.normalize::<Axis<1>>(self.eps), &self.weight),
            &self.bias,
        )
    }
}

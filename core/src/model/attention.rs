//! Multi-head self-attention (timm's `Attention`: one fused qkv projection, scaled dot
//! product, softmax, output projection), on run-time dimensions.

use super::init::Init;
use super::layers::Linear;
use crate::device::{Act, Dev};
use crate::impl_params;
use dfdx::prelude::*;

pub struct Attention {
    pub qkv: Linear,
    pub proj: Linear,
    pub num_heads: usize,
}
impl_params!(Attention { child qkv, child proj, });

impl Attention {
    pub fn new(init: &mut Init, dim: usize, num_heads: usize, qkv_bias: bool) -> Attention {
        Attention {
            qkv: Linear::new(init, dim, 3 * dim, qkv_bias),
            proj: Linear::new(init, dim, dim, true),
            num_heads,
        }
    }

    pub fn forward<T: Tape<f32, Dev>>(&self, x: Act<T>) -> Act<T> {
        let (b, t, d) = *x.shape();
        let h = self.num_heads;
        let hd = d / h;
        // (b*t, 3d) -> (3, b, h, t, hd) -> (3*b*h, t, hd): q, k and v are three slices of one tensor.
        use crate::ops::profile::span;
        let qkv = span("attention qkv", x.reshape_like(&(b * t, d)), |x| {
            self.qkv.forward(x)
        });
        let qkv = span("attention head split", qkv, |qkv| {
            qkv.reshape_like(&(b, t, 3, h, hd))
                .permute::<_, Axes5<2, 0, 3, 1, 4>>()
                .reshape_like(&(3 * b * h, t, hd))
        });
        let out = span("attention scores + softmax + values", qkv, |qkv| {
            let q = qkv.retaped::<T>().slice((0..b * h, .., ..));
            let v = qkv.retaped::<T>().slice((2 * b * h..3 * b * h, .., ..));
            let k = qkv
                .slice((b * h..2 * b * h, .., ..))
                .permute::<_, Axes3<0, 2, 1>>();
            let scores = q.matmul(k) * (1.0 / (hd as f32).sqrt());
            scores.softmax::<Axis<2>>().matmul(v)
        });
        let out = span("attention head merge", out, |out| {
            out.reshape_like(&(b, h, t, hd))
                .permute::<_, Axes4<0, 2, 1, 3>>()
                .reshape_like(&(b * t, d))
        });
        let out = span("attention proj", out, |out| self.proj.forward(out));
        out.reshape_like(&(b, t, d))
    }
}

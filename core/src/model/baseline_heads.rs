//! The module-wise baselines' auxiliary networks at their authors' depth, in a form for
//! tokens: DGL's `mlp-sr` classifier and InfoPro's `1c2f` head. Their convolutions become the
//! same maps per token (a 1x1 convolution is a Linear on every token; InfoPro's 3x3 stride-2
//! convolution a Linear to twice the width), BatchNorm becomes LayerNorm on each token or
//! vector (a ViT trains without batch statistics), ReLU stays. And a stop-gradient linear
//! probe, which reads a module's features without teaching it anything.

use super::block::Mode;
use super::init::Init;
use super::layers::{LayerNorm, Linear};
use super::params::{HasParams, ParamMut, ParamRef};
use super::part::Layer;
use crate::device::{tensor_from_slice, Act, Dev, Rows};
use dfdx::prelude::*;

/// Linear, LayerNorm, ReLU: a convolution (or Linear) with BatchNorm and ReLU after it.
pub struct LinearNormRelu {
    pub lin: Linear,
    pub norm: LayerNorm,
}
crate::impl_params!(LinearNormRelu { child lin, child norm, });

impl LinearNormRelu {
    fn new(init: &mut Init, inp: usize, out: usize, bias: bool, eps: f64) -> Self {
        LinearNormRelu {
            lin: Linear::new(init, inp, out, bias),
            norm: LayerNorm::new(init, out, eps),
        }
    }

    fn forward<T: Tape<f32, Dev>>(&self, x: Rows<T>) -> Rows<T> {
        self.norm.forward(self.lin.forward(x)).relu()
    }

    /// Multiply-adds of the Linear, twice (FLOPs per row).
    fn flops(&self) -> f64 {
        let (o, i) = self.lin.weight.shape();
        2.0 * (o * i) as f64
    }
}

fn list_params<'a>(
    layers: &'a [LinearNormRelu],
    prefix: &str,
    out: &mut Vec<(String, ParamRef<'a>)>,
) {
    for (j, l) in layers.iter().enumerate() {
        l.params(&format!("{prefix}{j}."), out);
    }
}

fn list_params_mut<'a>(
    layers: &'a mut [LinearNormRelu],
    prefix: &str,
    out: &mut Vec<(String, ParamMut<'a>)>,
) {
    for (j, l) in layers.iter_mut().enumerate() {
        l.params_mut(&format!("{prefix}{j}."), out);
    }
}

/// PyTorch's `AdaptiveAvgPool2d` from a `from` x `from` grid to `to` x `to`, as a matrix
/// (to², from²): bin i of an axis averages `floor(i * from / to) .. ceil((i + 1) * from / to)`.
pub fn adaptive_pool_matrix(from: usize, to: usize) -> Vec<f32> {
    let bins = |i: usize| (i * from / to, ((i + 1) * from).div_ceil(to));
    let mut m = vec![0f32; to * to * from * from];
    for oy in 0..to {
        for ox in 0..to {
            let ((y0, y1), (x0, x1)) = (bins(oy), bins(ox));
            let w = 1.0 / ((y1 - y0) * (x1 - x0)) as f32;
            for y in y0..y1 {
                for x in x0..x1 {
                    m[(oy * to + ox) * from * from + y * from + x] = w;
                }
            }
        }
    }
    m
}

/// Tokens `(b, side², d)` on a square grid, average-pooled to a `to` x `to` grid: (b, to², d).
fn pool_grid<T: Tape<f32, Dev>>(x: Act<T>, to: usize) -> Act<T> {
    let (b, n, d) = *x.shape();
    let side = (n as f64).sqrt().round() as usize;
    assert_eq!(side * side, n, "a square grid of patch tokens");
    let dev = x.device().clone();
    let pool = tensor_from_slice(&dev, &adaptive_pool_matrix(side, to), (to * to, n));
    // (b, d, n) x (n, m): the traced side on the left, where dfdx keeps the tape
    x.permute::<_, Axes3<0, 2, 1>>()
        .matmul(pool.permute::<_, Axes2<1, 0>>())
        .permute::<_, Axes3<0, 2, 1>>()
        .reshape_like(&(b, to * to, d))
}

/// DGL's `mlp-sr` auxiliary classifier (`auxillary_classifier2`, nlin 3, mlp 3): the patch
/// grid pooled to ceil(side / 4)², three 1x1 convolutions with BatchNorm and ReLU, pooled to
/// 2x2 and flattened (4 d), three Linear + BatchNorm + ReLU, a Linear to the classes. Tokens
/// `(b, 1 + side², d)` to one token of logits `(b, 1, c)`.
pub struct DglHead {
    pub convs: Vec<LinearNormRelu>,
    pub mlp: Vec<LinearNormRelu>,
    pub fc: Linear,
    /// The patch grid's side.
    pub side: usize,
}

impl DglHead {
    pub fn new(init: &mut Init, width: usize, side: usize, classes: usize, eps: f64) -> Self {
        DglHead {
            convs: (0..3)
                .map(|_| LinearNormRelu::new(init, width, width, true, eps))
                .collect(),
            mlp: (0..3)
                .map(|_| LinearNormRelu::new(init, 4 * width, 4 * width, true, eps))
                .collect(),
            fc: Linear::new(init, 4 * width, classes, true),
            side,
        }
    }

    fn grid(&self) -> usize {
        self.side.div_ceil(4)
    }
}

impl HasParams for DglHead {
    fn params<'a>(&'a self, prefix: &str, out: &mut Vec<(String, ParamRef<'a>)>) {
        list_params(&self.convs, &format!("{prefix}convs."), out);
        list_params(&self.mlp, &format!("{prefix}mlp."), out);
        self.fc.params(&format!("{prefix}fc."), out);
    }
    fn params_mut<'a>(&'a mut self, prefix: &str, out: &mut Vec<(String, ParamMut<'a>)>) {
        list_params_mut(&mut self.convs, &format!("{prefix}convs."), out);
        list_params_mut(&mut self.mlp, &format!("{prefix}mlp."), out);
        self.fc.params_mut(&format!("{prefix}fc."), out);
    }
}

impl Layer for DglHead {
    fn forward<T: Tape<f32, Dev>>(&self, x: Act<T>, _rates: &[f64], _mode: &mut Mode) -> Act<T> {
        let (b, t, d) = *x.shape();
        let g = self.grid();
        // the patch tokens (the class token is no part of the feature map)
        let patches = x.slice((.., 1..t, ..));
        let mut y = pool_grid(patches, g).reshape_like(&(b * g * g, d));
        for c in &self.convs {
            y = c.forward(y);
        }
        let y = pool_grid(y.reshape_like(&(b, g * g, d)), 2);
        let mut v = y.reshape_like(&(b, 4 * d));
        for l in &self.mlp {
            v = l.forward(v);
        }
        let logits = self.fc.forward(v);
        let c = logits.shape().1;
        logits.reshape_like(&(b, 1, c))
    }

    fn flops(&self, tokens: usize, width: usize) -> f64 {
        let g = self.grid();
        let pools = 2.0 * ((tokens - 1) * g * g + g * g * 4) as f64 * width as f64;
        let convs: f64 = self.convs.iter().map(|c| c.flops()).sum::<f64>() * (g * g) as f64;
        let mlp: f64 = self.mlp.iter().map(|l| l.flops()).sum();
        let (o, i) = self.fc.weight.shape();
        pools + convs + mlp + 2.0 * (o * i) as f64
    }
}

/// InfoPro's `1c2f` head: a convolution to twice the width with BatchNorm and ReLU (per token
/// here), global average pooling, Linear to `feature_dim`, ReLU, Linear to `out` (128
/// features for the contrastive loss, or the classes). Tokens `(b, t, d)` to `(b, 1, out)`.
pub struct InfoProHead {
    pub conv: LinearNormRelu,
    pub fc1: Linear,
    pub fc2: Linear,
}
crate::impl_params!(InfoProHead { child conv, child fc1, child fc2, });

impl InfoProHead {
    pub fn new(init: &mut Init, width: usize, feature_dim: usize, out: usize, eps: f64) -> Self {
        InfoProHead {
            // the reference's convolution has no bias (BatchNorm follows)
            conv: LinearNormRelu::new(init, width, 2 * width, false, eps),
            fc1: Linear::new(init, 2 * width, feature_dim, true),
            fc2: Linear::new(init, feature_dim, out, true),
        }
    }
}

impl Layer for InfoProHead {
    fn forward<T: Tape<f32, Dev>>(&self, x: Act<T>, _rates: &[f64], _mode: &mut Mode) -> Act<T> {
        let (b, t, d) = *x.shape();
        let y = self.conv.forward(x.reshape_like(&(b * t, d)));
        let w = y.shape().1;
        let pooled = y.reshape_like(&(b, t, w)).mean::<(usize, usize), Axis<1>>();
        let out = self.fc2.forward(self.fc1.forward(pooled).relu());
        let c = out.shape().1;
        out.reshape_like(&(b, 1, c))
    }

    fn flops(&self, tokens: usize, _width: usize) -> f64 {
        let lin = |l: &Linear| {
            let (o, i) = l.weight.shape();
            2.0 * (o * i) as f64
        };
        self.conv.flops() * tokens as f64 + lin(&self.fc1) + lin(&self.fc2)
    }
}

/// A linear probe that learns to read a module's tokens without changing them: LayerNorm,
/// the mean over tokens and a Linear to the classes, behind a stop-gradient (its loss trains
/// it alone). The accuracy a module trained on a contrastive loss reports.
pub struct LinearProbe {
    pub norm: LayerNorm,
    pub fc: Linear,
}
crate::impl_params!(LinearProbe { child norm, child fc, });

impl LinearProbe {
    pub fn new(init: &mut Init, width: usize, classes: usize, eps: f64) -> Self {
        LinearProbe {
            norm: LayerNorm::new(init, width, eps),
            fc: Linear::new(init, width, classes, true),
        }
    }
}

impl Layer for LinearProbe {
    fn forward<T: Tape<f32, Dev>>(&self, x: Act<T>, _rates: &[f64], _mode: &mut Mode) -> Act<T> {
        let (b, t, d) = *x.shape();
        // the value of x with a zero gradient: x * 0 keeps the tape (so the ops before stay
        // recorded for the other losses), an untraced copy of another identity carries the
        // value (a copy with x's own identity would pass x the gradient)
        let (value, tape) = x.split_tape();
        let copy = value.clone() * 1.0;
        let x = value.put_tape(tape) * 0.0 + copy;
        let normed = self.norm.forward(x.reshape_like(&(b * t, d)));
        let pooled = normed
            .reshape_like(&(b, t, d))
            .mean::<(usize, usize), Axis<1>>();
        let logits = self.fc.forward(pooled);
        let c = logits.shape().1;
        logits.reshape_like(&(b, 1, c))
    }

    fn flops(&self, _tokens: usize, width: usize) -> f64 {
        2.0 * (self.fc.weight.shape().0 * width) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adaptive_pooling_bins_are_pytorchs() {
        // 7 -> 2: bins 0..4 and 3..7 (they overlap in PyTorch's rule)
        let m = adaptive_pool_matrix(7, 2);
        let row = |o: usize| &m[o * 49..(o + 1) * 49];
        assert_eq!(row(0).iter().filter(|&&w| w > 0.0).count(), 16);
        assert!((row(0)[0] - 1.0 / 16.0).abs() < 1e-7 && row(0)[3 * 7 + 3] > 0.0);
        assert_eq!(row(0)[4], 0.0);
        assert!(row(3)[3 * 7 + 3] > 0.0 && row(3)[6 * 7 + 6] > 0.0);
        // every output averages: its weights sum to 1
        for o in 0..4 {
            assert!((row(o).iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        // 1 -> 2 repeats the one cell, 4 -> 2 averages 2x2 blocks
        assert_eq!(adaptive_pool_matrix(1, 2), vec![1.0; 4]);
        let m = adaptive_pool_matrix(4, 2);
        assert_eq!(m[0], 0.25);
        assert_eq!(m[5], 0.25);
        assert_eq!(m[2], 0.0);
    }

    #[test]
    fn heads_give_one_token_of_outputs_and_the_probe_passes_no_gradient() {
        let dev = crate::device::new_device(0);
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
        let mut init = Init {
            dev: &dev,
            rng: &mut rng,
        };
        let (b, side, d) = (3, 7, 8);
        let t = 1 + side * side;
        let values: Vec<f32> = (0..b * t * d)
            .map(|k| (k % 13) as f32 / 13.0 - 0.5)
            .collect();
        let x: Act<NoneTape> = tensor_from_slice(&dev, &values, (b, t, d));
        let dgl = DglHead::new(&mut init, d, side, 10, 1e-6);
        let y = Layer::forward(&dgl, x.clone(), &[], &mut Mode::eval());
        assert_eq!(*y.shape(), (b, 1, 10));
        assert!(y.as_vec().iter().all(|v| v.is_finite()));
        let info = InfoProHead::new(&mut init, d, 16, 128, 1e-6);
        assert_eq!(
            *Layer::forward(&info, x.clone(), &[], &mut Mode::eval()).shape(),
            (b, 1, 128)
        );
        // the probe: its own parameters get gradients, its input none
        let probe = LinearProbe::new(&mut init, d, 10, 1e-6);
        let traced = x.leaky_trace();
        let out = Layer::forward(&probe, traced * 2.0, &[], &mut Mode::eval());
        let grads = out.square().sum().backward();
        assert!(grads.get(&x).as_vec().iter().all(|&g| g == 0.0));
        assert!(grads
            .get(&probe.fc.weight)
            .as_vec()
            .iter()
            .any(|&g| g != 0.0));
    }
}

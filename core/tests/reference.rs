//! Our layers compute the same function as straightforward loops over the definitions (the
//! gradient tests only prove gradients consistent with whatever the forward computes).

use dfdx::prelude::*;
use incubator_core::device::new_device;
use incubator_core::model::attention::Attention;
use incubator_core::model::layers::Linear;
use incubator_core::model::Init;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn linear_ref(
    x: &[f32],
    n: usize,
    w: &[f32],
    b: Option<&[f32]>,
    inp: usize,
    out: usize,
) -> Vec<f32> {
    let mut y = vec![0f32; n * out];
    for r in 0..n {
        for o in 0..out {
            let mut s = b.map(|b| b[o]).unwrap_or(0.0);
            for i in 0..inp {
                s += x[r * inp + i] * w[o * inp + i];
            }
            y[r * out + o] = s;
        }
    }
    y
}

fn close(a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-4 + 1e-4 * y.abs(),
            "element {i}: {x} vs {y}"
        );
    }
}

#[test]
fn linear_matches_pytorch_layout() {
    let dev = new_device(0);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let l = Linear::new(
        &mut Init {
            dev: &dev,
            rng: &mut rng,
        },
        5,
        3,
        true,
    );
    let x: Vec<f32> = (0..4 * 5).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let got = l.forward(dev.tensor_from_vec(x.clone(), (4, 5))).as_vec();
    let want = linear_ref(
        &x,
        4,
        &l.weight.as_vec(),
        Some(&l.bias.as_ref().unwrap().as_vec()),
        5,
        3,
    );
    close(&got, &want);
}

#[test]
fn attention_matches_naive_loops() {
    let dev = new_device(0);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let (b, t, d, h) = (3, 5, 8, 2);
    let hd = d / h;
    let attn = Attention::new(
        &mut Init {
            dev: &dev,
            rng: &mut rng,
        },
        d,
        h,
        true,
    );
    let x: Vec<f32> = (0..b * t * d).map(|_| rng.gen_range(-3.0..3.0)).collect();
    let got = attn
        .forward(dev.tensor_from_vec(x.clone(), (b, t, d)))
        .as_vec();

    let wq = attn.qkv.weight.as_vec();
    let bq = attn.qkv.bias.as_ref().unwrap().as_vec();
    let qkv = linear_ref(&x, b * t, &wq, Some(&bq), d, 3 * d);
    let mut out = vec![0f32; b * t * d];
    for bi in 0..b {
        for hi in 0..h {
            let at =
                |s: usize, ti: usize, e: usize| qkv[(bi * t + ti) * 3 * d + s * d + hi * hd + e];
            for i in 0..t {
                let scores: Vec<f32> = (0..t)
                    .map(|j| {
                        (0..hd).map(|e| at(0, i, e) * at(1, j, e)).sum::<f32>() / (hd as f32).sqrt()
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f32::MIN, f32::max);
                let z: f32 = scores.iter().map(|s| (s - m).exp()).sum();
                for e in 0..hd {
                    out[(bi * t + i) * d + hi * hd + e] = (0..t)
                        .map(|j| (scores[j] - m).exp() / z * at(2, j, e))
                        .sum::<f32>();
                }
            }
        }
    }
    let wp = attn.proj.weight.as_vec();
    let bp = attn.proj.bias.as_ref().unwrap().as_vec();
    let _ = &got;
    let want = linear_ref(&out, b * t, &wp, Some(&bp), d, d);
    close(&got, &want);
}

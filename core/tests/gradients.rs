//! Every layer built from dfdx tensor ops agrees with central finite differences of its loss,
//! for every parameter (sampled coordinates) and for its input.

use dfdx::prelude::*;
use incubator_core::device::{new_device, Dev};
use incubator_core::model::attention::Attention;
use incubator_core::model::block::{drop_path_branch, Block};
use incubator_core::model::head::Head;
use incubator_core::model::layers::{LayerNorm, Linear};
use incubator_core::model::stem::Stem;
use incubator_core::model::{HasParams, Init, Mode, Network, ParamMut, ParamRef, VitConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn cfg() -> VitConfig {
    VitConfig {
        image_size: 8,
        channels: 2,
        patch_size: 4,
        embed_dim: 8,
        depth: 2,
        num_heads: 2,
        mlp_ratio: 2.0,
        qkv_bias: true,
        norm_eps: 1e-6,
        num_classes: 3,
    }
}

fn set_param(model: &mut impl HasParams, name: &str, values: Vec<f32>, dev: &Dev) {
    for (n, p) in model.named_params_mut() {
        if n == name {
            match p {
                ParamMut::Vector(t) => *t = dev.tensor_from_vec(values.clone(), *t.shape()),
                ParamMut::Matrix(t) => *t = dev.tensor_from_vec(values.clone(), *t.shape()),
            }
        }
    }
}

fn grad_of(grads: &Gradients<f32, Dev>, p: &ParamRef) -> Vec<f32> {
    match p {
        ParamRef::Vector(t) => grads.get(*t).as_vec(),
        ParamRef::Matrix(t) => grads.get(*t).as_vec(),
    }
}

fn assert_close(what: &str, analytic: f32, numeric: f32) {
    let tol = 2e-3 + 2e-2 * analytic.abs().max(numeric.abs());
    assert!(
        (analytic - numeric).abs() <= tol,
        "{what}: autograd {analytic} vs finite difference {numeric}"
    );
}

/// Compares autograd with central differences on up to 6 coordinates of every parameter.
/// `loss` must compute the same scalar for a traced and an untraced pass.
fn check_params<M: HasParams>(
    model: &mut M,
    dev: &Dev,
    loss: impl Fn(&M, bool) -> (f32, Option<Gradients<f32, Dev>>),
) {
    let (_, grads) = loss(model, true);
    let grads = grads.expect("traced pass returns gradients");
    let names: Vec<(String, Vec<f32>, Vec<f32>)> = model
        .named_params()
        .iter()
        .map(|(n, p)| (n.clone(), p.to_vec(), grad_of(&grads, p)))
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let eps = 1e-2f32;
    for (name, values, analytic) in names {
        for _ in 0..6.min(values.len()) {
            let i = rng.gen_range(0..values.len());
            let mut plus = values.clone();
            plus[i] += eps;
            set_param(model, &name, plus, dev);
            let lp = loss(model, false).0;
            let mut minus = values.clone();
            minus[i] -= eps;
            set_param(model, &name, minus, dev);
            let lm = loss(model, false).0;
            set_param(model, &name, values.clone(), dev);
            assert_close(
                &format!("{name}[{i}]"),
                analytic[i],
                (lp - lm) / (2.0 * eps),
            );
        }
    }
}

/// A smooth scalar of any output: its dot product with fixed random weights.
fn probe<S: Shape, T: Tape<f32, Dev>>(
    out: Tensor<S, f32, Dev, T>,
    dev: &Dev,
) -> Tensor<Rank0, f32, Dev, T> {
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let n = out.shape().num_elements();
    let w: Vec<f32> = (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let w = dev.tensor_from_vec(w, *out.shape());
    (out * w).sum()
}

fn finish<T: Tape<f32, Dev> + 'static>(
    l: Tensor<Rank0, f32, Dev, T>,
) -> (f32, Option<Gradients<f32, Dev>>) {
    let v = l.array();
    // Only the traced type has a tape; backward it through a generic path.
    let any: Box<dyn std::any::Any> = Box::new(l);
    match any.downcast::<Tensor<Rank0, f32, Dev, OwnedTape<f32, Dev>>>() {
        Ok(t) => (v, Some(t.backward())),
        Err(_) => (v, None),
    }
}

fn rows(dev: &Dev, n: usize, d: usize, seed: u64) -> Tensor<(usize, usize), f32, Dev> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    dev.tensor_from_vec(
        (0..n * d).map(|_| rng.gen_range(-1.0..1.0)).collect(),
        (n, d),
    )
}

fn act(
    dev: &Dev,
    b: usize,
    t: usize,
    d: usize,
    seed: u64,
) -> Tensor<(usize, usize, usize), f32, Dev> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    dev.tensor_from_vec(
        (0..b * t * d).map(|_| rng.gen_range(-1.0..1.0)).collect(),
        (b, t, d),
    )
}

#[test]
fn linear_gradients() {
    let dev = new_device(0);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut layer = Linear::new(
        &mut Init {
            dev: &dev,
            rng: &mut rng,
        },
        5,
        4,
        true,
    );
    let x = rows(&dev, 3, 5, 1);
    check_params(&mut layer, &dev, |l, traced| {
        if traced {
            finish(probe(l.forward(x.leaky_trace()), &dev))
        } else {
            finish(probe(l.forward(x.clone()), &dev))
        }
    });
}

#[test]
fn layernorm_gradients_including_input() {
    let dev = new_device(0);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut ln = LayerNorm::new(
        &mut Init {
            dev: &dev,
            rng: &mut rng,
        },
        6,
        1e-6,
    );
    // non-trivial affine parameters
    set_param(&mut ln, "weight", vec![0.5, 1.5, -1.0, 2.0, 1.0, 0.7], &dev);
    set_param(&mut ln, "bias", vec![0.1, -0.2, 0.3, 0.0, 0.5, -0.4], &dev);
    let x = rows(&dev, 4, 6, 2);
    check_params(&mut ln, &dev, |l, traced| {
        if traced {
            finish(probe(l.forward(x.leaky_trace()), &dev))
        } else {
            finish(probe(l.forward(x.clone()), &dev))
        }
    });
    // input gradient
    let g = probe(ln.forward(x.leaky_trace()), &dev)
        .backward()
        .get(&x)
        .as_vec();
    let values = x.as_vec();
    for i in [0, 7, 13, 23] {
        let mut p = values.clone();
        p[i] += 1e-2;
        let lp = probe(ln.forward(dev.tensor_from_vec(p, (4, 6))), &dev).array();
        let mut m = values.clone();
        m[i] -= 1e-2;
        let lm = probe(ln.forward(dev.tensor_from_vec(m, (4, 6))), &dev).array();
        assert_close(&format!("x[{i}]"), g[i], (lp - lm) / 2e-2);
    }
}

#[test]
fn attention_gradients() {
    let dev = new_device(0);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut attn = Attention::new(
        &mut Init {
            dev: &dev,
            rng: &mut rng,
        },
        8,
        2,
        true,
    );
    // larger weights than the 0.02 init so the softmax is far from uniform
    for (name, v) in attn
        .named_params()
        .iter()
        .map(|(n, p)| (n.clone(), p.to_vec()))
        .collect::<Vec<_>>()
    {
        set_param(&mut attn, &name, v.iter().map(|x| x * 25.0).collect(), &dev);
    }
    let x = act(&dev, 2, 5, 8, 3);
    check_params(&mut attn, &dev, |a, traced| {
        if traced {
            finish(probe(a.forward(x.leaky_trace()), &dev))
        } else {
            finish(probe(a.forward(x.clone()), &dev))
        }
    });
}

#[test]
fn block_gradients_with_drop_path_off() {
    let dev = new_device(0);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut block = Block::new(
        &mut Init {
            dev: &dev,
            rng: &mut rng,
        },
        &cfg(),
    );
    for (name, v) in block
        .named_params()
        .iter()
        .map(|(n, p)| (n.clone(), p.to_vec()))
        .collect::<Vec<_>>()
    {
        set_param(&mut block, &name, v.iter().map(|x| x * 5.0).collect(), &dev);
    }
    let x = act(&dev, 2, 5, 8, 4);
    check_params(&mut block, &dev, |b, traced| {
        let mut mode = Mode::eval();
        if traced {
            finish(probe(b.forward(x.leaky_trace(), 0.3, &mut mode), &dev))
        } else {
            finish(probe(b.forward(x.clone(), 0.3, &mut mode), &dev))
        }
    });
}

#[test]
fn drop_path_scales_kept_samples_and_zeroes_dropped_ones() {
    let dev = new_device(0);
    let x = act(&dev, 64, 3, 4, 5);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut mode = Mode {
        train: true,
        rng: Some(&mut rng),
    };
    let out = drop_path_branch(x.leaky_trace(), 0.25, &mut mode);
    let (xv, ov) = (x.as_vec(), out.as_vec());
    let g = probe(out, &dev).backward().get(&x).as_vec();
    let w: Vec<f32> = {
        let mut rng = ChaCha8Rng::seed_from_u64(99);
        (0..xv.len()).map(|_| rng.gen_range(-1.0..1.0)).collect()
    };
    let mut dropped = 0;
    for s in 0..64 {
        let r = s * 12..(s + 1) * 12;
        let kept = ov[r.clone()].iter().any(|v| *v != 0.0);
        dropped += !kept as usize;
        let scale = if kept { 1.0 / 0.75 } else { 0.0 };
        for i in r {
            assert!((ov[i] - xv[i] * scale).abs() < 1e-6);
            assert!(
                (g[i] - w[i] * scale).abs() < 1e-5,
                "gradient follows the mask"
            );
        }
    }
    assert!(
        (5..=30).contains(&dropped),
        "about a quarter of 64 samples dropped, got {dropped}"
    );
    // eval mode: identity
    let same = drop_path_branch(x.clone(), 0.25, &mut Mode::eval());
    assert_eq!(same.as_vec(), xv);
}

#[test]
fn stem_and_head_gradients() {
    let dev = new_device(0);
    let c = cfg();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut stem = Stem::new(
        &mut Init {
            dev: &dev,
            rng: &mut rng,
        },
        &c,
    );
    let patches = act(&dev, 2, c.num_patches(), c.patch_dim(), 6);
    check_params(&mut stem, &dev, |s, traced| {
        if traced {
            finish(probe(s.forward(patches.leaky_trace()), &dev))
        } else {
            finish(probe(s.forward(patches.clone()), &dev))
        }
    });
    let mut head = Head::new(
        &mut Init {
            dev: &dev,
            rng: &mut rng,
        },
        &c,
    );
    let x = act(&dev, 2, c.tokens(), c.embed_dim, 7);
    check_params(&mut head, &dev, |h, traced| {
        if traced {
            finish(probe(h.forward(x.leaky_trace()), &dev))
        } else {
            finish(probe(h.forward(x.clone()), &dev))
        }
    });
}

#[test]
fn whole_network_cross_entropy_gradients() {
    let dev = new_device(0);
    let c = cfg();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut net = Network::vit(
        &mut Init {
            dev: &dev,
            rng: &mut rng,
        },
        &c,
        &[1, 1],
    );
    for (name, v) in net
        .named_params()
        .iter()
        .map(|(n, p)| (n.clone(), p.to_vec()))
        .collect::<Vec<_>>()
    {
        set_param(&mut net, &name, v.iter().map(|x| x * 3.0).collect(), &dev);
    }
    let patches = act(&dev, 3, c.num_patches(), c.patch_dim(), 8);
    let targets = dev.tensor_from_vec(vec![0.8, 0.1, 0.1, 0.1, 0.1, 0.8, 0.2, 0.6, 0.2], (3, 3));
    check_params(&mut net, &dev, |n, traced| {
        let mut mode = Mode::eval();
        if traced {
            let logits = n.forward_traced_from(patches.clone(), 0, 0.0, &mut mode);
            finish(cross_entropy_with_logits_loss(logits, targets.clone()))
        } else {
            let logits = n.forward(patches.clone(), 0.0, &mut mode);
            finish(cross_entropy_with_logits_loss(logits, targets.clone()))
        }
    });
}

#[test]
fn auxiliary_classifier_and_patch_decoder_gradients() {
    use incubator_core::model::aux_heads::{AuxClassifier, PatchDecoder};
    let dev = new_device(0);
    let c = cfg();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut init = Init {
        dev: &dev,
        rng: &mut rng,
    };
    let mut classifier = AuxClassifier::new(&mut init, c.embed_dim, c.num_classes, 2, c.norm_eps);
    let mut decoder = PatchDecoder::new(&mut init, c.embed_dim, c.patch_dim(), c.norm_eps);
    let x = act(&dev, 2, c.tokens(), c.embed_dim, 9);
    check_layer(&mut classifier, &x, &dev);
    check_layer(&mut decoder, &x, &dev);
}

/// [`check_params`] for a block-less layer on tokens `x`.
fn check_layer<L: incubator_core::model::Layer>(
    layer: &mut L,
    x: &Tensor<(usize, usize, usize), f32, Dev>,
    dev: &Dev,
) {
    check_params(layer, dev, |h, traced| {
        let mut mode = Mode::eval();
        if traced {
            finish(probe(h.forward(x.leaky_trace(), &[], &mut mode), dev))
        } else {
            finish(probe(h.forward(x.clone(), &[], &mut mode), dev))
        }
    });
}

/// A loss with a term on a tapped activation (through a trained extra network) and one on the
/// logits, put together as the trainer does it (tape-less inputs, the forward tape merged
/// into the weighted sum): its gradients, for the network's parameters before and after the
/// tap and the extra's, are those of the same scalar computed without taps.
#[test]
fn tapped_loss_terms_have_the_gradients_of_their_sum() {
    use incubator_core::model::aux_heads::AuxClassifier;
    use incubator_core::model::{Extras, Named, Role, WithExtras};
    use incubator_core::train::batch::Batch;
    use incubator_core::train::loss::{LossInputs, LossTerms, Progress};
    let dev = new_device(0);
    let c = cfg();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut init = Init {
        dev: &dev,
        rng: &mut rng,
    };
    let mut net = Network::vit(&mut init, &c, &[1, 1]);
    let head = AuxClassifier::new(&mut init, c.embed_dim, c.num_classes, 1, c.norm_eps);
    let mut extras = Extras::none();
    extras
        .add(
            "aux",
            Network {
                parts: vec![Box::new(Named::new("head", head))],
            },
            Role::Trained,
        )
        .unwrap();
    let patches = act(&dev, 3, c.num_patches(), c.patch_dim(), 8);
    let targets = dev.tensor_from_vec(vec![0.8, 0.1, 0.1, 0.1, 0.1, 0.8, 0.2, 0.6, 0.2], (3, 3));
    let batch = Batch {
        patches: patches.clone(),
        targets: targets.clone(),
        labels: vec![0, 2, 1],
    };
    let progress = Progress {
        epoch: 0,
        step_in_epoch: 0,
        steps_per_epoch: 1,
        epochs: 1,
        total_steps: 1,
    };
    let mut model = WithExtras {
        net: &mut net,
        extras: &mut extras,
    };
    check_params(&mut model, &dev, |m, traced| {
        let mut mode = Mode::eval();
        if traced {
            let (logits, taps) = m
                .net
                .forward_tapped(patches.clone(), 0, 0.0, &mut mode, &[1]);
            let (logits, tape) = logits.split_tape();
            let taps = taps.into_iter().map(|t| t.split_tape().0).collect();
            let x = LossInputs::new(logits, taps, &batch, m.extras, progress);
            let aux = x.extras.run("aux", x.tap(0));
            let terms =
                LossTerms::new()
                    .with("aux", 1.0, probe(aux, &dev))
                    .with("task", 0.5, x.task());
            finish(terms.total(tape).unwrap().loss)
        } else {
            let first = m.net.parts[0].forward_plain(patches.clone(), &[0.0], &mut mode);
            let aux = m.extras.get("aux").unwrap().run_plain(first, &mut mode);
            let logits = m.net.forward(patches.clone(), 0.0, &mut mode);
            let task = cross_entropy_with_logits_loss(logits, targets.clone());
            finish(probe(aux, &dev) + task * 0.5)
        }
    });
}

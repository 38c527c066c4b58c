//! The fused CPU block (`ops::fused_block`) and stem (`ops::fused_stem`) compute what the
//! versions built from dfdx ops compute: same output, same gradients for the input and every
//! parameter (the block with and without drop-path, the stem with and without its bias); and
//! they give bit-identical results whatever the number of threads.
#![cfg(not(feature = "cuda"))]

use dfdx::prelude::*;
use incubator_core::device::{new_device, Act, Dev};
use incubator_core::model::block::{forward_blocks, Block};
use incubator_core::model::stem::Stem;
use incubator_core::model::{HasParams, Init, Mode, ParamRef, VitConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn cfg(qkv_bias: bool) -> VitConfig {
    shaped(24, 3, 4.0, qkv_bias)
}

fn shaped(embed_dim: usize, num_heads: usize, mlp_ratio: f64, qkv_bias: bool) -> VitConfig {
    VitConfig {
        image_size: 8,
        channels: 1,
        patch_size: 4,
        embed_dim,
        depth: 1,
        num_heads,
        mlp_ratio,
        qkv_bias,
        norm_eps: 1e-6,
        num_classes: 3,
    }
}

/// A block with every parameter randomised (not the init's ones and zeros, which would hide
/// mistakes in the affine and bias gradients).
fn block(dev: &Dev, qkv_bias: bool) -> Block {
    block_of(dev, &cfg(qkv_bias))
}

fn block_of(dev: &Dev, cfg: &VitConfig) -> Block {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut b = Block::new(&mut Init { dev, rng: &mut rng }, cfg);
    for (_, p) in b.named_params_mut() {
        match p {
            incubator_core::model::ParamMut::Vector(t) => {
                let v = (0..t.shape().0).map(|_| rng.gen_range(-1.0..1.0)).collect();
                *t = dev.tensor_from_vec(v, *t.shape());
            }
            incubator_core::model::ParamMut::Matrix(t) => {
                let (r, c) = *t.shape();
                let v = (0..r * c).map(|_| rng.gen_range(-0.3..0.3)).collect();
                *t = dev.tensor_from_vec(v, *t.shape());
            }
        }
    }
    b
}

fn input(dev: &Dev) -> Act<NoneTape> {
    input_of(dev, (5, 7, 24))
}

fn input_of(dev: &Dev, (b, t, d): (usize, usize, usize)) -> Act<NoneTape> {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let v = (0..b * t * d).map(|_| rng.gen_range(-2.0..2.0)).collect();
    dev.tensor_from_vec(v, (b, t, d))
}

/// What one pass gives.
type Pass = (Vec<f32>, Vec<f32>, Vec<(String, Vec<f32>)>);

/// The output's values and the gradients of `sum(out * probe)`, for a fixed probe that
/// weights every element differently.
fn probed(out: Act<OwnedTape<f32, Dev>>) -> (Vec<f32>, Gradients<f32, Dev>) {
    let values = out.as_vec();
    let probe: Vec<f32> = (0..values.len())
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    let probe = out.device().tensor_from_vec(probe, *out.shape());
    (values, (out * probe).sum().backward())
}

/// Runs `pass` on a pool of 1, 2 and 3 threads: all three must agree to the bit.
fn same_on_any_number_of_threads(pass: impl Fn() -> Pass + Send + Sync) {
    let on = |threads| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(&pass)
    };
    let one = on(1);
    for threads in [2, 3] {
        let other = on(threads);
        assert!(
            one.0 == other.0 && one.1 == other.1 && one.2 == other.2,
            "{threads} threads differ from 1"
        );
    }
}

/// Output, input gradient and parameter gradients (by name) of `sum(out * probe)`.
fn run(block: &Block, x: &Act<NoneTape>, drop_path: f64, fused: bool) -> Pass {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut mode = Mode {
        train: true,
        rng: Some(&mut rng),
    };
    let out = if fused {
        block.forward(x.leaky_trace(), drop_path, &mut mode)
    } else {
        block.forward_composed(x.leaky_trace(), drop_path, &mut mode)
    };
    let (values, grads) = probed(out);
    let params = block
        .named_params()
        .into_iter()
        .map(|(n, p)| {
            let g = match p {
                ParamRef::Vector(t) => grads.get(t).as_vec(),
                ParamRef::Matrix(t) => grads.get(t).as_vec(),
            };
            (n, g)
        })
        .collect();
    (values, grads.get(x).as_vec(), params)
}

fn assert_close(what: &str, a: &[f32], b: &[f32]) {
    let norm = b.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-6);
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt();
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    assert!(
        diff <= 2e-5 * norm,
        "{what}: fused and composed differ by {diff} (norm {norm})"
    );
}

#[test]
fn fused_block_matches_the_block_built_from_dfdx_ops() {
    let dev = new_device(0);
    let x = input(&dev);
    for qkv_bias in [true, false] {
        let b = block(&dev, qkv_bias);
        for drop_path in [0.0, 0.4] {
            let fused = run(&b, &x, drop_path, true);
            let composed = run(&b, &x, drop_path, false);
            let case = format!("qkv_bias {qkv_bias}, drop_path {drop_path}");
            assert_close(&format!("output ({case})"), &fused.0, &composed.0);
            assert_close(&format!("input gradient ({case})"), &fused.1, &composed.1);
            assert_eq!(fused.2.len(), if qkv_bias { 12 } else { 11 });
            for ((name, g), (_, want)) in fused.2.iter().zip(&composed.2) {
                assert_close(&format!("{name} gradient ({case})"), g, want);
            }
            if drop_path > 0.0 {
                // some sample's branches were dropped: the mask reached both versions alike
                assert_ne!(fused.0, run(&b, &x, 0.0, true).0);
            }
        }
    }
}

/// Three different blocks (randomised, then each one's matrices scaled apart).
fn three_blocks(dev: &Dev, cfg: impl Fn(usize) -> VitConfig) -> Vec<Block> {
    (0..3)
        .map(|i| {
            let mut b = block_of(dev, &cfg(i));
            for (_, p) in b.named_params_mut() {
                if let incubator_core::model::ParamMut::Matrix(t) = p {
                    *t = t.clone() * (1.0 - 0.2 * i as f32);
                }
            }
            b
        })
        .collect()
}

/// Output, input gradient and every block's parameter gradients of `sum(out * probe)`, with
/// `forward` run in training mode (drop-path masks from a fixed seed).
fn blocks_pass(
    blocks: &[Block],
    x: &Act<NoneTape>,
    forward: impl Fn(Act<OwnedTape<f32, Dev>>, &mut Mode) -> Act<OwnedTape<f32, Dev>>,
) -> (Vec<f32>, Vec<f32>, Vec<Vec<f32>>) {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut mode = Mode {
        train: true,
        rng: Some(&mut rng),
    };
    let (values, grads) = probed(forward(x.leaky_trace(), &mut mode));
    let params = blocks
        .iter()
        .flat_map(|b| b.named_params())
        .map(|(_, p)| match p {
            ParamRef::Vector(t) => grads.get(t).as_vec(),
            ParamRef::Matrix(t) => grads.get(t).as_vec(),
        })
        .collect();
    (values, grads.get(x).as_vec(), params)
}

#[test]
fn consecutive_blocks_as_one_operation_match_the_composed_blocks_in_turn() {
    // three different blocks with drop-path on: the masks are drawn in the same order (two
    // per block, block by block), and every block's gradients and the input's arrive; 340
    // rows, so that the products' blocks of rows (which normalise their rows for the next
    // LayerNorm, and take the LayerNorms' backward) are several, the last one partial
    let dev = new_device(0);
    let x = input_of(&dev, (20, 17, 24));
    let blocks = three_blocks(&dev, |i| shaped(24, 3, 4.0, i != 1));
    let rates = [0.3, 0.0, 0.5];
    let fused = blocks_pass(&blocks, &x, |x, mode| {
        forward_blocks(&blocks, &rates, x, mode, false)
    });
    let composed = blocks_pass(&blocks, &x, |mut h, mode| {
        for (b, &p) in blocks.iter().zip(&rates) {
            h = b.forward_composed(h, p, mode);
        }
        h
    });
    assert_close("output of three blocks", &fused.0, &composed.0);
    assert_close("input gradient through three blocks", &fused.1, &composed.1);
    assert_eq!(fused.2.len(), 12 + 11 + 12);
    for (i, (g, want)) in fused.2.iter().zip(&composed.2).enumerate() {
        assert_close(&format!("parameter {i}'s gradient"), g, want);
    }
    // no blocks (or no rates): the input itself
    let none = forward_blocks(&blocks[..0], &rates, x.clone(), &mut Mode::eval(), false);
    assert_eq!(none.as_vec(), x.as_vec());
    let none = forward_blocks(&blocks, &[], x.clone(), &mut Mode::eval(), false);
    assert_eq!(none.as_vec(), x.as_vec());
}

#[test]
fn the_first_token_alone_matches_the_whole_output_sliced() {
    // what a classifier on the class token reads: the last block computing that token alone
    // (attending to all) gives its values and every gradient as the whole last block does;
    // drop-path on, several blocks of rows, odd head widths, and one token (nothing to skip)
    let dev = new_device(0);
    for (width, heads, batch, tokens) in [(24, 3, 20, 17), (10, 2, 3, 9), (24, 3, 4, 1)] {
        let blocks = three_blocks(&dev, |i| shaped(width, heads, 2.5, i != 1));
        let x = input_of(&dev, (batch, tokens, width));
        let rates = [0.3, 0.0, 0.5];
        let run_all = |first_only: bool| {
            blocks_pass(&blocks, &x, |x, mode| {
                let out = forward_blocks(&blocks, &rates, x, mode, first_only);
                let out = match first_only {
                    true => out,
                    false => out.slice((.., 0..1, ..)).reshape_like(&(batch, 1, width)),
                };
                assert_eq!(*out.shape(), (batch, 1, width));
                out
            })
        };
        let (first, whole) = (run_all(true), run_all(false));
        let case = format!("{batch} samples of {tokens} tokens, width {width}");
        assert_close(&format!("first tokens ({case})"), &first.0, &whole.0);
        assert_close(&format!("input gradient ({case})"), &first.1, &whole.1);
        for (i, (g, want)) in first.2.iter().zip(&whole.2).enumerate() {
            assert_close(&format!("parameter {i}'s gradient ({case})"), g, want);
        }
        // untraced (evaluation) gives the traced values
        let plain = forward_blocks(&blocks, &[0.0; 3], x.clone(), &mut Mode::eval(), true);
        let whole = forward_blocks(&blocks, &[0.0; 3], x.clone(), &mut Mode::eval(), false);
        let whole: Vec<f32> = whole
            .as_vec()
            .chunks(tokens * width)
            .flat_map(|s| s[..width].to_vec())
            .collect();
        assert_close(
            &format!("untraced first tokens ({case})"),
            &plain.as_vec(),
            &whole,
        );
    }
}

#[test]
fn odd_widths_single_tokens_and_head_widths_that_fill_no_vector_match_too() {
    let dev = new_device(0);
    // width 10 in 2 heads of 5, MLP hidden 25; one token (a class token alone) and nine
    for (tokens, batch) in [(1, 4), (9, 3)] {
        let b = block_of(&dev, &shaped(10, 2, 2.5, true));
        let x = input_of(&dev, (batch, tokens, 10));
        let fused = run(&b, &x, 0.3, true);
        let composed = run(&b, &x, 0.3, false);
        let case = format!("{batch} samples of {tokens} tokens");
        assert_close(&format!("output ({case})"), &fused.0, &composed.0);
        assert_close(&format!("input gradient ({case})"), &fused.1, &composed.1);
        for ((name, g), (_, want)) in fused.2.iter().zip(&composed.2) {
            assert_close(&format!("{name} gradient ({case})"), g, want);
        }
    }
}

#[test]
fn untraced_fused_block_gives_the_traced_values() {
    let dev = new_device(0);
    let (b, x) = (block(&dev, true), input(&dev));
    let traced = run(&b, &x, 0.0, true).0;
    let plain = b.forward(x.clone(), 0.0, &mut Mode::eval()).as_vec();
    assert_eq!(plain, traced);
}

#[test]
fn fused_block_is_bit_identical_on_any_number_of_threads() {
    let dev = new_device(0);
    let b = block(&dev, true);
    // big enough that the products and row loops split across threads
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let (n, t, d) = (96, 17, 24);
    let x: Act<NoneTape> = dev.tensor_from_vec(
        (0..n * t * d).map(|_| rng.gen_range(-2.0..2.0)).collect(),
        (n, t, d),
    );
    same_on_any_number_of_threads(|| run(&b, &x, 0.2, true));
}

/// A stem with every parameter randomised, for 12x12 images of 2 channels in patches of 4
/// (9 patches of 32 values, 10 tokens of 24).
fn stem(dev: &Dev, bias: bool) -> Stem {
    let mut cfg = cfg(true);
    cfg.image_size = 12;
    cfg.channels = 2;
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let mut s = Stem::new(&mut Init { dev, rng: &mut rng }, &cfg);
    let mut rand = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.gen_range(-0.5..0.5)).collect() };
    s.patch_embed.weight = dev.tensor_from_vec(rand(24 * 32), (24, 32));
    s.patch_embed.bias = bias.then(|| dev.tensor_from_vec(rand(24), (24,)));
    s.cls_token = dev.tensor_from_vec(rand(24), (24,));
    s.pos_embed = dev.tensor_from_vec(rand(10 * 24), (10, 24));
    s
}

/// Output, patch gradient and parameter gradients of `sum(out * probe)` through the stem.
fn run_stem(s: &Stem, x: &Act<NoneTape>, fused: bool) -> Pass {
    let out = if fused {
        s.forward(x.leaky_trace())
    } else {
        s.forward_composed(x.leaky_trace())
    };
    let (values, grads) = probed(out);
    let mut params = vec![
        ("cls_token".to_string(), grads.get(&s.cls_token).as_vec()),
        ("pos_embed".to_string(), grads.get(&s.pos_embed).as_vec()),
        (
            "patch_embed.weight".to_string(),
            grads.get(&s.patch_embed.weight).as_vec(),
        ),
    ];
    if let Some(b) = &s.patch_embed.bias {
        params.push(("patch_embed.bias".to_string(), grads.get(b).as_vec()));
    }
    (values, grads.get(x).as_vec(), params)
}

#[test]
fn fused_stem_matches_the_stem_built_from_dfdx_ops() {
    let dev = new_device(0);
    let x = input_of(&dev, (6, 9, 32));
    for bias in [true, false] {
        let s = stem(&dev, bias);
        let fused = run_stem(&s, &x, true);
        let composed = run_stem(&s, &x, false);
        assert_eq!(fused.0.len(), 6 * 10 * 24);
        assert_close(&format!("output (bias {bias})"), &fused.0, &composed.0);
        assert_close(
            &format!("patch gradient (bias {bias})"),
            &fused.1,
            &composed.1,
        );
        assert_eq!(fused.2.len(), if bias { 4 } else { 3 });
        for ((name, g), (_, want)) in fused.2.iter().zip(&composed.2) {
            assert_close(&format!("{name} gradient (bias {bias})"), g, want);
        }
    }
}

#[test]
fn fused_stem_is_bit_identical_on_any_number_of_threads() {
    let dev = new_device(0);
    let s = stem(&dev, true);
    // enough samples that the rows and the sums over samples split across threads
    let x = input_of(&dev, (300, 9, 32));
    same_on_any_number_of_threads(|| run_stem(&s, &x, true));
}

/// Every test above again, in a child process whose kernels are capped at each lower level the
/// CPU has (`INCUBATOR_ISA`): the AVX2 and baseline paths meet the same tolerance against the
/// dfdx block, and stay bit-identical across thread counts, on a machine that would otherwise
/// run only its widest.
#[test]
fn every_lower_instruction_set_level_passes_the_same_tests() {
    use incubator_core::ops::isa::{Isa, CAP_VAR};
    if std::env::var_os(CAP_VAR).is_some() {
        return; // the child: the tests above are what it is for
    }
    let exe = std::env::current_exe().unwrap();
    for level in Isa::ALL.into_iter().filter(|l| *l < Isa::detected()) {
        let out = std::process::Command::new(&exe)
            .args(["--test-threads", "1", "--skip", "every_lower_instruction"])
            .env(CAP_VAR, level.name())
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "at {level}:\n{log}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // the child ran the tests, at that level
        assert!(
            log.contains("test kernels_run_at_the_level_the_environment_caps ... ok"),
            "{log}"
        );
        for test in [
            "fused_block_matches_the_block_built_from_dfdx_ops",
            "fused_stem_matches_the_stem_built_from_dfdx_ops",
        ] {
            assert!(log.contains(&format!("test {test} ... ok")), "{log}");
        }
    }
}

#[test]
fn kernels_run_at_the_level_the_environment_caps() {
    use incubator_core::ops::isa::{cap_from_env, Isa};
    let want = match cap_from_env().unwrap() {
        Some(cap) => cap.min(Isa::detected()),
        None => Isa::detected(),
    };
    assert_eq!(Isa::active(), want);
}

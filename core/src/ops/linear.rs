//! A Linear layer `y = x W^T + b` on host buffers, in blocks of rows: each block's product
//! runs on one thread and is finished (bias, GELU and its slope, a product with the slope)
//! while it is still in cache, instead of a whole-matrix product followed by passes over
//! memory. Blocks are [`ROWS`] rows whatever the number of threads, so results do not depend
//! on it.

use super::fastmath::gelu_in_place;
use super::gemm::{matmul_raw, Mat};
use super::isa::Isa;
use super::prepacked::{PackedLhs, Strided};
use super::rows::{add_in_order, add_rows, assume_init, Disjoint};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// A Linear layer's weight `(out, in)`, row-major, and bias on the host.
pub struct HostLinear {
    pub weight: Vec<f32>,
    pub bias: Option<Vec<f32>>,
    pub out_features: usize,
}

impl HostLinear {
    pub fn in_features(&self) -> usize {
        self.weight.len() / self.out_features.max(1)
    }
}

/// `x W^T + b` for `x` of `in_features` columns.
pub fn forward(x: &[f32], l: &HostLinear) -> Vec<f32> {
    product_blocks(x, l, |_, _| {})
}

/// `x W^T + b`, each block of rows then finished by `finish(first_row, block)` while in cache
/// (a residual added there costs no pass over the whole output).
pub fn forward_then(
    x: &[f32],
    l: &HostLinear,
    finish: impl Fn(usize, &mut [f32]) + Sync,
) -> Vec<f32> {
    product_blocks(x, l, finish)
}

/// GELU of `x W^T + b`, and GELU's slope there (for the backward pass).
pub fn forward_gelu(x: &[f32], l: &HostLinear) -> (Vec<f32>, Vec<f32>) {
    let len = (x.len() / l.in_features().max(1)) * l.out_features;
    let mut slope = Vec::with_capacity(len);
    let hidden = {
        let slope = &mut slope.spare_capacity_mut()[..len];
        let slope = Disjoint(slope.as_mut_ptr().cast::<f32>());
        product_blocks(x, l, |first, block| {
            let at = first * l.out_features;
            // SAFETY: each block's rows of `slope` are this block's task's alone, within the
            // `len` elements reserved above
            let s = unsafe {
                std::slice::from_raw_parts_mut(slope.at(at).cast::<MaybeUninit<f32>>(), block.len())
            };
            gelu_in_place(block, s);
        })
    };
    // SAFETY: the blocks cover every row, and each initialised its rows of `slope`
    unsafe { slope.set_len(len) };
    (hidden, slope)
}

/// The layer's gradients from its output's, `dy`, for its input `x`: returns `dx = dy W`,
/// each block of rows finished by `finish(first_row, block)` on the thread that made it, and
/// the parameters' gradients `dW = dy^T x` and `db = column sums of dy` as partial sums to
/// add ([`Partials`]).
///
/// Why in one pass: each block of `dy` goes to its three products while in cache, and one
/// way of summing over rows serves `dW` and `db`. As three passes (`dx`, then `dW`, then
/// `db`), `dy` was read three times, with the threads waiting for each other between passes;
/// on the 2-core AMD machine the step was no faster for it (the products dominate), so the
/// one pass is kept for being one function with one summing scheme.
pub fn backward(
    dy: &[f32],
    x: &[f32],
    l: &HostLinear,
    finish: impl Fn(usize, &mut [f32]) + Sync,
) -> (Vec<f32>, Partials) {
    let (outs, ins) = (l.out_features, l.in_features());
    let rows = dy.len() / outs.max(1);
    assert_eq!(dy.len(), rows * outs, "output gradient is not whole rows");
    assert_eq!(
        x.len(),
        rows * ins,
        "input and output gradient differ in rows"
    );
    // the model's shape checks refuse a Linear layer without inputs or outputs (model.embed_dim,
    // model.mlp_ratio); the chunks below need both
    assert!(outs > 0 && ins > 0, "a {outs} x {ins} Linear layer");
    let mut dx: Vec<f32> = Vec::with_capacity(rows * ins);
    // `dx` block by block as in the forward pass: `dx_block^T = W^T dy_block^T`, the weight
    // transposed, packed once
    let w = PackedLhs::new(Isa::active(), &l.weight, ins, outs, 1, ins, ROWS);
    // whole blocks of rows per chunk, and a fixed number of chunks: set by `rows` alone, so
    // the sums do not depend on the thread count
    let chunk = rows
        .div_ceil(WEIGHT_CHUNKS)
        .next_multiple_of(ROWS)
        .max(ROWS);
    let (dy_t, x_rows) = (Mat::dense(rows, outs).t(), Mat::dense(rows, ins));
    let dense = Mat::dense(outs, ins);
    let sums: Vec<(Vec<f32>, Vec<f32>)> = dx.spare_capacity_mut()[..rows * ins]
        .par_chunks_mut(chunk * ins)
        .enumerate()
        .map(|(c, dx_chunk)| {
            // never zeroed: the first block's product overwrites every element
            let mut dw: Vec<f32> = Vec::with_capacity(outs * ins);
            let mut db = vec![0.0; outs];
            for (s, block) in dx_chunk.chunks_mut(ROWS * ins).enumerate() {
                let first = c * chunk + s * ROWS;
                let n = block.len() / ins;
                let block = product_block(&w, dy, outs, ins, None, first, block);
                finish(first, block);
                let (a, b) = (dy_t.sub(0, first, outs, n), x_rows.sub(first, 0, n, ins));
                // SAFETY: `dw` is this task's own, sized for the product; the views lie in
                // `dy` and `x` (their rows were checked above)
                unsafe { matmul_raw(dw.as_mut_ptr(), dense, dy, a, x, b, 1.0, s > 0, 1) };
                if l.bias.is_some() {
                    add_rows(&dy[first * outs..(first + n) * outs], &mut db);
                }
            }
            // SAFETY: the first block's product wrote all `outs * ins` elements
            unsafe { dw.set_len(outs * ins) };
            (dw, db)
        })
        .collect();
    // SAFETY: the chunks cover every row of `dx`, each block written by its product
    unsafe { dx.set_len(rows * ins) };
    let (weight, bias) = sums.into_iter().unzip();
    (dx, Partials { weight, bias })
}

/// Chunks of rows of [`backward`]'s weight gradient: one per core on a 16-core machine, few
/// enough that adding the partial sums stays cheap on 2 cores.
const WEIGHT_CHUNKS: usize = 16;

/// A layer's parameter gradients from [`backward`], as one partial sum per chunk of rows.
pub struct Partials {
    weight: Vec<Vec<f32>>,
    bias: Vec<Vec<f32>>,
}

impl Partials {
    /// `dw +=` the weight's gradient: each element adds the chunks in chunk order (elements
    /// split across threads).
    pub fn add_weight_into(&self, dw: &mut [f32]) {
        add_in_order(dw, &self.weight)
    }

    /// `db +=` the bias's gradient, the chunks in order.
    pub fn add_bias_into(&self, db: &mut [f32]) {
        add_in_order(db, &self.bias)
    }
}

/// One block of [`product_blocks`]: rows `first..` of `input` by the packed weight into
/// `block` (whole rows of `width_out`), onto the bias if any; returns the block, initialised.
#[inline(always)]
fn product_block<'a>(
    w: &PackedLhs,
    input: &[f32],
    width_in: usize,
    width_out: usize,
    bias: Option<&[f32]>,
    first: usize,
    block: &'a mut [MaybeUninit<f32>],
) -> &'a mut [f32] {
    let n = block.len() / width_out;
    // with a bias, the block starts as the bias and the product adds onto it; without, the
    // product overwrites the block (never reading it)
    if let Some(b) = bias {
        for row in block.chunks_exact_mut(width_out) {
            row.iter_mut().zip(b).for_each(|(o, v)| {
                o.write(*v);
            });
        }
    }
    assert!(
        input.len() >= (first + n) * width_in,
        "block past the input's rows"
    );
    // SAFETY: `block` (n rows of width_out) is the caller's own; the block's rows of `input`
    // are n rows of width_in from row `first` (asserted)
    unsafe {
        w.multiply(
            n,
            block.as_mut_ptr().cast(),
            width_out,
            Strided {
                ptr: input[first * width_in..].as_ptr(),
                rs: 1,
                cs: width_in,
            },
            1.0,
            bias.is_some(),
        )
    };
    // SAFETY: the bias or the product wrote every element of the block
    unsafe { assume_init(block) }
}

/// Rows per block. In the product a block's rows are the micro-kernels' columns, taken 6 at a
/// time with AVX2 and 8 with AVX-512: a multiple of both leaves no narrow last column (128
/// rows ended every block with a kernel call on 2 of its 6 columns, at a third of its rate).
pub const ROWS: usize = 120;

/// `input W^T + b`, block by block of [`ROWS`] rows, each finished by `finish(first_row,
/// block)` on the thread that made it. The output is never zeroed: each block is laid down in
/// cache by its product (onto the bias, if any).
fn product_blocks(
    input: &[f32],
    l: &HostLinear,
    finish: impl Fn(usize, &mut [f32]) + Sync,
) -> Vec<f32> {
    let (width_in, width_out) = (l.in_features(), l.out_features);
    // in the product's terms each block's rows are columns: `block^T = W input_block^T`, with
    // the weight (as stored) packed once for all blocks
    let w = PackedLhs::new(
        Isa::active(),
        &l.weight,
        width_out,
        width_in,
        width_in,
        1,
        ROWS,
    );
    let rows = input.len() / width_in.max(1);
    assert_eq!(input.len(), rows * width_in, "input is not whole rows");
    let bias = l.bias.as_deref();
    let len = rows * width_out;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    if width_out > 0 {
        let spare: &mut [MaybeUninit<f32>] = &mut out.spare_capacity_mut()[..len];
        spare
            .par_chunks_mut(ROWS * width_out)
            .enumerate()
            .for_each(|(c, block)| {
                let first = c * ROWS;
                let block = product_block(&w, input, width_in, width_out, bias, first, block);
                finish(first, block);
            });
    }
    // SAFETY: the blocks cover all `len` elements, each initialised by its task
    unsafe { out.set_len(len) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.0 - 1.0) * 0.8)
            .collect()
    }

    fn layer(outs: usize, ins: usize, bias: bool) -> HostLinear {
        HostLinear {
            weight: values(outs * ins, 3),
            bias: bias.then(|| values(outs, 4)),
            out_features: outs,
        }
    }

    /// `dx` (each block doubled by `finish`), `dW` and `db` added onto ones, on `threads`.
    fn gradients(dy: &[f32], x: &[f32], l: &HostLinear, threads: usize) -> [Vec<f32>; 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let (dx, sums) = backward(dy, x, l, |_, b| b.iter_mut().for_each(|v| *v *= 2.0));
            let mut dw = vec![1.0; l.weight.len()];
            let mut db = vec![1.0; l.out_features];
            sums.add_weight_into(&mut dw);
            sums.add_bias_into(&mut db);
            [dx, dw, db]
        })
    }

    #[test]
    fn gradients_match_float64_and_not_the_thread_count() {
        // rows: none, one, fewer than a block, a chunk's worth past whole blocks, and enough
        // for every chunk to have several blocks and the last one short
        for rows in [0, 1, 7, 121, 2000, 8320] {
            for (outs, ins) in [(5, 3), (64, 192), (48, 16)] {
                let l = layer(outs, ins, true);
                let (dy, x) = (values(rows * outs, 1), values(rows * ins, 2));
                let [dx, dw, db] = gradients(&dy, &x, &l, 1);
                for threads in [2, 3] {
                    let same =
                        gradients(&dy, &x, &l, threads) == [dx.clone(), dw.clone(), db.clone()];
                    assert!(
                        same,
                        "{rows} rows, {outs}x{ins}: differs on {threads} threads"
                    );
                }
                let close = |got: f32, want: f64, what: &str| {
                    let tol = 1e-4 * (1.0 + want.abs()) * (rows as f64).sqrt().max(1.0);
                    assert!((got as f64 - want).abs() <= tol, "{what}: {got} vs {want}");
                };
                for r in 0..rows {
                    for i in 0..ins {
                        let want: f64 = (0..outs)
                            .map(|o| dy[r * outs + o] as f64 * l.weight[o * ins + i] as f64)
                            .sum();
                        close(dx[r * ins + i], 2.0 * want, "dx");
                    }
                }
                for o in 0..outs {
                    for i in 0..ins {
                        let want: f64 = (0..rows)
                            .map(|r| dy[r * outs + o] as f64 * x[r * ins + i] as f64)
                            .sum();
                        close(dw[o * ins + i], 1.0 + want, "dW");
                    }
                    let want: f64 = (0..rows).map(|r| dy[r * outs + o] as f64).sum();
                    close(db[o], 1.0 + want, "db");
                }
            }
        }
    }

    #[test]
    fn every_block_is_finished_once_with_its_first_row() {
        let (rows, outs, ins) = (1000, 8, 4);
        let l = layer(outs, ins, false);
        let seen = std::sync::Mutex::new(Vec::new());
        let (dx, _) = backward(
            &values(rows * outs, 1),
            &values(rows * ins, 2),
            &l,
            |first, b| {
                seen.lock().unwrap().push((first, b.len() / ins));
            },
        );
        assert_eq!(dx.len(), rows * ins);
        let mut seen = seen.into_inner().unwrap();
        seen.sort();
        let want: Vec<(usize, usize)> = (0..rows)
            .step_by(ROWS)
            .map(|f| (f, ROWS.min(rows - f)))
            .collect();
        assert_eq!(seen, want);
    }
}

//! Row-parallel loops over row-major `(rows, cols)` host buffers. Work is split in fixed chunks
//! of rows, and partial column sums are added in chunk order, so every result is the same
//! whatever the number of threads (a Slurm job on one core gives the local run's weights).

use rayon::prelude::*;

/// Rows per parallel task and per partial column sum.
pub const CHUNK: usize = 128;

/// `out += ` the column sums of `x`.
pub fn add_column_sums(x: &[f32], cols: usize, out: &mut [f32]) {
    let rows = x.len().checked_div(cols).unwrap_or(0);
    add_chunk_sums(rows, cols, 1, out, |r0, r1, acc| {
        add_rows(&x[r0 * cols..r1 * cols], acc)
    });
}

crate::multiversion! {
    /// `acc +=` every row of `x` (rows as long as `acc`).
    fn add_rows(x: &[f32], acc: &mut [f32]) {
        for row in x.chunks_exact(acc.len()) {
            for (a, v) in acc.iter_mut().zip(row) {
                *a += v;
            }
        }
    }
}

/// Sums of `per_chunk`'s partial results, added in chunk order into `out`: `per_chunk(first,
/// end, acc)` adds the contribution of rows `first..end` into `acc`, which holds `vectors`
/// consecutive vectors of length `cols` (one per quantity summed).
fn add_chunk_sums(
    rows: usize,
    cols: usize,
    vectors: usize,
    out: &mut [f32],
    per_chunk: impl Fn(usize, usize, &mut [f32]) + Sync + Send,
) {
    assert_eq!(out.len(), cols * vectors);
    let chunks = rows.div_ceil(CHUNK);
    let partials: Vec<Vec<f32>> = (0..chunks)
        .into_par_iter()
        .map(|c| {
            let mut acc = vec![0.0; cols * vectors];
            per_chunk(c * CHUNK, ((c + 1) * CHUNK).min(rows), &mut acc);
            acc
        })
        .collect();
    for p in partials {
        for (o, v) in out.iter_mut().zip(&p) {
            *o += v;
        }
    }
}

/// `x` as floats, once every element has been written (by a product that overwrites its
/// destination, or a kernel writing each element): a part of a buffer made without a zeroing
/// pass, filled by the thread that uses it next, while in cache.
///
/// # Safety
/// Every element of `x` must have been written.
#[inline(always)]
pub unsafe fn assume_init(x: &mut [std::mem::MaybeUninit<f32>]) -> &mut [f32] {
    &mut *(x as *mut [std::mem::MaybeUninit<f32>] as *mut [f32])
}

/// A pointer that several tasks write through, each to its own elements (attention heads,
/// blocks of rows).
#[derive(Clone, Copy)]
pub struct Disjoint(pub *mut f32);
unsafe impl Send for Disjoint {}
unsafe impl Sync for Disjoint {}

impl Disjoint {
    /// The pointer `offset` elements on; the caller keeps it within the allocation.
    pub fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// A buffer that parallel tasks fill part by part, never zeroed as a whole (a zeroing pass
/// writes a buffer larger than the caches to memory once more before its producer does).
pub struct Filled(Vec<std::mem::MaybeUninit<f32>>);

impl Filled {
    pub fn new(len: usize) -> Filled {
        let mut v = Vec::with_capacity(len);
        // SAFETY: `MaybeUninit` needs no initialisation
        unsafe { v.set_len(len) };
        Filled(v)
    }

    /// The elements, to be written (see [`assume_init`]).
    pub fn parts(&mut self) -> &mut [std::mem::MaybeUninit<f32>] {
        &mut self.0
    }

    /// A pointer for tasks writing disjoint views.
    pub fn disjoint(&mut self) -> Disjoint {
        Disjoint(self.0.as_mut_ptr().cast())
    }

    /// The buffer as floats.
    ///
    /// # Safety
    /// Every element must have been written.
    pub unsafe fn assume_filled(self) -> Vec<f32> {
        let mut v = std::mem::ManuallyDrop::new(self.0);
        Vec::from_raw_parts(v.as_mut_ptr().cast(), v.len(), v.capacity())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_sums_do_not_depend_on_the_thread_count() {
        let cols = 5;
        let x: Vec<f32> = (0..1000 * cols)
            .map(|i| ((i * 7919) % 1013) as f32 * 1e-3)
            .collect();
        let sums = |threads| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut out = vec![0.0; cols];
            pool.install(|| add_column_sums(&x, cols, &mut out));
            out
        };
        let one = sums(1);
        assert_eq!(one, sums(2));
        assert_eq!(one, sums(3));
        let plain: Vec<f64> = (0..cols)
            .map(|j| x.iter().skip(j).step_by(cols).map(|&v| v as f64).sum())
            .collect();
        for (a, b) in one.iter().zip(&plain) {
            assert!((*a as f64 - b).abs() < 1e-3);
        }
    }
}

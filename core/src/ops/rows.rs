//! Pieces of the row-parallel loops over row-major `(rows, cols)` host buffers. Work is split
//! in fixed chunks of rows, and partial sums are added in chunk order, so every result is the
//! same whatever the number of threads (a Slurm job on one core gives the local run's weights).

/// Rows per parallel task of the element-wise passes.
pub const CHUNK: usize = 128;

crate::multiversion! {
    /// `acc +=` every row of `x` (rows as long as `acc`).
    pub fn add_rows(x: &[f32], acc: &mut [f32]) {
        for row in x.chunks_exact(acc.len()) {
            for (a, v) in acc.iter_mut().zip(row) {
                *a += v;
            }
        }
    }
}

/// `dst +=` each of `partials` in turn: every element adds them in the same order whatever
/// the number of threads (elements are split across threads, not partials).
pub fn add_in_order(dst: &mut [f32], partials: &[impl AsRef<[f32]> + Sync]) {
    use rayon::prelude::*;
    const PART: usize = 1 << 12;
    dst.par_chunks_mut(PART).enumerate().for_each(|(c, d)| {
        for p in partials {
            super::fastmath::add_in_place(d, &p.as_ref()[c * PART..c * PART + d.len()]);
        }
    });
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

//! Per-column vectors applied to every row, forward and backward in plain loops:
//! `add_bias`: `x + b` (`dx = dy`, `db = column sums of dy`);
//! `scale_columns`: `x * w` (`dx = dy * w`, `dw = column sums of dy * x`).
//! dfdx's broadcast kernels index every element through the broadcast strides; these do the
//! same arithmetic in the same order, so results are bit-identical (tested below).

#[cfg(not(feature = "cuda"))]
use crate::device::{host_values, read_buffer, tensor_from_slice, write_buffer};
use crate::device::{Dev, Rows, Vector};
use dfdx::prelude::*;

#[cfg(not(feature = "cuda"))]
pub fn add_bias<T: Tape<f32, Dev>>(x: Rows<T>, bias: &Vector) -> Rows<T> {
    let shape = *x.shape();
    let (rows, cols) = shape;
    // contiguous input: its logical order is its buffer order
    let x = x.reshape_like(&shape);
    let (inp, mut tape) = x.split_tape();
    let b = host_values(bias);
    let mut out = host_values(&inp);
    for row in out.chunks_exact_mut(cols) {
        for (o, bj) in row.iter_mut().zip(&b) {
            *o += bj;
        }
    }
    let out = tensor_from_slice(inp.device(), &out, shape);
    let (out_key, bias_key) = (out.clone(), bias.clone());
    tape.add_backward_op(move |grads| {
        let grad_out = read_buffer(grads.get_or_alloc_mut(&out_key)?, |g| g.to_vec());
        write_buffer(grads.get_or_alloc_mut(&inp)?, |gi| {
            for (a, g) in gi.iter_mut().zip(&grad_out) {
                *a += g;
            }
        });
        write_buffer(grads.get_or_alloc_mut(&bias_key)?, |gb| {
            for r in 0..rows {
                for (a, g) in gb.iter_mut().zip(&grad_out[r * cols..(r + 1) * cols]) {
                    *a += g;
                }
            }
        });
        Ok(())
    });
    out.put_tape(tape)
}

#[cfg(not(feature = "cuda"))]
pub fn scale_columns<T: Tape<f32, Dev>>(x: Rows<T>, weight: &Vector) -> Rows<T> {
    let shape = *x.shape();
    let (rows, cols) = shape;
    let x = x.reshape_like(&shape);
    let (inp, mut tape) = x.split_tape();
    let w = host_values(weight);
    let values = host_values(&inp);
    let mut out = values.clone();
    for row in out.chunks_exact_mut(cols) {
        for (o, wj) in row.iter_mut().zip(&w) {
            *o *= wj;
        }
    }
    let out = tensor_from_slice(inp.device(), &out, shape);
    let (out_key, weight_key) = (out.clone(), weight.clone());
    tape.add_backward_op(move |grads| {
        let grad_out = read_buffer(grads.get_or_alloc_mut(&out_key)?, |g| g.to_vec());
        write_buffer(grads.get_or_alloc_mut(&inp)?, |gi| {
            for (r, row) in gi.chunks_exact_mut(cols).enumerate() {
                for ((a, g), wj) in row.iter_mut().zip(&grad_out[r * cols..]).zip(&w) {
                    *a += g * wj;
                }
            }
        });
        write_buffer(grads.get_or_alloc_mut(&weight_key)?, |gw| {
            for r in 0..rows {
                let at = r * cols..(r + 1) * cols;
                for ((a, g), xv) in gw.iter_mut().zip(&grad_out[at.clone()]).zip(&values[at]) {
                    *a += g * xv;
                }
            }
        });
        Ok(())
    });
    out.put_tape(tape)
}

// On CUDA the data stays on the device: dfdx's broadcast kernels (the tests below show the
// CPU versions compute the same).
#[cfg(feature = "cuda")]
pub fn add_bias<T: Tape<f32, Dev>>(x: Rows<T>, bias: &Vector) -> Rows<T> {
    let shape = *x.shape();
    x + bias.retaped::<T>().broadcast_like::<_, Axis<0>>(&shape)
}

#[cfg(feature = "cuda")]
pub fn scale_columns<T: Tape<f32, Dev>>(x: Rows<T>, weight: &Vector) -> Rows<T> {
    let shape = *x.shape();
    x * weight.retaped::<T>().broadcast_like::<_, Axis<0>>(&shape)
}

#[cfg(all(test, not(feature = "cuda")))]
mod tests {
    use super::*;
    use crate::device::new_device;

    #[test]
    fn same_values_and_gradients_as_dfdx_broadcast_add() {
        let dev = new_device(0);
        let x: Rows<NoneTape> = dev.sample_normal_like(&(7, 5));
        let b: Vector = dev.sample_normal_like(&(5,));
        let w: Rows<NoneTape> = dev.sample_normal_like(&(7, 5));
        let ours = add_bias(x.clone().leaky_traced(), &b);
        let theirs = x.clone().leaky_traced()
            + b.retaped::<OwnedTape<f32, Dev>>()
                .broadcast_like::<_, Axis<0>>(&(7, 5));
        assert_eq!(ours.as_vec(), theirs.as_vec());
        let g_ours = (ours * w.clone()).sum().backward();
        let g_theirs = (theirs * w).sum().backward();
        assert_eq!(g_ours.get(&b).as_vec(), g_theirs.get(&b).as_vec());
        assert_eq!(g_ours.get(&x).as_vec(), g_theirs.get(&x).as_vec());
    }

    #[test]
    fn scaling_matches_dfdx_broadcast_mul_bit_for_bit() {
        let dev = new_device(0);
        let x: Rows<NoneTape> = dev.sample_normal_like(&(7, 5));
        let w: Vector = dev.sample_normal_like(&(5,));
        let probe: Rows<NoneTape> = dev.sample_normal_like(&(7, 5));
        let ours = scale_columns(x.clone().leaky_traced(), &w);
        let theirs = x.clone().leaky_traced()
            * w.retaped::<OwnedTape<f32, Dev>>()
                .broadcast_like::<_, Axis<0>>(&(7, 5));
        assert_eq!(ours.as_vec(), theirs.as_vec());
        let g_ours = (ours * probe.clone()).sum().backward();
        let g_theirs = (theirs * probe).sum().backward();
        assert_eq!(g_ours.get(&w).as_vec(), g_theirs.get(&w).as_vec());
        assert_eq!(g_ours.get(&x).as_vec(), g_theirs.get(&x).as_vec());
    }
}

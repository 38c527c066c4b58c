//! Where a training step's time goes, per kind of operation, forward and backward: the
//! breakdown `incubator bench --profile` prints. Off unless a thread turns it on, and then
//! only timing: the numbers computed are unchanged.
//!
//! Forward time is measured around the operation. Backward time: two marker closures are put
//! on the tape, one before the operation's own backward closures run (the tape runs in
//! reverse) and one after; the time between them is the operation's backward.

use crate::device::Dev;
use dfdx::prelude::*;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Instant;

/// Seconds spent per operation kind: (forward, backward, calls).
pub type Breakdown = BTreeMap<&'static str, (f64, f64, u64)>;

thread_local! {
    static PROFILE: RefCell<Option<Rc<RefCell<Breakdown>>>> = const { RefCell::new(None) };
}

/// Starts collecting on this thread (clearing what was collected).
pub fn start() {
    PROFILE.with(|p| *p.borrow_mut() = Some(Rc::new(RefCell::new(Breakdown::new()))));
}

/// Stops collecting and returns the breakdown.
pub fn finish() -> Breakdown {
    PROFILE
        .with(|p| p.borrow_mut().take())
        .map(|b| b.borrow().clone())
        .unwrap_or_default()
}

fn current() -> Option<Rc<RefCell<Breakdown>>> {
    PROFILE.with(|p| p.borrow().clone())
}

/// Runs `f` on `x` as the operation `name`, timing its forward and (traced) backward.
pub fn span<S: Shape, S2: Shape, T: Tape<f32, Dev>>(
    name: &'static str,
    x: Tensor<S, f32, Dev, T>,
    f: impl FnOnce(Tensor<S, f32, Dev, T>) -> Tensor<S2, f32, Dev, T>,
) -> Tensor<S2, f32, Dev, T> {
    let Some(profile) = current() else {
        return f(x);
    };
    // runs last in the backward pass: the end of this operation's backward
    let started_backward: Rc<RefCell<Option<Instant>>> = Rc::default();
    let (x, mut tape) = x.split_tape();
    {
        let (profile, started) = (profile.clone(), started_backward.clone());
        tape.add_backward_op(move |_| {
            if let Some(t) = started.borrow_mut().take() {
                book(&profile, name, Pass::Backward, t.elapsed().as_secs_f64());
            }
            Ok(())
        });
    }
    let t = Instant::now();
    let y = f(x.put_tape(tape));
    book(&profile, name, Pass::Forward, t.elapsed().as_secs_f64());
    // runs first in the backward pass: the start of this operation's backward
    let (y, mut tape) = y.split_tape();
    tape.add_backward_op(move |_| {
        *started_backward.borrow_mut() = Some(Instant::now());
        Ok(())
    });
    y.put_tape(tape)
}

/// Which pass a [`Laps`] times.
#[derive(Clone, Copy)]
pub enum Pass {
    Forward,
    Backward,
}

/// Times consecutive phases of one fused operation (which has no tape ops of its own to put
/// markers between): each `lap(name)` books the time since the previous lap.
pub struct Laps {
    profile: Option<Rc<RefCell<Breakdown>>>,
    pass: Pass,
    last: Instant,
}

impl Laps {
    pub fn start(pass: Pass) -> Laps {
        Laps {
            profile: current(),
            pass,
            last: Instant::now(),
        }
    }

    pub fn lap(&mut self, name: &'static str) {
        let Some(profile) = &self.profile else {
            return;
        };
        let now = Instant::now();
        book(profile, name, self.pass, (now - self.last).as_secs_f64());
        self.last = now;
    }
}

/// Adds `seconds` to operation `name`'s forward (counting a call) or backward time.
fn book(profile: &RefCell<Breakdown>, name: &'static str, pass: Pass, seconds: f64) {
    let mut p = profile.borrow_mut();
    let e = p.entry(name).or_default();
    match pass {
        Pass::Forward => {
            e.0 += seconds;
            e.2 += 1;
        }
        Pass::Backward => e.1 += seconds,
    }
}

//! Operations written on our side, with their own backward, where dfdx's are missing, wrong or
//! slow. Each records one backward closure on the tape through dfdx's public `Tape` API.

pub mod bias;
pub mod gelu;
pub mod profile;

pub use gelu::gelu;

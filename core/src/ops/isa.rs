//! Which vector instructions the CPU kernels run: the widest the CPU has, unless the
//! environment caps it.
//!
//! One binary runs everywhere (it is built for baseline x86-64) and picks its kernels at run
//! time. `INCUBATOR_ISA=avx2` (or `baseline`) caps that choice, so that a machine with AVX-512
//! can measure and test the AVX2 path our users without AVX-512 run: the benchmark prints both
//! levels from one machine, and the tests train on the capped path.

use std::fmt;
use std::sync::OnceLock;

/// The environment variable that caps the instruction set.
pub const CAP_VAR: &str = "INCUBATOR_ISA";

/// An instruction-set level of the CPU kernels, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// x86-64 as every CPU has it (SSE2: 4 floats per instruction), or a non-x86 CPU.
    Baseline,
    /// AVX2 with fused multiply-add (8 floats per instruction).
    Avx2,
    /// AVX-512F (16 floats per instruction).
    Avx512,
}

impl Isa {
    pub const ALL: [Isa; 3] = [Isa::Baseline, Isa::Avx2, Isa::Avx512];

    /// The name `INCUBATOR_ISA` takes.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Baseline => "baseline",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// What the kernels use at this level, for people reading a benchmark.
    pub fn describe(self) -> &'static str {
        match self {
            Isa::Baseline => "baseline x86-64 (SSE2)",
            Isa::Avx2 => "AVX2+FMA",
            Isa::Avx512 => "AVX-512",
        }
    }

    /// The widest level this CPU supports.
    pub fn detected() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            // gemm's AVX2 kernels need FMA as well; every AVX2 CPU we know has both
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa::Avx2;
            }
        }
        Isa::Baseline
    }

    /// The level the kernels run: the detected one, capped by `INCUBATOR_ISA`. Read once per
    /// process; a bad value falls back to the detected level here, and [`check_cap`] (which
    /// the CLI calls at start) refuses it with a message before any kernel runs.
    pub fn active() -> Isa {
        static ACTIVE: OnceLock<Isa> = OnceLock::new();
        *ACTIVE.get_or_init(|| match cap_from_env() {
            Ok(Some(cap)) => cap.min(Isa::detected()),
            _ => Isa::detected(),
        })
    }
}

/// Whether the baseline build multiplies and adds in one instruction: not on x86-64 (SSE2 has no
/// FMA; `f32::mul_add` there is a slow library call), always on 64-bit ARM.
pub const BASELINE_FMA: bool = cfg!(any(target_feature = "fma", target_arch = "aarch64"));

impl Isa {
    /// Whether the element-wise kernels of this level round `a * b + c` once (a fused
    /// multiply-add, as AVX2+FMA and AVX-512 do) or twice. Levels that agree on this give
    /// bit-identical element-wise results.
    pub fn fused_multiply_add(self) -> bool {
        self >= Isa::Avx2 || BASELINE_FMA
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `INCUBATOR_ISA` holds something other than a level's name.
#[derive(Debug, thiserror::Error)]
#[error(
    "INCUBATOR_ISA={value:?} is not an instruction-set level: use one of baseline, avx2, avx512 \
     (a cap above what the CPU has changes nothing), or unset it to use the CPU's widest"
)]
pub struct BadCap {
    pub value: String,
}

impl std::str::FromStr for Isa {
    type Err = BadCap;
    fn from_str(s: &str) -> Result<Isa, BadCap> {
        let wanted = s.trim().to_ascii_lowercase();
        Isa::ALL
            .into_iter()
            .find(|isa| isa.name() == wanted)
            .ok_or_else(|| BadCap {
                value: s.to_string(),
            })
    }
}

/// The cap `INCUBATOR_ISA` sets, if any (empty counts as unset).
pub fn cap_from_env() -> Result<Option<Isa>, BadCap> {
    match std::env::var(CAP_VAR) {
        Ok(v) if !v.trim().is_empty() => v.parse().map(Some),
        Ok(_) | Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(v)) => Err(BadCap {
            value: v.to_string_lossy().into_owned(),
        }),
    }
}

/// Refuses a bad `INCUBATOR_ISA` (the CLI calls this before any work).
pub fn check_cap() -> Result<(), BadCap> {
    cap_from_env().map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_bad_ones_say_what_to_use() {
        for isa in Isa::ALL {
            assert_eq!(isa.name().parse::<Isa>().unwrap(), isa);
            assert_eq!(isa.name().to_uppercase().parse::<Isa>().unwrap(), isa);
        }
        let err = "avx-512".parse::<Isa>().unwrap_err().to_string();
        assert!(err.contains("INCUBATOR_ISA=\"avx-512\""), "{err}");
        assert!(err.contains("baseline, avx2, avx512"), "{err}");
    }

    #[test]
    fn levels_are_ordered_so_a_cap_is_a_minimum() {
        assert!(Isa::Baseline < Isa::Avx2 && Isa::Avx2 < Isa::Avx512);
        assert_eq!(Isa::Avx512.min(Isa::Avx2), Isa::Avx2);
        assert!(Isa::active() <= Isa::detected());
    }
}

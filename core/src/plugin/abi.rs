//! The binary interface between the engine and a plugin library, and the macro a plugin
//! declares itself with.
//!
//! A plugin library exports three C symbols, read in this order:
//! 1. `INCUBATOR_PLUGIN_ABI`, a plain `u32`: the layout of what follows ([`ABI_VERSION`]);
//! 2. `INCUBATOR_PLUGIN_MANIFEST`, a `#[repr(C)]` [`Manifest`] of C strings fixed when the
//!    plugin was compiled: compiler, engine version and build, features, profile;
//! 3. `incubator_plugin_register`, called only when every manifest field matches the host.
//!
//! Why so careful: plugins compute with dfdx tensors, and Rust has no stable ABI. The engine is
//! one shared library (`crate-type = ["dylib"]`) that the host and every plugin link, so there
//! is one dfdx and one tensor-id counter in the process; a plugin built against another engine
//! build would bring a second copy, or call through mismatched vtables, and train garbage or
//! crash. The manifest catches that before any Rust-ABI call.

use std::ffi::{c_char, c_void, CStr};

/// Bumped whenever [`Manifest`] or the register entry point change layout.
pub const ABI_VERSION: u32 = 1;

/// The engine's crate version.
pub const ENGINE_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Hash of the engine's sources, compiler, features and profile (see `core/build.rs`).
pub const ENGINE_BUILD: &str = env!("INCUBATOR_BUILD_ID");
/// `rustc` release and commit the engine was built with.
pub const RUSTC: &str = env!("INCUBATOR_RUSTC");
/// Cargo features the engine was built with (e.g. `cuda`), comma-separated.
pub const FEATURES: &str = env!("INCUBATOR_FEATURES");
/// The engine's profile (name, opt-level, debug assertions).
pub const PROFILE: &str = env!("INCUBATOR_PROFILE");

/// What a plugin library says about how it was built. Every field is a NUL-terminated string
/// so that it can be read whatever the plugin's Rust ABI.
#[repr(C)]
pub struct Manifest {
    pub plugin_name: *const c_char,
    pub plugin_version: *const c_char,
    pub rustc: *const c_char,
    pub engine_version: *const c_char,
    pub engine_build: *const c_char,
    pub features: *const c_char,
    pub profile: *const c_char,
    /// Returns the address of a static inside the engine library the plugin is linked to: the
    /// host compares it with its own to prove there is one engine (and one dfdx) in the process.
    pub engine_instance: extern "C" fn() -> usize,
}

// The pointers are to 'static string literals.
unsafe impl Sync for Manifest {}

/// Signature of `incubator_plugin_register`: registers the plugin's items into the
/// [`Registrar`] behind `registrar`; returns null, or an error message allocated with
/// `CString::into_raw` (a panic inside registration becomes such a message).
pub type RegisterFn = unsafe extern "C" fn(registrar: *mut c_void) -> *mut c_char;

pub const ABI_SYMBOL: &[u8] = b"INCUBATOR_PLUGIN_ABI\0";
pub const MANIFEST_SYMBOL: &[u8] = b"INCUBATOR_PLUGIN_MANIFEST\0";
pub const REGISTER_SYMBOL: &[u8] = b"incubator_plugin_register\0";

static INSTANCE: u8 = 0;

/// The address of a static of this engine library (see [`Manifest::engine_instance`]).
#[inline(never)]
pub extern "C" fn engine_instance() -> usize {
    &INSTANCE as *const u8 as usize
}

/// Reads a manifest string; `"?"` for a null pointer.
///
/// # Safety
/// `p` is null or points to a NUL-terminated string that lives as long as the library.
pub unsafe fn manifest_str(p: *const c_char) -> String {
    if p.is_null() {
        return "?".into();
    }
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// Declares a plugin library: exports the ABI version, the manifest (evaluated when the plugin
/// is compiled, so it describes the engine the plugin was built against) and the register
/// entry point, which runs `$register(&mut Registrar)` and turns an error or a panic into a
/// message for the host.
///
/// ```ignore
/// incubator_core::declare_plugin!("my-plugin", |r: &mut Registrar| {
///     r.add_strategy(std::sync::Arc::new(MyStrategy));
///     Ok(())
/// });
/// ```
#[macro_export]
macro_rules! declare_plugin {
    ($name:expr, $register:expr) => {
        #[no_mangle]
        pub static INCUBATOR_PLUGIN_ABI: u32 = $crate::plugin::abi::ABI_VERSION;

        #[no_mangle]
        pub static INCUBATOR_PLUGIN_MANIFEST: $crate::plugin::abi::Manifest =
            $crate::plugin::abi::Manifest {
                plugin_name: $crate::plugin::abi::c_str!($name),
                plugin_version: $crate::plugin::abi::c_str!(env!("CARGO_PKG_VERSION")),
                rustc: $crate::plugin::abi::c_str!($crate::plugin::abi::RUSTC),
                engine_version: $crate::plugin::abi::c_str!($crate::plugin::abi::ENGINE_VERSION),
                engine_build: $crate::plugin::abi::c_str!($crate::plugin::abi::ENGINE_BUILD),
                features: $crate::plugin::abi::c_str!($crate::plugin::abi::FEATURES),
                profile: $crate::plugin::abi::c_str!($crate::plugin::abi::PROFILE),
                engine_instance: $crate::plugin::abi::engine_instance,
            };

        #[no_mangle]
        pub unsafe extern "C" fn incubator_plugin_register(
            registrar: *mut ::std::ffi::c_void,
        ) -> *mut ::std::ffi::c_char {
            let result = ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| {
                // SAFETY: the host passes a `&mut Registrar` after the handshake succeeded.
                let registrar = unsafe { &mut *(registrar as *mut $crate::plugin::Registrar) };
                let register: fn(
                    &mut $crate::plugin::Registrar,
                )
                    -> ::std::result::Result<(), $crate::plugin::PluginError> = $register;
                register(registrar)
            }));
            let message = match result {
                Ok(Ok(())) => return ::std::ptr::null_mut(),
                Ok(Err(e)) => e.to_string(),
                Err(panic) => format!(
                    "panicked while registering: {}",
                    $crate::plugin::abi::panic_message(&*panic)
                ),
            };
            ::std::ffi::CString::new(message.replace('\0', " "))
                .expect("no NUL")
                .into_raw()
        }
    };
}

/// A NUL-terminated copy of a constant string, as a `*const c_char`, built at the plugin's
/// compile time.
#[macro_export]
#[doc(hidden)]
macro_rules! __abi_c_str {
    ($s:expr) => {{
        const S: &str = $s;
        const N: usize = S.len() + 1;
        static BYTES: [u8; N] = $crate::plugin::abi::nul_terminated::<N>(S);
        BYTES.as_ptr() as *const ::std::ffi::c_char
    }};
}
pub use crate::__abi_c_str as c_str;

/// `s` followed by a NUL byte, in a const context (`N` = `s.len() + 1`).
pub const fn nul_terminated<const N: usize>(s: &str) -> [u8; N] {
    let bytes = s.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < bytes.len() {
        out[i] = bytes[i];
        i += 1;
    }
    out
}

// The path `declare_plugin!` expands to.
pub use crate::panic_message::panic_message;

#[cfg(test)]
#[path = "../../build/fingerprint.rs"]
mod fingerprint;

#[cfg(test)]
mod tests {
    use super::fingerprint::{sources_hash, FILES, TREES};
    use std::path::Path;

    /// The build's fingerprint is of the sources it was built from, not of whatever folder
    /// the build script was first compiled in.
    #[test]
    fn the_build_fingerprints_the_sources_it_was_built_from() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        assert_eq!(sources_hash(root).unwrap(), env!("INCUBATOR_SOURCES_HASH"));
    }

    fn copy_tree(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let p = e.unwrap().path();
            let dst = to.join(p.file_name().unwrap());
            if p.is_dir() {
                copy_tree(&p, &dst);
            } else {
                std::fs::copy(&p, &dst).unwrap();
            }
        }
    }

    #[test]
    fn a_moved_checkout_hashes_the_same_an_edited_one_differently_an_empty_one_not_at_all() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let tmp = tempfile::tempdir().unwrap();
        let moved = tmp.path().join("elsewhere/core");
        for dir in TREES {
            copy_tree(&root.join(dir), &moved.join(dir));
        }
        for file in FILES {
            std::fs::copy(root.join(file), moved.join(file)).unwrap();
        }
        let here = sources_hash(root).unwrap();
        assert_eq!(sources_hash(&moved).unwrap(), here);

        let edited = moved.join("src/plugin/abi.rs");
        let mut text = std::fs::read_to_string(&edited).unwrap();
        text.push('\n');
        std::fs::write(&edited, text).unwrap();
        assert_ne!(sources_hash(&moved).unwrap(), here);

        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let e = sources_hash(&empty).unwrap_err();
        assert!(e.contains("empty/src"), "{e}");
    }
}

//! A library whose manifest says it was built for another engine build and compiler (as an old
//! plugin binary would): the loader must refuse it field by field, without calling it.

use incubator_core::plugin::abi::{self, Manifest};
use std::ffi::c_char;

#[no_mangle]
pub static INCUBATOR_PLUGIN_ABI: u32 = abi::ABI_VERSION;

#[no_mangle]
pub static INCUBATOR_PLUGIN_MANIFEST: Manifest = Manifest {
    plugin_name: c"stale-engine".as_ptr(),
    plugin_version: c"0.0.1".as_ptr(),
    rustc: c"1.80.0 (051478957371ee0084a7c0913941d2a8c4757bb9)".as_ptr(),
    engine_version: c"0.0.9".as_ptr(),
    engine_build: c"0123456789abcdef".as_ptr(),
    features: c"cuda".as_ptr(),
    profile: abi::c_str!(abi::PROFILE) as *const c_char,
    engine_instance: abi::engine_instance,
};

/// Never reached: the manifest is refused first.
#[no_mangle]
pub extern "C" fn incubator_plugin_register(_: *mut std::ffi::c_void) -> *mut c_char {
    std::process::abort()
}

//! A library that declares a plugin ABI this engine does not speak (as a plugin built for a
//! future engine would): the loader must stop after reading the integer, before anything else.

#[no_mangle]
pub static INCUBATOR_PLUGIN_ABI: u32 = 2;

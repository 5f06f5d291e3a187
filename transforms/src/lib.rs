//! Built-in transforms. `register` adds them to a registry, one line each.

pub mod filter;
pub mod map;
#[cfg(feature = "wasm")]
pub mod wasm;
pub mod window;

use connectd_sdk::Registry;

pub fn register(registry: &mut Registry) {
    registry.transform("filter", filter::build);
    registry.transform("map", map::build);
    registry.transform("window", window::build);
    #[cfg(feature = "wasm")]
    registry.transform("wasm", wasm::build);
}

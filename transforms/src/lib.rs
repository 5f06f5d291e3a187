//! Built-in transforms. `register` adds them to a registry, one line each.

pub mod filter;
pub mod map;
pub mod window;

use connectd_sdk::Registry;

pub fn register(registry: &mut Registry) {
    registry.transform("filter", filter::build);
    registry.transform("map", map::build);
    registry.transform("window", window::build);
}

//! Built-in transforms. `register` adds them to a registry, one line each.

pub mod dedup;
pub mod filter;
pub mod join;
pub(crate) mod keys;
pub mod map;
#[cfg(test)]
mod test_config;
pub(crate) mod time;
#[cfg(feature = "wasm")]
pub mod wasm;
pub mod window;

use connectd_sdk::Registry;

pub fn register(registry: &mut Registry) {
    registry.transform::<dedup::DedupOptions>("dedup", dedup::build);
    registry.transform::<filter::FilterOptions>("filter", filter::build);
    registry.transform::<join::JoinOptions>("join", join::build);
    registry.transform::<map::MapOptions>("map", map::build);
    registry.transform::<window::WindowOptions>("window", window::build);
    #[cfg(feature = "wasm")]
    registry.transform::<wasm::WasmOptions>("wasm", wasm::build);
}

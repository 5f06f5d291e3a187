//! What a plugin sees of time and chance unless its pipeline allows them
//! (`allow: [clock, random]`): clocks frozen at 0 and a fixed byte sequence, so the
//! same input gives the same output — what a replay after a trap or a crash needs.

use std::time::Duration;

use wasmtime_wasi::{Deterministic, HostMonotonicClock, HostWallClock};

/// A clock that never moves: the wall clock reads 1970-01-01, the monotonic one 0.
#[derive(Debug, Clone, Copy)]
pub struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }

    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        0
    }
}

/// The same "random" bytes for every instance: 256 bytes of a fixed LCG, cycled.
pub fn fixed_random() -> Deterministic {
    let mut x: u32 = 0x2545_f491;
    let bytes = (0..256)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect();
    Deterministic::new(bytes)
}

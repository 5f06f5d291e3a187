//! Built against a different interface version than the host's.

wit_bindgen::generate!({ path: "wit", world: "transform" });

use connectd::plugin::host::log;
use connectd::plugin::types::Level;

struct Other;

impl Guest for Other {
    fn init(_config: String) -> Result<(), String> {
        log(Level::Info, "never reached");
        Ok(())
    }
    fn process(batch: Vec<Event>) -> Result<Vec<Event>, Failure> {
        Ok(batch)
    }
    fn snapshot() -> Vec<u8> {
        Vec::new()
    }
    fn restore(_state: Vec<u8>) -> Result<(), String> {
        Ok(())
    }
}

export!(Other);

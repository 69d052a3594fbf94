#![no_main]
//! `leaky::train::load_checkpoint_bytes` into a 4-3-2 MLP: Ok or Err, never a panic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = leaky::data::fuzz::checkpoint(data);
});

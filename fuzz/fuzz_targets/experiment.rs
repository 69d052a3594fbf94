#![no_main]
//! `leaky::data::fuzz::experiment`: must return Ok or Err, never panic, abort or hang.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = leaky::data::fuzz::experiment(data);
});

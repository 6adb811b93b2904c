//! Arbitrary bytes as config text: `Config::from_toml_str` returns a config or an error,
//! never panics. (`${VAR}` secrets resolve from the process environment, as in `load`; the
//! `config_values` target covers the resolved case.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = Config::from_toml_str(text) {
        // Every error renders (the CLI prints it).
        let _ = e.to_string();
    }
});

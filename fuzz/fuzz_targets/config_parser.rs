//! The config parser never panics: any text is a config or an error naming a place.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let path = std::path::Path::new("/nonexistent/services.json");
        if let Err(e) = pm_supervisor::config::Config::parse(path, text) {
            assert!(e.to_string().starts_with("/nonexistent/services.json:"));
        }
    }
});

//! The state file a crashed run leaves: any bytes are checked leftovers or an error, never a
//! panic, and nothing accepted names a process loosely: no start time 0 (it would match any
//! process), no pid that is not a possible group leader, a token of hex digits only.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(left) = pm_supervisor::testing::parse_state(data) {
        for &(pid, start_time) in &left.groups {
            assert!(pid > 1 && start_time != 0, "({pid}, {start_time}) accepted");
        }
        assert!(left.token.len() <= 64);
        assert!(
            left.token.bytes().all(|b| b.is_ascii_hexdigit()),
            "{:?}",
            left.token
        );
    }
});

//! Planted bugs: the fault suite's proof that it can fail (issue #7).
//!
//! A test that has never been red proves little. With the cargo feature `planted-bugs`
//! (turned on only by `crates/vetric`'s dev-dependencies, so only the TEST build of the
//! binary has it; release builds never do), a few deliberate bugs are compiled in, each
//! switched on at run time by `VETRIC_PLANTED_BUG=<name>` in the process environment. The
//! fault-suite tests start `vetric serve` with one of them and assert that their checker
//! reports the violation (see `crates/vetric/tests/r2_notifications.rs`). Without the
//! feature `planted` is a constant `false` and the bug paths are dead code.

/// True when the planted bug `name` is switched on for this process.
pub(crate) fn planted(name: &str) -> bool {
    cfg!(feature = "planted-bugs") && std::env::var("VETRIC_PLANTED_BUG").is_ok_and(|v| v == name)
}

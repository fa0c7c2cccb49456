//! Planted bugs: deliberate regressions the fault suite turns on to prove it can fail
//! (issue #7; `crates/vetric/tests/fault_r1_r3.rs`).
//!
//! A test that never fails proves nothing. Each planted bug re-creates, behind a name, a bug the
//! reliability tests exist to catch; the suite runs the binary with `VETRIC_PLANTED_BUG=<name>`
//! and asserts that its checker goes red. The code is compiled only with the `planted-bugs`
//! cargo feature, which only `crates/vetric`'s dev-dependencies turn on: a release build (or
//! any build without the feature) answers `false` whatever the environment says, and the
//! optimiser removes the branch.
//!
//! Bugs known here:
//! - `missing-charger-list-is-empty`: a `/chargepoints` answer without `chargePointList` is
//!   read as an empty list (the legacy system's "0 chargers" night) instead of a shape change.

/// Whether the planted bug `name` is switched on for this process.
pub(crate) fn planted(name: &str) -> bool {
    cfg!(feature = "planted-bugs") && std::env::var("VETRIC_PLANTED_BUG").is_ok_and(|v| v == name)
}

//! The shared harness (`crates/testkit`), under the name the test modules import it by.

pub use testkit::api::*;

//! Policies: the engine (`crates/policy`, re-exported here at the paths the
//! rest of the server and the tests name) and its adapter, [`serving`]: the
//! hot-reloadable `/validate` implementation (reload, metrics, the answer).

pub use otel_admission_policy::*;

pub mod serving;

pub use serving::{Policies, bounded};

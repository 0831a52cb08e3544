//! The one test harness of the repository: child processes with a log file of their own and
//! the `hack/` scripts ([`process`]), HTTP on localhost and free ports ([`http`]), values of a
//! Prometheus text page ([`metrics`]), waits on observable state ([`wait`]) and the pinned
//! upstream CRDs ([`upstream`]).
//!
//! Used by the end-to-end tests (`sluice-e2e` re-exports it), the operator's tests and
//! loadgen's bench. It depends on no sluice crate, so none of them forms a dependency cycle.

pub mod http;
pub mod metrics;
pub mod paths;
pub mod process;
pub mod upstream;
pub mod wait;

pub use http::{Response, free_port, get, get_blocking};
pub use paths::{bin_dir, cache_dir, go, go_mod_cache, repo_root};
pub use process::{Process, env_value, hack, helm_binary, run, service_address};
pub use wait::{Outcome, wait_for, wait_for_blocking};

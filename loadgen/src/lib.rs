//! sluice-loadgen: contract events (keyed by customer) at a controlled rate, with a
//! configurable share of invalid and duplicate records, deterministic under a seed.

pub mod generate;
pub mod pipeline_eval;
pub mod produce;

pub use generate::{Event, EventClock, EventKind, Generator, GeneratorConfig};
pub use produce::{LoadSpec, Summary, ensure_topic, produce};

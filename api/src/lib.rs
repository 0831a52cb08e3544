//! Types shared by the sluice binaries and tests: the input event contract
//! (`shared/contract/transaction.schema.json`) and the worker configuration that the
//! operator renders into a ConfigMap.

pub mod config;
pub mod event;
pub mod kafka_refusal;

pub use config::{ConfigError, WorkerConfig, settings_help};
pub use event::{Channel, PaymentMethod, Transaction};
pub use kafka_refusal::{KafkaRefusal, kafka_refusal};

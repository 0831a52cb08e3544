//! Hot reload: the config file (a mounted ConfigMap) is watched, and the changes that need
//! no restart are applied by the consumer (the fraud switches). A changed file that does not
//! load or validate is refused with its reason logged, and the running config stays.

use sluice_api::WorkerConfig;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

pub struct ConfigReload {
    path: PathBuf,
    modified: Option<SystemTime>,
    checked: Instant,
}

impl ConfigReload {
    const EVERY: Duration = Duration::from_secs(5);

    /// Watch `path`, as loaded now.
    pub fn watch(path: PathBuf) -> Self {
        Self {
            modified: std::fs::metadata(&path).and_then(|m| m.modified()).ok(),
            path,
            checked: Instant::now(),
        }
    }

    /// The file's new configuration, or why it was refused, when the file changed since the
    /// last look (at most every [`Self::EVERY`]).
    pub fn changed_config(&mut self) -> Option<anyhow::Result<WorkerConfig>> {
        if self.checked.elapsed() < Self::EVERY {
            return None;
        }
        self.checked = Instant::now();
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if modified == self.modified {
            return None;
        }
        self.modified = modified;
        Some(super::load(Some(&self.path)))
    }
}

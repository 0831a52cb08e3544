//! Wall time of each bench phase, printed as it ends and together at the end, so the
//! whole run's budget can be checked phase by phase.

use serde_json::{Value, json};
use std::time::Instant;

pub struct PhaseClock {
    started: Instant,
    laps: Vec<(&'static str, f64)>,
}

impl PhaseClock {
    pub fn start() -> Self {
        Self {
            started: Instant::now(),
            laps: Vec::new(),
        }
    }

    /// `phase` ended now; it began where the previous one ended.
    pub fn lap(&mut self, phase: &'static str) {
        let seconds = self.started.elapsed().as_secs_f64() - self.total();
        eprintln!("   ({phase} took {seconds:.0}s)");
        self.laps.push((phase, seconds));
    }

    fn total(&self) -> f64 {
        self.laps.iter().map(|l| l.1).sum()
    }

    pub fn to_json(&self) -> Value {
        self.laps
            .iter()
            .map(|(p, s)| (p.to_string(), json!(s.round())))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }

    pub fn print(&self) {
        let parts: Vec<String> = self
            .laps
            .iter()
            .map(|(p, s)| format!("{p} {s:.0}s"))
            .collect();
        eprintln!("phases: {} (total {:.0}s)", parts.join(", "), self.total());
    }
}

//! Waits on observable state: poll a check until it holds, or fail after a timeout with a
//! message saying what was awaited.

use anyhow::{Result, anyhow};
use std::future::Future;
use std::time::{Duration, Instant};

const EVERY: Duration = Duration::from_millis(200);

/// What a check returns: `true` / `Some(value)` when the awaited state holds; an error is
/// retried like "not yet" and reported if the time runs out.
pub trait Outcome<T> {
    fn outcome(self) -> Result<Option<T>>;
}

impl Outcome<()> for bool {
    fn outcome(self) -> Result<Option<()>> {
        Ok(self.then_some(()))
    }
}

impl<T> Outcome<T> for Option<T> {
    fn outcome(self) -> Result<Option<T>> {
        Ok(self)
    }
}

impl Outcome<()> for Result<bool> {
    fn outcome(self) -> Result<Option<()>> {
        self.map(|held| held.then_some(()))
    }
}

impl<T> Outcome<T> for Result<Option<T>> {
    fn outcome(self) -> Result<Option<T>> {
        self
    }
}

/// Poll `check` every 200 ms until it holds; its value, or an error naming `what` (with the
/// last error of `check`, if any) once `timeout` has passed.
pub async fn wait_for<T, O, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    O: Outcome<T>,
    F: FnMut() -> Fut,
    Fut: Future<Output = O>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check().await.outcome() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => None,
            Err(e) => Some(e),
        };
        if Instant::now() >= deadline {
            return Err(timed_out(what, timeout, last));
        }
        tokio::time::sleep(EVERY).await;
    }
}

/// [`wait_for`] on the calling thread, for code without an async runtime.
pub fn wait_for_blocking<T, O, F>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    O: Outcome<T>,
    F: FnMut() -> O,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check().outcome() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => None,
            Err(e) => Some(e),
        };
        if Instant::now() >= deadline {
            return Err(timed_out(what, timeout, last));
        }
        std::thread::sleep(EVERY);
    }
}

fn timed_out(what: &str, timeout: Duration, last: Option<anyhow::Error>) -> anyhow::Error {
    let message = format!("timed out after {timeout:?} waiting for {what}");
    match last {
        Some(e) => e.context(message),
        None => anyhow!(message),
    }
}

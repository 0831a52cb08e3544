//! Child processes: a long-running one with its own log file ([`Process`]), and commands run
//! to completion ([`run`], [`hack`]).

use anyhow::{Context, Result, bail, ensure};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::repo_root;

/// A running child process writing stdout and stderr to its own log file; killed (SIGKILL)
/// when dropped.
pub struct Process {
    child: Child,
    pub log_path: PathBuf,
}

impl Process {
    /// Spawn `cmd` with stdin closed and its output into `log_path` (created or truncated).
    pub fn spawn(cmd: &mut Command, log_path: PathBuf) -> Result<Self> {
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {:?}", cmd.get_program()))?;
        Ok(Self { child, log_path })
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if the process has exited.
    pub fn exited(&mut self) -> Result<Option<ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// SIGKILL: no flush, no goodbye.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait up to `within` for a successful exit (SIGKILL after that).
    pub fn terminate(&mut self, within: Duration) -> Result<()> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                ensure!(
                    status.success(),
                    "{} exited with {status}; log: {}",
                    self.child.id(),
                    self.log_path.display()
                );
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill9();
                bail!(
                    "process {} did not stop within {within:?} of SIGTERM; log: {}",
                    self.child.id(),
                    self.log_path.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Everything the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The last `lines` lines of the log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Run `cmd` to completion with stdin closed; its stdout, or an error naming the command with
/// its stderr (and stdout, where tools such as helm report).
pub fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("spawning {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Run a `hack/` script (its progress on our stderr) and return its stdout.
pub fn hack(script: &str, args: &[&str]) -> Result<String> {
    let out = Command::new("bash")
        .arg(repo_root().join("hack").join(script))
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running hack/{script}"))?;
    ensure!(
        out.status.success(),
        "hack/{script} {args:?} failed ({})",
        out.status
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The helm binary `hack/helm.sh` prints (built into the cache if absent).
pub fn helm_binary() -> Result<PathBuf> {
    let out = hack("helm.sh", &[])?;
    let path = out
        .lines()
        .last()
        .context("hack/helm.sh printed no helm path")?;
    Ok(PathBuf::from(path.trim()))
}

/// The value of `KEY=value` in the env lines a hack script prints.
pub fn env_value(env: &str, key: &str) -> Option<String> {
    env.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(|v| v.trim().to_owned())
}

/// A service's address: `$key` when set and not empty, else what `hack/<script> <args>`
/// prints as `key=…` after starting (or reusing) the service.
pub fn service_address(key: &str, script: &str, args: &[&str]) -> Result<String> {
    if let Ok(v) = std::env::var(key)
        && !v.trim().is_empty()
    {
        return Ok(v.trim().to_owned());
    }
    let out = hack(script, args)?;
    env_value(&out, key).with_context(|| format!("hack/{script} printed no {key}="))
}

//! The fraud switches reload from the mounted config file without a restart: the same
//! worker process flags everything at threshold 0, then nothing once the file says 1.

use sluice_e2e::{Pipeline, wait_for};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threshold_change_applies_without_restart() -> anyhow::Result<()> {
    let p = Pipeline::new("fraud_hot_reload", 2).await?;
    let config = std::env::temp_dir().join(format!("{}-config.yaml", p.name));
    std::fs::write(&config, "fraud:\n  enabled: true\n  threshold: 0.0\n")?;
    let w = p.worker().env("SLUICE_CONFIG", config.display()).spawn()?;

    let mut first = p.load(300, 1_000, 21);
    first.generator.invalid_ratio = 0.0;
    first.generator.duplicate_ratio = 0.0;
    let first = p.produce(first).await?;
    p.wait_handled(first.produced as i64, Duration::from_secs(60)).await?;
    assert_eq!(p.scalar("SELECT count(*) FROM sluice.fraud_alerts").await?, 300, "threshold 0 flags every row");

    std::fs::write(&config, "fraud:\n  enabled: true\n  threshold: 1.0\n")?;
    wait_for(Duration::from_secs(20), || async { Ok(w.log().contains("applied reloaded fraud settings")) }).await?;

    let mut second = p.load(300, 1_000, 22);
    second.generator.invalid_ratio = 0.0;
    second.generator.duplicate_ratio = 0.0;
    let second = p.produce(second).await?;
    p.wait_handled((first.produced + second.produced) as i64, Duration::from_secs(60)).await?;
    assert_eq!(p.scalar("SELECT count(*) FROM sluice.fraud_alerts").await?, 300, "threshold 1 flags nothing new");
    assert_eq!(p.scalar("SELECT count(*) FROM sluice.transactions WHERE is_fraud").await?, 300);
    assert_eq!(w.log().matches("starting sluice-worker").count(), 1, "one process throughout");
    let _ = std::fs::remove_file(&config);
    Ok(())
}

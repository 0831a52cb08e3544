//! The fraud switches reload from the mounted config file without a restart. The same
//! worker process starts with scoring off (no verdicts, no customer state at all), is
//! switched on at threshold 0 (flags everything), then raised to 1 (flags nothing).

use sluice_e2e::{LoadSpec, Pipeline, wait_for};
use std::time::Duration;

fn clean_load(p: &Pipeline, count: u64, seed: u64) -> LoadSpec {
    let mut spec = p.load(count, 1_000, seed);
    spec.generator.invalid_ratio = 0.0;
    spec.generator.duplicate_ratio = 0.0;
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fraud_switches_apply_without_restart() -> anyhow::Result<()> {
    let p = Pipeline::new("fraud_hot_reload", 2).await?;
    let config = std::env::temp_dir().join(format!("{}-config.yaml", p.name));
    std::fs::write(&config, "fraud:\n  enabled: false\n")?;
    let mut w = p.worker().env("SLUICE_CONFIG", config.display()).spawn()?;
    let reloads = || async {
        w.metric("sluice_config_reloads_total", &[("result", "applied")])
            .await
    };
    let mut handled = 0;

    handled += p.produce(clean_load(&p, 200, 20)).await?.produced as i64;
    p.wait_handled(handled, Duration::from_secs(60)).await?;
    assert_eq!(
        p.scalar("SELECT count(*) FROM sluice.transactions WHERE fraud_score IS NOT NULL")
            .await?,
        0
    );
    assert_eq!(
        p.scalar("SELECT count(*) FROM sluice.customer_profiles")
            .await?,
        0,
        "off from the start: no state"
    );

    std::fs::write(&config, "fraud:\n  enabled: true\n  threshold: 0.0\n")?;
    wait_for("the first reload", Duration::from_secs(20), || async {
        reloads().await.is_ok_and(|n| n == 1.0)
    })
    .await?;
    handled += p.produce(clean_load(&p, 300, 21)).await?.produced as i64;
    p.wait_handled(handled, Duration::from_secs(60)).await?;
    assert_eq!(
        p.scalar("SELECT count(*) FROM sluice.fraud_alerts").await?,
        300,
        "threshold 0 flags every row"
    );
    // Switched on, the stage keeps state, persisted at its next checkpoint
    // (fraud.profile_checkpoint_ms, 5 s by default).
    wait_for("profiles persisted", Duration::from_secs(20), || async {
        p.scalar("SELECT count(*) FROM sluice.customer_profiles")
            .await
            .is_ok_and(|n| n > 0)
    })
    .await?;

    std::fs::write(&config, "fraud:\n  enabled: true\n  threshold: 1.0\n")?;
    wait_for("the second reload", Duration::from_secs(20), || async {
        reloads().await.is_ok_and(|n| n == 2.0)
    })
    .await?;
    handled += p.produce(clean_load(&p, 300, 22)).await?.produced as i64;
    p.wait_handled(handled, Duration::from_secs(60)).await?;
    assert_eq!(
        p.scalar("SELECT count(*) FROM sluice.fraud_alerts").await?,
        300,
        "threshold 1 flags nothing new"
    );
    assert_eq!(
        p.scalar("SELECT count(*) FROM sluice.transactions WHERE is_fraud")
            .await?,
        300
    );
    assert_eq!(
        p.scalar("SELECT count(*) FROM sluice.transactions WHERE fraud_score IS NOT NULL")
            .await?,
        600
    );
    assert!(w.process.exited()?.is_none(), "one process throughout");
    let _ = std::fs::remove_file(&config);
    Ok(())
}

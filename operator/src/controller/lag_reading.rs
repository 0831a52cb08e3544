//! Reading a pipeline's lag and, when it is autoscaled, deciding its size: what the status
//! shows, the lag gauges export and the external metric serves.

use std::time::{Duration, Instant};

use kube::runtime::reflector::ObjectRef;

use super::{Context, LAG_SAMPLE_INTERVAL, SAMPLE_INTERVAL};
use crate::autoscale::{Autoscaler, SizingOptions, Verdict};
use crate::crd::{AutoscalingStatus, PipelineDeployment};
use crate::kafka_auth::{AuthError, KafkaAuth};
use crate::status::{self, AutoscaleObserved};

/// How often the lag of a pipeline is read: every [`SAMPLE_INTERVAL`] when it is autoscaled,
/// every [`LAG_SAMPLE_INTERVAL`] otherwise (for the status and the lag alerts only).
fn lag_sample_interval(pd: &PipelineDeployment) -> Duration {
    if pd.autoscaled() {
        SAMPLE_INTERVAL
    } else {
        LAG_SAMPLE_INTERVAL
    }
}

/// Reads the lag of a pipeline (at most every [`lag_sample_interval`]) and, when it is
/// autoscaled, sizes it: what the status shows, the lag gauges export and the external
/// metric serves. The lag is read for every pipeline so that the lag alerts, which use the
/// operator's gauges, still fire when every worker is down.
pub(super) async fn observe_lag(
    ctx: &Context,
    pd: &PipelineDeployment,
    rollout: status::Rollout,
    kafka_auth: &Result<KafkaAuth, AuthError>,
) -> AutoscaleObserved {
    let key = ObjectRef::from(pd);
    let cached = ctx
        .readings
        .lock()
        .expect("readings poisoned")
        .get(&key)
        .cloned();
    if let Some((at, reading)) = cached
        && at.elapsed() < lag_sample_interval(pd)
        && reading.status.is_some() == pd.autoscaled()
    {
        return reading;
    }
    let obs = match kafka_auth {
        Ok(auth) => {
            ctx.autoscaler
                .observe_with(pd, auth.props(), rollout.ready_replicas)
                .await
        }
        Err(e) => ctx
            .autoscaler
            .unreadable(pd, format!("Kafka credentials: {e}")),
    };
    let unknown = obs.lag.as_result().err().map(str::to_owned);
    let status = if pd.autoscaled() {
        Some(decide_size(ctx, pd, rollout, &obs, unknown.as_deref()))
    } else {
        ctx.last_unknown
            .lock()
            .expect("last_unknown poisoned")
            .remove(&key);
        None
    };
    let reading = AutoscaleObserved {
        lag: obs.total_lag(),
        lag_seconds: obs.time_lag_seconds(),
        unknown,
        status,
    };
    ctx.metrics.observe_autoscaling(pd, &reading);
    ctx.readings
        .lock()
        .expect("readings poisoned")
        .insert(key, (Instant::now(), reading.clone()));
    reading
}

/// The autoscaler's decision for an autoscaled pipeline, from a fresh lag reading.
fn decide_size(
    ctx: &Context,
    pd: &PipelineDeployment,
    rollout: status::Rollout,
    obs: &crate::autoscale::Observation,
    unknown: Option<&str>,
) -> AutoscalingStatus {
    let key = ObjectRef::from(pd);
    let current = rollout.desired_replicas;
    let verdict = Autoscaler::decide(
        pd,
        obs,
        current,
        !rollout.rolled_out,
        &SizingOptions {
            target_utilisation: pd
                .spec
                .autoscaling
                .as_ref()
                .map_or(SizingOptions::default().target_utilisation, |a| {
                    a.target_utilization
                }),
            connection_budget: pd.spec.postgres.connection_budget,
        },
    );
    let (mut needed, mut reason) = match (&verdict, unknown) {
        (_, Some(why)) => (None, format!("lag unknown: {why}")),
        (Verdict::Scale(d), None) => (Some(d.desired), d.to_string()),
        (Verdict::Hold(h), None) => (Some(verdict.replicas(current)), h.to_string()),
    };
    // An outage longer than the HPA's scale-down window empties the window of the sizes
    // recommended before it, so the first reading after it would scale down at once, on rates
    // measured across a restart and a rebalance. Hold the size for one window instead.
    let window = Duration::from_secs(
        pd.spec
            .autoscaling
            .as_ref()
            .map_or(0, |a| a.scale_down_stabilization_seconds.max(0) as u64),
    );
    let since_unknown = {
        let mut last = ctx.last_unknown.lock().expect("last_unknown poisoned");
        if unknown.is_some() {
            last.insert(key.clone(), Instant::now());
        }
        last.get(&key).map(Instant::elapsed)
    };
    if let (Some(n), Some(since)) = (needed, since_unknown)
        && unknown.is_none()
        && since < window
        && n < current
    {
        needed = Some(current);
        reason = format!(
            "{current} workers held: the lag was unknown {}s ago, within the {}s scale-down window ({reason})",
            since.as_secs(),
            window.as_secs()
        );
    }
    let rates = &obs.rates;
    AutoscalingStatus {
        sampled_at: k8s_openapi::jiff::Timestamp::now()
            .round(k8s_openapi::jiff::Unit::Second)
            .unwrap_or_else(|_| k8s_openapi::jiff::Timestamp::now())
            .to_string(),
        needed_workers: needed,
        reason,
        input_rate: rates.input.map(round2),
        processing_rate: rates.processing.map(round2),
        per_worker_rate: rates.per_worker.map(|p| round2(p.records_per_sec)),
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

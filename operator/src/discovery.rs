//! Which optional APIs the cluster serves (CloudNativePG, Prometheus Operator, KEDA). Detected, not
//! assumed, and cached briefly so 200 reconciles do not make 200 discovery calls.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::Client;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caps {
    pub cnpg: bool,
    pub service_monitor: bool,
    pub prometheus_rule: bool,
    /// KEDA's `ScaledObject` (keda.sh/v1alpha1).
    pub keda: bool,
}

#[cfg(test)]
impl Caps {
    /// A cluster serving every optional API.
    pub const ALL: Caps = Caps {
        cnpg: true,
        service_monitor: true,
        prometheus_rule: true,
        keda: true,
    };
}

pub struct Capabilities {
    client: Client,
    ttl: Duration,
    cached: Mutex<Option<(Instant, Caps)>>,
}

impl Capabilities {
    pub fn new(client: Client, ttl: Duration) -> Self {
        Self {
            client,
            ttl,
            cached: Mutex::new(None),
        }
    }

    /// The current capabilities, refreshed when older than the TTL. A failed lookup counts as
    /// "absent" for that group (and is retried after the TTL).
    pub async fn get(&self) -> Caps {
        if let Some((at, caps)) = *self.cached.lock().expect("caps poisoned")
            && at.elapsed() < self.ttl
        {
            return caps;
        }
        let serves = |group_version: &'static str, plural: &'static str| async move {
            self.client
                .list_api_group_resources(group_version)
                .await
                .map(|l| l.resources.iter().any(|r| r.name == plural))
                .unwrap_or(false)
        };
        let (cnpg, (sm, pr)) = (serves("postgresql.cnpg.io/v1", "clusters").await, {
            let l = self
                .client
                .list_api_group_resources("monitoring.coreos.com/v1")
                .await;
            let has = |p: &str| {
                l.as_ref()
                    .map(|l| l.resources.iter().any(|r| r.name == p))
                    .unwrap_or(false)
            };
            (has("servicemonitors"), has("prometheusrules"))
        });
        let keda = serves("keda.sh/v1alpha1", "scaledobjects").await;
        let caps = Caps {
            cnpg,
            service_monitor: sm,
            prometheus_rule: pr,
            keda,
        };
        *self.cached.lock().expect("caps poisoned") = Some((Instant::now(), caps));
        caps
    }
}

//! Checks of a pipeline's use of its database that need more than its own spec: no two
//! pipelines share a schema of one database ([`schema_in_use`]), and the workers' pools fit
//! the server's `max_connections` ([`over_connection_budget`]).

use kube::ResourceExt;

use super::observe::max_workers;
use crate::crd::PipelineDeployment;

/// Reason of `Ready=False` and `Degraded=True` when another pipeline already uses the schema.
pub const SCHEMA_IN_USE: &str = "SchemaInUse";
/// Reason of `Degraded=True` when the workers' pools may open more connections than the
/// server allows.
pub const CONNECTIONS_OVER_BUDGET: &str = "ConnectionsOverBudget";
/// Connections PostgreSQL keeps for superusers (`superuser_reserved_connections` default).
const SUPERUSER_RESERVED: i64 = 3;

/// Whether `a` and `b` write to the same database, as far as their specs tell: the same
/// external Secret key holds both primary URLs. (A CloudNativePG Cluster belongs to one
/// pipeline, and URLs in different Secrets cannot be compared without reading them.)
fn same_database(a: &PipelineDeployment, b: &PipelineDeployment) -> bool {
    match (&a.spec.postgres.external, &b.spec.postgres.external) {
        (Some(x), Some(y)) => x.primary_url == y.primary_url,
        _ => false,
    }
}

/// The pipeline among `others` (the namespace's pipelines) that already uses `pd`'s schema
/// in `pd`'s database: the older of the two keeps it (then the name decides), so the answer
/// is the same whichever is reconciled first.
pub fn schema_in_use<'a>(
    pd: &PipelineDeployment,
    others: &'a [PipelineDeployment],
) -> Option<&'a PipelineDeployment> {
    let schema = pd.schema();
    let key = |p: &PipelineDeployment| (p.creation_timestamp().map(|t| t.0), p.name_any());
    others.iter().find(|o| {
        o.name_any() != pd.name_any()
            && same_database(pd, o)
            && o.schema() == schema
            && key(o) < key(pd)
    })
}

/// The Degraded reason and message when `pd`'s workers, at their most, may hold more
/// connections than its CloudNativePG server allows (`max_connections` less the superuser
/// reserve). Each worker holds `spec.postgres.maxConnections` to the primary, plus the two
/// of its analytics pool when reads go to the primary (`readReplicas: 0`). `None` for an
/// external database, whose `max_connections` the operator does not know (set
/// `spec.postgres.connectionBudget` for it).
pub fn over_connection_budget(pd: &PipelineDeployment) -> Option<(String, String)> {
    let c = pd.spec.postgres.cloudnativepg.as_ref()?;
    let reader = if c.read_replicas == 0 { 2 } else { 0 };
    let per_worker = i64::from(pd.spec.postgres.max_connections) + reader;
    let workers = i64::from(max_workers(pd));
    let server = c.server_max_connections();
    let available = server - SUPERUSER_RESERVED;
    let wanted = per_worker * workers;
    (wanted > available).then(|| {
        (
            CONNECTIONS_OVER_BUDGET.into(),
            format!(
                "{workers} workers × {per_worker} connections = {wanted}, more than the {available} the database allows (max_connections {server} less {SUPERUSER_RESERVED} reserved): raise spec.postgres.cloudnativepg.parameters.max_connections, or lower spec.postgres.maxConnections or the workers' maximum"
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::children::testing::{BASIC, pipeline};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn created(mut pd: PipelineDeployment, name: &str, secs: i64) -> PipelineDeployment {
        pd.metadata.name = Some(name.into());
        pd.metadata.creation_timestamp = Some(Time(
            k8s_openapi::jiff::Timestamp::from_second(secs).unwrap(),
        ));
        pd
    }

    #[test]
    fn the_younger_of_two_pipelines_on_one_schema_is_refused() {
        let mut a = created(pipeline(BASIC), "a", 100);
        let mut b = created(pipeline(BASIC), "b", 200);
        // Own schemas (the default): no conflict on the same database.
        let all = vec![a.clone(), b.clone()];
        assert!(schema_in_use(&a, &all).is_none());
        assert!(schema_in_use(&b, &all).is_none());
        // One explicit schema for both: the older keeps it.
        a.spec.postgres.schema = Some("shared".into());
        b.spec.postgres.schema = Some("shared".into());
        let all = vec![a.clone(), b.clone()];
        assert!(schema_in_use(&a, &all).is_none());
        assert_eq!(schema_in_use(&b, &all).unwrap().name_any(), "a");
        // Another database (another Secret key): no conflict.
        b.spec.postgres.external.as_mut().unwrap().primary_url.key = "other".into();
        let all = vec![a.clone(), b.clone()];
        assert!(schema_in_use(&b, &all).is_none());
    }

    #[test]
    fn the_default_schema_is_per_pipeline_and_a_plain_identifier() {
        let pd = pipeline(BASIC);
        assert_eq!(pd.schema(), "sluice_ns_payments");
        let long = crate::crd::pipeline_schema(&"n".repeat(63), &"Web-Shop.EU".repeat(20));
        assert_eq!(long.len(), 63);
        assert!(
            long.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        );
        // Names sharing a long prefix still differ.
        let other = crate::crd::pipeline_schema(&"n".repeat(63), &"Web-Shop.EU".repeat(21));
        assert_ne!(long, other);
        assert_eq!(
            crate::crd::pipeline_schema("team-a", "payments.v2"),
            "sluice_team_a_payments_v2"
        );
    }

    #[test]
    fn pools_over_max_connections_are_reported() {
        let cnpg = |yaml_extra: &str| {
            pipeline(&BASIC.replace(
                "    external:\n      primaryUrl: {name: db, key: url}\n",
                &format!("    maxConnections: 10\n    cloudnativepg: {{{yaml_extra}}}\n"),
            ))
        };
        // 2 workers (not autoscaled: minReplicas) × 10 = 20 < 97.
        assert_eq!(over_connection_budget(&cnpg("")), None);
        let small = cnpg("parameters: {max_connections: \"20\"}, readReplicas: 0");
        let (reason, msg) = over_connection_budget(&small).unwrap();
        assert_eq!(reason, CONNECTIONS_OVER_BUDGET);
        assert!(
            msg.starts_with("2 workers × 12 connections = 24, more than the 17"),
            "{msg}"
        );
        assert_eq!(over_connection_budget(&pipeline(BASIC)), None, "external");
    }
}

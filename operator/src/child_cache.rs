//! What the operator last saw of each child (through its own watches) and what it last
//! applied, so a reconcile skips server-side applies that would change nothing. Owned-object
//! events (e.g. every Deployment status update) trigger many reconciles; without this each one
//! re-sends every child. A child that was edited, deleted or not yet seen is always applied:
//! the cache only saves work, it never skips a repair. It is fed by the very watch streams
//! that trigger reconciles (see [`ChildCache::track`]), so it is never behind the trigger.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::runtime::watcher::{self, Event};
use serde::Serialize;

/// (kind, namespace, name) of a child.
pub type Key = (String, String, String);

pub fn key(kind: &str, ns: &str, name: &str) -> Key {
    (kind.to_string(), ns.to_string(), name.to_string())
}

/// Identity of a child's observable state. Objects with a `generation` change it on spec
/// edits only (status churn does not), so labels and owners are added; objects without one
/// change `resourceVersion` on any write.
pub fn fingerprint(meta: &ObjectMeta) -> u64 {
    let mut h = DefaultHasher::new();
    match meta.generation {
        Some(g) => {
            g.hash(&mut h);
            meta.labels.hash(&mut h);
            meta.annotations.hash(&mut h);
            for o in meta.owner_references.iter().flatten() {
                (&o.uid, o.controller).hash(&mut h);
            }
        }
        None => meta.resource_version.hash(&mut h),
    }
    h.finish()
}

/// Hash of a desired object as it would be sent.
pub fn desired_hash<T: Serialize>(obj: &T) -> u64 {
    let mut h = DefaultHasher::new();
    serde_json::to_vec(obj)
        .expect("object serializes")
        .hash(&mut h);
    h.finish()
}

#[derive(Default)]
pub struct ChildCache {
    seen: Mutex<HashMap<Key, u64>>,
    applied: Mutex<HashMap<Key, (u64, u64)>>,
}

impl ChildCache {
    /// True when `desired` was applied before and the child has not changed since.
    pub fn unchanged(&self, key: &Key, desired: u64) -> bool {
        let applied = self
            .applied
            .lock()
            .expect("child cache poisoned")
            .get(key)
            .copied();
        let seen = self
            .seen
            .lock()
            .expect("child cache poisoned")
            .get(key)
            .copied();
        matches!((applied, seen), (Some((d, fp)), Some(s)) if d == desired && fp == s)
    }

    pub fn record_applied(&self, key: Key, desired: u64, meta: &ObjectMeta) {
        self.applied
            .lock()
            .expect("child cache poisoned")
            .insert(key, (desired, fingerprint(meta)));
    }

    fn saw(&self, kind: &str, meta: &ObjectMeta) {
        let k = key(
            kind,
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default(),
        );
        self.seen
            .lock()
            .expect("child cache poisoned")
            .insert(k, fingerprint(meta));
    }

    fn gone(&self, kind: &str, meta: &ObjectMeta) {
        let k = key(
            kind,
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default(),
        );
        self.seen.lock().expect("child cache poisoned").remove(&k);
        self.applied
            .lock()
            .expect("child cache poisoned")
            .remove(&k);
    }

    fn restart(&self, kind: &str) {
        self.seen
            .lock()
            .expect("child cache poisoned")
            .retain(|k, _| k.0 != kind);
    }

    /// Records every event of a child watch, then passes it on. The controller's owned-object
    /// triggers are this same stream, so the reconcile an edit triggers already sees the edit.
    pub fn track<K, S>(
        self: &Arc<Self>,
        kind: &str,
        events: S,
    ) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + use<K, S>
    where
        K: Resource + Send + 'static,
        S: Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
    {
        let cache = self.clone();
        let kind = kind.to_string();
        events.inspect(move |ev| match ev {
            Ok(Event::Apply(o) | Event::InitApply(o)) => cache.saw(&kind, o.meta()),
            Ok(Event::Delete(o)) => cache.gone(&kind, o.meta()),
            Ok(Event::Init) => cache.restart(&kind),
            Ok(Event::InitDone) | Err(_) => {}
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_only_what_was_applied_and_not_touched_since() {
        let o = ChildCache::default();
        let k = key("ConfigMap", "ns", "a");
        let meta = ObjectMeta {
            name: Some("a".into()),
            namespace: Some("ns".into()),
            resource_version: Some("1".into()),
            ..ObjectMeta::default()
        };
        assert!(!o.unchanged(&k, 7), "never applied");
        o.record_applied(k.clone(), 7, &meta);
        assert!(!o.unchanged(&k, 7), "not yet seen by the watch");
        o.saw("ConfigMap", &meta);
        assert!(o.unchanged(&k, 7));
        assert!(!o.unchanged(&k, 8), "desired state changed");
        o.saw(
            "ConfigMap",
            &ObjectMeta {
                resource_version: Some("2".into()),
                ..meta.clone()
            },
        );
        assert!(!o.unchanged(&k, 7), "edited by someone else");
        o.gone("ConfigMap", &meta);
        assert!(!o.unchanged(&k, 7), "deleted");
    }
}

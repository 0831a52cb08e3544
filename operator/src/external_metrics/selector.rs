//! Label selectors as the HPA sends them (`labelSelector` of an external metrics request).

use std::collections::BTreeMap;

use super::MetricError;

/// A parsed label selector: the equality- and set-based forms of the Kubernetes API
/// (`a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Selector(Vec<Requirement>);

#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Selector {
    pub fn parse(s: &str) -> Result<Self, MetricError> {
        let bad = || MetricError::BadRequest(format!("invalid labelSelector {s:?}"));
        let mut out = Vec::new();
        for part in split_top_level(s) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let words: Vec<&str> = part.splitn(2, char::is_whitespace).collect();
            if let [key, rest] = words.as_slice() {
                let rest = rest.trim();
                let (op, set) = if let Some(set) = rest.strip_prefix("notin") {
                    ("notin", set)
                } else if let Some(set) = rest.strip_prefix("in") {
                    ("in", set)
                } else {
                    ("", rest)
                };
                if !op.is_empty() {
                    let set = set
                        .trim()
                        .strip_prefix('(')
                        .and_then(|x| x.strip_suffix(')'))
                        .ok_or_else(bad)?;
                    let values = set.split(',').map(|v| v.trim().to_string()).collect();
                    out.push(if op == "in" {
                        Requirement::In(key.to_string(), values)
                    } else {
                        Requirement::NotIn(key.to_string(), values)
                    });
                    continue;
                }
            }
            if let Some((k, v)) = part.split_once("!=") {
                out.push(Requirement::NotIn(k.trim().into(), vec![v.trim().into()]));
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                out.push(Requirement::In(k.trim().into(), vec![v.trim().into()]));
            } else if let Some(k) = part.strip_prefix('!') {
                out.push(Requirement::DoesNotExist(k.trim().into()));
            } else if part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
            {
                out.push(Requirement::Exists(part.into()));
            } else {
                return Err(bad());
            }
        }
        Ok(Self(out))
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        })
    }
}

/// Split on commas outside parentheses (`a in (x,y),b=c` → two requirements).
fn split_top_level(s: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors_of_every_form() {
        let l = labels(&[("sluice.dev/pipeline", "payments"), ("team", "risk")]);
        for (s, want) in [
            ("", true),
            ("sluice.dev/pipeline=payments", true),
            ("sluice.dev/pipeline==payments,team=risk", true),
            ("sluice.dev/pipeline=refunds", false),
            ("team!=risk", false),
            ("sluice.dev/pipeline in (refunds, payments)", true),
            ("sluice.dev/pipeline notin (payments),team=risk", false),
            ("team", true),
            ("!team", false),
            ("!owner", true),
        ] {
            assert_eq!(Selector::parse(s).unwrap().matches(&l), want, "{s}");
        }
        assert!(Selector::parse("a in x").is_err());
    }
}

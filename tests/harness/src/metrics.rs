//! Values from a Prometheus text exposition page (a `/metrics` body).

/// The samples of metric `name` whose labels contain every `label="value"` of `labels`:
/// (label text inside the braces, value).
pub fn samples<'a>(
    page: &'a str,
    name: &'a str,
    labels: &'a [(&str, &str)],
) -> impl Iterator<Item = (&'a str, f64)> + 'a {
    page.lines().filter_map(move |line| {
        let rest = line.strip_prefix(name)?;
        let (series, value) = rest.rsplit_once(' ')?;
        let series_labels = match series.strip_prefix('{') {
            Some(inner) => inner.strip_suffix('}')?,
            None if series.is_empty() => "",
            None => return None, // another metric whose name starts with `name`
        };
        let matches = labels
            .iter()
            .all(|(k, v)| series_labels.contains(&format!("{k}=\"{v}\"")));
        matches.then_some((series_labels, value.parse().ok()?))
    })
}

/// The sum of the samples of `name` matching `labels` (0 when there are none).
pub fn sum(page: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples(page, name, labels).map(|(_, v)| v).sum()
}

/// The largest sample of `name` matching `labels`, if any.
pub fn max(page: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples(page, name, labels).map(|(_, v)| v).reduce(f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "# HELP a_total A.\n# TYPE a_total counter\n\
        a_total{pipeline=\"p\",outcome=\"ok\"} 3\n\
        a_total{pipeline=\"p\",outcome=\"bad\"} 2\n\
        a_total_created 1\n\
        b 7.5\n";

    #[test]
    fn sums_and_filters_by_label() {
        assert_eq!(sum(PAGE, "a_total", &[]), 5.0);
        assert_eq!(sum(PAGE, "a_total", &[("outcome", "bad")]), 2.0);
        assert_eq!(sum(PAGE, "a_total", &[("outcome", "none")]), 0.0);
        assert_eq!(max(PAGE, "b", &[]), Some(7.5));
        assert_eq!(max(PAGE, "c", &[]), None);
    }
}

//! The plot beside the report (`report.svg`): backlog drain throughput and the latency
//! distribution on top, latency percentiles per second of the latency phase below.

use super::activity::Span;
use super::latency::PerSecond;
use anyhow::Result;
use plotters::prelude::*;

/// Rate over a trailing window of about one second, at every sample.
fn rates_1s(samples: &[(f64, u64)]) -> Vec<(f64, f64)> {
    let mut j = 0;
    let mut out = Vec::new();
    for (i, &(t, n)) in samples.iter().enumerate() {
        while j + 1 < i && t - samples[j + 1].0 >= 1.0 {
            j += 1;
        }
        if i > j && t - samples[j].0 >= 0.9 {
            out.push((t, (n - samples[j].1) as f64 / (t - samples[j].0)));
        }
    }
    out
}

/// `compare`: the scoring comparison's drains (scoring on?, samples), drawn over the backlog's.
pub fn plot(
    path: &std::path::Path,
    samples: &[(f64, u64)],
    compare: &[(bool, &[(f64, u64)])],
    latencies_ms: &[f64],
    per_second: &[PerSecond],
    beside: &[Span],
) -> Result<()> {
    let root = SVGBackend::new(path, (1200, 900)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(450);
    let (left, right) = top.split_horizontally(600);

    let rates: Vec<(f64, f64)> = samples
        .windows(5)
        .map(|w| {
            (
                w[4].0,
                (w[4].1 - w[0].1) as f64 / (w[4].0 - w[0].0).max(1e-3),
            )
        })
        .collect();
    let compare: Vec<(bool, Vec<(f64, f64)>)> =
        compare.iter().map(|(on, s)| (*on, rates_1s(s))).collect();
    let all = || rates.iter().chain(compare.iter().flat_map(|c| &c.1));
    let max_rate = all().map(|r| r.1).fold(1.0, f64::max) * 1.1;
    let max_t = all()
        .map(|r| r.0)
        .fold(samples.last().map_or(1.0, |s| s.0), f64::max);
    let mut chart = ChartBuilder::on(&left)
        .caption(
            "Backlog drain: throughput (tx/s, 1 s window)",
            ("sans-serif", 18),
        )
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..max_t, 0f64..max_rate)?;
    chart
        .configure_mesh()
        .x_desc("seconds since worker start")
        .y_desc("tx/s")
        .draw()?;
    chart
        .draw_series(LineSeries::new(rates, &BLUE))?
        .label("backlog (scoring on)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE));
    for on in [false, true] {
        let color = if on { RED.mix(0.7) } else { GREEN.mix(0.7) };
        for (i, (_, r)) in compare.iter().filter(|c| c.0 == on).enumerate() {
            let series = chart.draw_series(LineSeries::new(r.iter().copied(), color))?;
            if i == 0 {
                let label = if on {
                    "comparison: scoring on"
                } else {
                    "comparison: scoring off"
                };
                series
                    .label(label)
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
            }
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;

    let cap = latencies_ms[((latencies_ms.len() - 1) as f64 * 0.999) as usize].max(1.0);
    let bins = 50usize;
    let width = cap / bins as f64;
    let mut counts = vec![0u32; bins];
    for &l in latencies_ms {
        counts[((l / width) as usize).min(bins - 1)] += 1;
    }
    let max_count = counts.iter().copied().max().unwrap_or(1);
    let mut chart = ChartBuilder::on(&right)
        .caption("End-to-end latency at fixed rate (ms)", ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..cap, 0u32..max_count + max_count / 10 + 1)?;
    chart
        .configure_mesh()
        .x_desc("Kafka timestamp -> row written (ms), to p99.9")
        .y_desc("rows")
        .draw()?;
    chart.draw_series(counts.iter().enumerate().map(|(i, &c)| {
        Rectangle::new(
            [(i as f64 * width, 0), ((i + 1) as f64 * width, c)],
            BLUE.mix(0.6).filled(),
        )
    }))?;
    over_time(&bottom, per_second, beside)?;
    root.present()?;
    Ok(())
}

/// One percentile of a second.
type Pick = fn(&PerSecond) -> f64;

/// Latency percentiles per second of the latency phase (log scale), so a tail shows when it
/// happened.
fn over_time<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    per_second: &[PerSecond],
    beside: &[Span],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let max_t = per_second.last().map_or(1.0, |p| p.second + 1.0);
    let max_ms = per_second.iter().map(|p| p.max).fold(10.0, f64::max) * 1.5;
    let mut chart = ChartBuilder::on(area)
        .caption(
            "End-to-end latency per second of the latency phase (ms, log scale)",
            ("sans-serif", 18),
        )
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..max_t, (0.5f64..max_ms).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("second of the latency phase (by Kafka timestamp)")
        .y_desc("ms")
        .draw()?;
    // What Postgres ran meanwhile, shaded under the lines.
    for (kind, color) in [
        ("checkpoint", RGBColor(230, 140, 0)),
        ("autovacuum", RGBColor(0, 160, 0)),
    ] {
        let spans: Vec<&Span> = beside.iter().filter(|s| s.what.contains(kind)).collect();
        if spans.is_empty() {
            continue;
        }
        chart
            .draw_series(spans.iter().map(|s| {
                Rectangle::new(
                    [
                        (s.from_s.max(0.0), 0.5),
                        (s.to_s.min(max_t).max(0.0), max_ms),
                    ],
                    color.mix(0.15).filled(),
                )
            }))?
            .label(kind)
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 20, y + 5)], color.mix(0.3).filled())
            });
    }
    let series: [(&str, Pick, RGBColor); 4] = [
        ("p50", |p| p.p50, BLUE),
        ("p95", |p| p.p95, RGBColor(230, 140, 0)),
        ("p99", |p| p.p99, RED),
        ("max", |p| p.max, RGBColor(120, 120, 120)),
    ];
    for (label, value, color) in series {
        chart
            .draw_series(LineSeries::new(
                per_second
                    .iter()
                    .map(|p| (p.second + 0.5, value(p).max(0.5))),
                color,
            ))?
            .label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

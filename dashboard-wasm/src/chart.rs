//! Line charts as inline SVG: a polyline scaled into a fixed view box. No chart library.

use leptos::prelude::*;

/// Width of every chart's view box (the SVG scales to its box in CSS).
const W: f64 = 300.0;
/// Height of every chart's view box.
const H: f64 = 80.0;

/// The `points` attribute of a polyline through `(x, y)` values, scaled so `x` spans the
/// width and `y` runs from 0 (bottom) to `y_max` (top). Empty with no values.
pub fn points(values: &[(f64, f64)], y_max: f64) -> String {
    let Some(((x0, _), (x1, _))) = values.first().zip(values.last()) else {
        return String::new();
    };
    let span = if x1 > x0 { x1 - x0 } else { 1.0 };
    let y_max = if y_max > 0.0 { y_max } else { 1.0 };
    values
        .iter()
        .map(|(x, y)| {
            let px = (x - x0) / span * W;
            let py = H - (y / y_max).clamp(0.0, 1.0) * H;
            format!("{px:.1},{py:.1}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A titled chart of one series; `label` formats a value for the axis notes.
#[component]
pub fn Chart(
    /// Heading and accessible name.
    title: &'static str,
    /// `(ms, value)` pairs, oldest first.
    series: Signal<Vec<(f64, f64)>>,
    /// The smallest top of the y axis (100 for CPU %, so idle work does not look busy).
    floor: f64,
    /// Formats a value for the "now" and "max" notes.
    label: fn(f64) -> String,
) -> impl IntoView {
    // 15% headroom above the highest sample, so a flat line does not hide under the caption.
    let top = move || series.with(|s| s.iter().map(|p| p.1 * 1.15).fold(floor, f64::max));
    let line = move || points(&series.get(), top());
    let now = move || series.with(|s| s.last().map(|p| label(p.1)).unwrap_or_else(|| "-".into()));
    let count = move || series.with(|s| s.len());
    view! {
        <figure class="chart">
            <figcaption>
                {title} <span class="now">{now}</span>
                <span class="max">"max " {move || label(top())}</span>
            </figcaption>
            <svg viewBox="0 0 300 80" preserveAspectRatio="none" role="img" aria-label=title
                data-points=count>
                <polyline points=line fill="none" stroke="currentColor" stroke-width="2"
                    vector-effect="non-scaling-stroke"></polyline>
            </svg>
        </figure>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_span_the_box() {
        let p = points(&[(1000.0, 0.0), (2000.0, 50.0), (3000.0, 100.0)], 100.0);
        assert_eq!(p, "0.0,80.0 150.0,40.0 300.0,0.0");
        assert_eq!(points(&[], 1.0), "");
        assert_eq!(points(&[(5.0, 2.0)], 0.0), "0.0,0.0");
    }
}

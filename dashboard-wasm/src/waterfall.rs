//! The details panel's waterfall: one row per phase of an attempt (queued, taken, asked for,
//! started, first report, first output, exit, final report, logs, removed), each bar from the
//! previous phase to this one (a phase timed by another clock that reads earlier than the
//! previous one shows as an instant), on one time axis from the attempt's first phase. Inline SVG drawn
//! here, no chart library.

use crate::format::duration_ms;
use leptos::prelude::*;
use model::AttemptClock;

/// Width of the view box; the bars use the part between the labels and the durations.
const W: f64 = 400.0;
/// Where the bars start (the labels sit left of it).
const LABEL_W: f64 = 150.0;
/// Room kept right of the bars for the durations.
const TOOK_W: f64 = 50.0;
/// Width of the bars' part.
const BARS_W: f64 = W - LABEL_W - TOOK_W;
/// Height of one row.
const ROW_H: f64 = 18.0;

/// One drawn row: the phase, its time, how long it took since the previous one, and where its
/// bar is in the bars' part of the box (`x`, `width`, both in view-box units).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The phase's wire name (`asked`, ...).
    pub phase: &'static str,
    /// What people read.
    pub label: &'static str,
    /// When it happened (ms since the epoch).
    pub at_ms: i64,
    /// Since the previous phase (0 for the first).
    pub took_ms: i64,
    /// Left edge of the bar.
    pub x: f64,
    /// Width of the bar (at least 1 so an instant shows).
    pub width: f64,
}

/// The rows of `clock`, scaled so the attempt's span fills the bars' part of the box.
pub fn rows(clock: &AttemptClock) -> Vec<Row> {
    let Some(first) = clock.marks.first() else {
        return Vec::new();
    };
    let t0 = first.at_ms;
    let end = clock.marks.iter().map(|m| m.at_ms).max().unwrap_or(t0);
    let span = (end - t0).max(1) as f64;
    let scale = |at: i64| (at - t0).max(0) as f64 / span * BARS_W;
    let mut prev = t0;
    clock
        .marks
        .iter()
        .map(|m| {
            let (from, to) = (scale(prev.min(m.at_ms)), scale(m.at_ms));
            prev = m.at_ms;
            Row {
                phase: m.phase.as_str(),
                label: m.phase.label(),
                at_ms: m.at_ms,
                // The same measure as the `/metrics` histograms (from the previous phase).
                took_ms: clock.duration_ms(m.phase).unwrap_or(0),
                x: LABEL_W + from,
                width: (to - from).max(1.0),
            }
        })
        .collect()
}

/// The waterfall of one attempt's clock.
#[component]
pub fn Waterfall(
    /// The attempt to draw (the task's newest kept clock).
    clock: AttemptClock,
) -> impl IntoView {
    let rows = rows(&clock);
    let height = (rows.len() as f64 * ROW_H).max(ROW_H);
    let total = rows.last().map(|r| r.at_ms - rows[0].at_ms).unwrap_or(0);
    let drawn = rows
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let y = i as f64 * ROW_H;
            view! {
                <g class="wf-row" data-phase=r.phase data-at=r.at_ms data-took=r.took_ms>
                    <text x="0" y=y + 13.0 class="wf-label">{r.label}</text>
                    <rect x=format!("{:.1}", r.x) y=y + 3.0 width=format!("{:.1}", r.width)
                        height=ROW_H - 6.0 class=format!("wf-bar wf-{}", r.phase)></rect>
                    <text x=W y=y + 13.0 text-anchor="end" class="wf-took">{duration_ms(r.took_ms)}</text>
                </g>
            }
        })
        .collect::<Vec<_>>();
    view! {
        <figure class="waterfall" data-attempt=clock.attempt>
            <figcaption>"Attempt " {clock.attempt} ": " {duration_ms(total)} " from first to last phase"</figcaption>
            <svg viewBox=format!("0 0 {W} {height}") role="img"
                aria-label=format!("Phases of attempt {}", clock.attempt)>
                {drawn}
            </svg>
        </figure>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{Mark, Phase};

    #[test]
    fn bars_run_from_the_previous_phase_on_one_axis() {
        let clock = AttemptClock {
            attempt: 2,
            marks: vec![
                Mark {
                    phase: Phase::Queued,
                    at_ms: 1_000,
                },
                Mark {
                    phase: Phase::Asked,
                    at_ms: 1_500,
                },
                Mark {
                    phase: Phase::Started,
                    at_ms: 2_000,
                },
            ],
        };
        let r = rows(&clock);
        let bars = BARS_W;
        assert_eq!(r.len(), 3);
        assert_eq!((r[0].phase, r[0].took_ms, r[0].width), ("queued", 0, 1.0));
        assert_eq!(
            (r[1].x, r[1].width, r[1].took_ms),
            (LABEL_W, bars / 2.0, 500)
        );
        assert_eq!((r[2].x, r[2].width), (LABEL_W + bars / 2.0, bars / 2.0));
        assert!(rows(&AttemptClock {
            attempt: 1,
            marks: vec![]
        })
        .is_empty());
    }
}

//! Summaries of samples and the Markdown report.

use std::time::Duration;

/// Median, p95 and spread of a set of durations.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// How many samples.
    pub n: usize,
    /// 50th percentile.
    pub p50: Duration,
    /// 95th percentile (nearest rank).
    pub p95: Duration,
    /// Fastest.
    pub min: Duration,
    /// Slowest.
    pub max: Duration,
}

impl Summary {
    /// Summarises `samples` (nearest-rank percentiles); panics on an empty set, which would
    /// be a bug in the benchmark, not a figure.
    pub fn of(samples: &[Duration]) -> Summary {
        assert!(!samples.is_empty(), "no samples to summarise");
        let mut s = samples.to_vec();
        s.sort();
        let rank = |p: f64| s[((p * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1];
        Summary {
            n: s.len(),
            p50: rank(0.50),
            p95: rank(0.95),
            min: s[0],
            max: s[s.len() - 1],
        }
    }

    /// `p50 / p95 (min-max, n)` in milliseconds.
    pub fn show(&self) -> String {
        format!(
            "p50 {} / p95 {} (min {}, max {}, n={})",
            ms(self.p50),
            ms(self.p95),
            ms(self.min),
            ms(self.max),
            self.n
        )
    }
}

/// A duration in milliseconds with one decimal.
pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// One line of the results table.
#[derive(Debug, Clone)]
pub struct Row {
    /// What was measured.
    pub figure: String,
    /// Our value.
    pub ours: String,
    /// The baseline measured in the same run, and its value.
    pub baseline: String,
    /// ours / baseline (or baseline / ours for times), as a readable ratio.
    pub ratio: String,
    /// The target from the issue.
    pub target: String,
    /// Whether the target is met.
    pub met: bool,
}

/// Every row and note of one run, printed as Markdown.
#[derive(Debug, Default)]
pub struct Report {
    /// The table.
    pub rows: Vec<Row>,
    /// Raw numbers and remarks, one bullet each, per section.
    pub notes: Vec<(String, Vec<String>)>,
}

impl Report {
    /// Adds a row.
    pub fn row(&mut self, row: Row) {
        eprintln!(
            "  {}: {} | baseline {} | {} | target {} {}",
            row.figure,
            row.ours,
            row.baseline,
            row.ratio,
            row.target,
            if row.met { "MET" } else { "MISSED" }
        );
        self.rows.push(row);
    }

    /// Adds a raw-number bullet under `section`.
    pub fn note(&mut self, section: &str, line: impl Into<String>) {
        let line = line.into();
        eprintln!("  [{section}] {line}");
        match self.notes.iter_mut().find(|(s, _)| s == section) {
            Some((_, lines)) => lines.push(line),
            None => self.notes.push((section.to_string(), vec![line])),
        }
    }

    /// The report as Markdown: the table, then raw numbers per section.
    pub fn markdown(&self) -> String {
        let mut out = String::from(
            "| Figure | Ours | Baseline (same run) | Ratio | Target | Met |\n|---|---|---|---|---|---|\n",
        );
        for r in &self.rows {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                r.figure,
                r.ours,
                r.baseline,
                r.ratio,
                r.target,
                if r.met { "yes" } else { "**no**" }
            ));
        }
        for (section, lines) in &self.notes {
            out.push_str(&format!("\n### {section}\n\n"));
            for l in lines {
                out.push_str(&format!("- {l}\n"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s: Vec<Duration> = (1..=20).map(Duration::from_millis).collect();
        let sum = Summary::of(&s);
        assert_eq!(sum.p50, Duration::from_millis(10));
        assert_eq!(sum.p95, Duration::from_millis(19));
        assert_eq!(
            (sum.min, sum.max, sum.n),
            (Duration::from_millis(1), Duration::from_millis(20), 20)
        );
    }
}

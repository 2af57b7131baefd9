//! Collecting figures and printing them beside their floors, as a table and as markdown.

use std::fmt::Write as _;

/// One measured figure.
pub struct Figure {
    /// What was measured.
    pub name: String,
    /// The value, formatted with its unit.
    pub value: String,
    /// The floor measured in the same run, formatted with its unit.
    pub floor: String,
    /// value / floor (or floor / value for rates), as printed.
    pub ratio: String,
    /// The SPEC §6 target.
    pub target: String,
    /// Whether the target was met.
    pub ok: bool,
}

/// All figures of a run.
#[derive(Default)]
pub struct Report {
    /// The figures, in order.
    pub figures: Vec<Figure>,
    /// Notes printed under the table.
    pub notes: Vec<String>,
}

impl Report {
    /// Adds a figure and prints it at once (long runs show progress).
    pub fn add(
        &mut self,
        name: &str,
        value: String,
        floor: String,
        ratio: String,
        target: &str,
        ok: bool,
    ) {
        println!(
            "{name:<58} {value:>14}   floor {floor:>14}   ratio {ratio:>8}   target {target} {}",
            if ok { "ok" } else { "MISSED" }
        );
        self.figures.push(Figure {
            name: name.into(),
            value,
            floor,
            ratio,
            target: target.into(),
            ok,
        });
    }

    /// Adds a note.
    pub fn note(&mut self, s: String) {
        println!("  note: {s}");
        self.notes.push(s);
    }

    /// The report as a markdown table.
    pub fn markdown(&self) -> String {
        let mut s = String::from(
            "| figure | ours | floor (same run) | ratio | target | met |\n|---|---:|---:|---:|---|---|\n",
        );
        for f in &self.figures {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} |",
                f.name,
                f.value,
                f.floor,
                f.ratio,
                f.target,
                if f.ok { "yes" } else { "**no**" }
            );
        }
        if !self.notes.is_empty() {
            s.push('\n');
            for n in &self.notes {
                let _ = writeln!(s, "- {n}");
            }
        }
        s
    }
}

/// A duration in the most readable unit.
pub fn dur(secs: f64) -> String {
    if secs < 1e-3 {
        format!("{:.1} µs", secs * 1e6)
    } else if secs < 1.0 {
        format!("{:.2} ms", secs * 1e3)
    } else {
        format!("{secs:.2} s")
    }
}

/// A rate per second.
pub fn rate(per_sec: f64) -> String {
    if per_sec >= 1e6 {
        format!("{:.2} M/s", per_sec / 1e6)
    } else if per_sec >= 1e3 {
        format!("{:.1} k/s", per_sec / 1e3)
    } else {
        format!("{per_sec:.0} /s")
    }
}

/// The p-th percentile (0..=100) of samples in seconds.
pub fn pct(samples: &mut [f64], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    let idx = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples[idx.min(samples.len() - 1)]
}

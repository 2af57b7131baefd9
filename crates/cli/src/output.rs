//! Printing: aligned tables for people, JSON for scripts, and quiet exits on a closed pipe.

use std::io::Write;

/// Writes `text` and a newline to stdout; a closed pipe (`| head`) ends the program quietly.
pub fn line(text: &str) {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{text}").is_err() {
        std::process::exit(0);
    }
}

/// Prints a value as pretty JSON.
pub fn json<T: serde::Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => line(&s),
        Err(e) => eprintln!("agent-team: error: cannot encode JSON: {e}"),
    }
}

/// Prints rows as a table with a header; columns are padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let fmt_row = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        cells
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    line(&fmt_row(header.iter().map(|h| h.to_string()).collect()));
    for r in rows {
        line(&fmt_row(r.clone()));
    }
}

/// `-` for a missing value.
pub fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map(|x| x.to_string())
        .unwrap_or_else(|| "-".into())
}

/// A short "how long ago" for a timestamp.
pub fn ago(ts: agent_team_protocol::Timestamp) -> String {
    let now = agent_team_protocol::Timestamp::now().millis();
    let secs = now.saturating_sub(ts.millis()) / 1000;
    match secs {
        0..=59 => format!("{secs}s ago"),
        60..=3599 => format!("{}m ago", secs / 60),
        3600..=86399 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86400),
    }
}

/// Shortens text to `n` characters for a table cell.
pub fn short(s: &str, n: usize) -> String {
    let one_line = agent_team_protocol::text::printable(&s.replace('\n', " "));
    if one_line.chars().count() <= n {
        one_line
    } else {
        let cut: String = one_line.chars().take(n.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

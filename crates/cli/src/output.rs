//! Printing: aligned tables for people, JSON for scripts, and quiet exits on a closed pipe.

use std::io::Write;

/// Writes `text` and a newline to stdout; a closed pipe (`| head`) ends the program quietly.
pub fn line(text: &str) {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{text}").is_err() {
        std::process::exit(0);
    }
}

/// Prints a value as pretty JSON (the same value, with C1, DEL, bidi and zero-width
/// characters escaped: inert on a terminal, see [`agent_team_protocol::text::inert_json`]).
pub fn json<T: serde::Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => line(&agent_team_protocol::text::inert_json(&s)),
        Err(e) => eprintln!("agent-team: error: cannot encode JSON: {e}"),
    }
}

/// Prints rows as a table with a header; columns are padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    table_painted(header, rows, &[]);
}

/// [`table`], with the first cell of row `i` drawn in colour `first_colors[i]` (an agent's
/// colour; see [`paint`]) when there is one; padding counts the plain text only.
pub fn table_painted(header: &[&str], rows: &[Vec<String>], first_colors: &[Option<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let fmt_row = |cells: Vec<String>, color: Option<&String>| {
        let last = cells.len().saturating_sub(1);
        cells
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let cell = if i == last {
                    c
                } else {
                    format!("{c:<w$}", w = widths[i])
                };
                match (i, color) {
                    (0, Some(col)) => paint(col, &cell),
                    _ => cell,
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    line(&fmt_row(
        header.iter().map(|h| h.to_string()).collect(),
        None,
    ));
    for (i, r) in rows.iter().enumerate() {
        line(&fmt_row(
            r.clone(),
            first_colors.get(i).and_then(|c| c.as_ref()),
        ));
    }
}

/// Writes `line` and a newline to stderr in one write, ignoring a failure: a daemon's stderr is
/// its log, which a full disk refuses (`eprintln!` would panic there), and stderr is
/// unbuffered (a formatted line would go out piece by piece).
pub fn say(line: &str) {
    use std::io::Write;
    let mut whole = String::with_capacity(line.len() + 1);
    whole.push_str(line);
    whole.push('\n');
    let _ = std::io::stderr().write_all(whole.as_bytes());
}

/// Whether stdout gets colour: a terminal, and `NO_COLOR` unset or empty.
pub fn color_on_stdout() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Whether stderr gets colour: a terminal, and `NO_COLOR` unset or empty.
pub fn color_on_stderr() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The ANSI foreground code of an agent colour: a colour name (`cyan`, `brightred`, `grey`)
/// or `#rrggbb`; `None` for one the terminal has no code for.
pub fn ansi_code(color: &str) -> Option<String> {
    if let Some(hex) = color.strip_prefix('#') {
        let n = u32::from_str_radix(hex, 16)
            .ok()
            .filter(|_| hex.len() == 6)?;
        return Some(format!("38;2;{};{};{}", n >> 16, (n >> 8) & 0xff, n & 0xff));
    }
    let (bright, base) = match color.strip_prefix("bright") {
        Some(b) => (true, b),
        None => (false, color),
    };
    let n = match base {
        "black" => 0,
        "red" => 1,
        "green" => 2,
        "yellow" => 3,
        "blue" => 4,
        "magenta" => 5,
        "cyan" => 6,
        "white" => 7,
        "grey" | "gray" => return Some("90".into()),
        _ => return None,
    };
    Some(format!("{}", if bright { 90 + n } else { 30 + n }))
}

/// `text` in `color` (ANSI); unchanged for a colour without a code.
pub fn paint(color: &str, text: &str) -> String {
    match ansi_code(color) {
        Some(code) => format!("\x1b[{code}m{text}\x1b[0m"),
        None => text.to_string(),
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
    let now = agent_team_protocol::Timestamp::from(std::time::SystemTime::now()).millis();
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
    // Inert and on one line: a newline shows as `\n`, never dropped or joined.
    let one_line = agent_team_protocol::text::printable(s);
    if one_line.chars().count() <= n {
        one_line
    } else {
        let cut: String = one_line.chars().take(n.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

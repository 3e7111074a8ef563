//! Output as kubectl prints it: Go's `text/tabwriter` alignment, `meta.k8s.io/v1 Table`
//! responses as columns, `-o json|yaml|name`, and human durations.

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};

/// Aligns tab-separated cells like Go's `text/tabwriter` (flags 0): a cell ended by a tab
/// belongs to a column; a column's width is fixed over each block of consecutive lines
/// that have a cell in it (`max(minwidth, widest cell + padding)`); a line's last cell is
/// not padded.
pub fn tabwrite(text: &str, minwidth: usize, padding: usize) -> String {
    let lines: Vec<Vec<&str>> = text.split('\n').map(|l| l.split('\t').collect()).collect();
    let mut widths: Vec<Vec<usize>> = vec![Vec::new(); lines.len()];
    format_block(&lines, &mut widths, 0, 0, lines.len(), minwidth, padding);
    let mut out = String::new();
    for (i, cells) in lines.iter().enumerate() {
        for (j, c) in cells.iter().enumerate() {
            out.push_str(c);
            if j + 1 < cells.len() {
                let w = widths[i].get(j).copied().unwrap_or(0);
                let n = c.chars().count();
                out.extend(std::iter::repeat_n(' ', w.saturating_sub(n)));
            }
        }
        if i + 1 < lines.len() {
            out.push('\n');
        }
    }
    out
}

fn format_block(
    lines: &[Vec<&str>],
    widths: &mut [Vec<usize>],
    col: usize,
    from: usize,
    to: usize,
    minwidth: usize,
    padding: usize,
) {
    let mut i = from;
    while i < to {
        if col + 1 >= lines[i].len() {
            i += 1;
            continue;
        }
        let start = i;
        let mut width = minwidth;
        while i < to && col + 1 < lines[i].len() {
            width = width.max(lines[i][col].chars().count() + padding);
            i += 1;
        }
        for w in &mut widths[start..i] {
            w.push(width);
        }
        format_block(lines, widths, col + 1, start, i, minwidth, padding);
    }
}

/// kubectl's `get` table writer: minimum width 6, padding 3.
pub fn table_text(rows: &[Vec<String>]) -> String {
    let text: Vec<String> = rows.iter().map(|r| r.join("\t")).collect();
    tabwrite(&text.join("\n"), 6, 3)
}

/// Go's `duration.HumanDuration` (what `describe` shows as an age).
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// The age of an RFC 3339 timestamp, or `<unknown>`.
pub fn age_of(ts: Option<&str>, now: DateTime<Utc>) -> String {
    match ts.and_then(|t| DateTime::parse_from_rfc3339(t).ok()) {
        Some(t) => human_duration((now - t.with_timezone(&Utc)).num_seconds()),
        None => "<unknown>".into(),
    }
}

/// JSON as kubectl prints it (4-space indent) plus a newline.
pub fn to_json(v: &Value) -> Result<String> {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    v.serialize(&mut ser)?;
    buf.push(b'\n');
    Ok(String::from_utf8(buf)?)
}

/// YAML as kubectl prints it (go-yaml's block style): keys in order, sequences at their
/// key's indentation, strings plain unless they would read as something else (then in
/// double quotes), multi-line strings as literal blocks.
pub fn to_yaml(v: &Value) -> Result<String> {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => yaml_map(&mut out, m, 0),
        Value::Array(a) if !a.is_empty() => yaml_seq(&mut out, a, 0),
        other => {
            out.push_str(&yaml_inline(other));
            out.push('\n');
        }
    }
    Ok(out)
}

fn pad(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn yaml_map(out: &mut String, m: &serde_json::Map<String, Value>, indent: usize) {
    for (k, v) in m {
        pad(out, indent);
        out.push_str(&yaml_string(k));
        out.push(':');
        match v {
            Value::Object(m) if !m.is_empty() => {
                out.push('\n');
                yaml_map(out, m, indent + 2);
            }
            Value::Array(a) if !a.is_empty() => {
                out.push('\n');
                yaml_seq(out, a, indent);
            }
            other => yaml_scalar_after(out, other, indent + 2),
        }
    }
}

fn yaml_seq(out: &mut String, a: &[Value], indent: usize) {
    for item in a {
        pad(out, indent);
        out.push('-');
        let mut sub = String::new();
        match item {
            Value::Object(m) if !m.is_empty() => yaml_map(&mut sub, m, indent + 2),
            Value::Array(a) if !a.is_empty() => yaml_seq(&mut sub, a, indent + 2),
            other => {
                yaml_scalar_after(out, other, indent + 2);
                continue;
            }
        }
        // The first line goes after the dash.
        out.push(' ');
        out.push_str(&sub[indent + 2..]);
    }
}

/// ` value\n` after a key or a dash; a multi-line string as a literal block indented by
/// `indent`.
fn yaml_scalar_after(out: &mut String, v: &Value, indent: usize) {
    out.push(' ');
    if let Value::String(s) = v {
        if literal_ok(s) {
            let body = s.strip_suffix('\n').unwrap_or(s);
            out.push_str(if s.ends_with('\n') { "|\n" } else { "|-\n" });
            for line in body.split('\n') {
                if !line.is_empty() {
                    pad(out, indent);
                    out.push_str(line);
                }
                out.push('\n');
            }
            return;
        }
    }
    out.push_str(&yaml_inline(v));
    out.push('\n');
}

/// Whether a string can be a literal block: several lines, printable, no trailing spaces,
/// not starting with a space, at most one final newline.
fn literal_ok(s: &str) -> bool {
    s.contains('\n')
        && !s.starts_with(' ')
        && !s.ends_with("\n\n")
        && !s.chars().any(|c| c.is_control() && c != '\n')
        && s.split('\n').all(|l| !l.ends_with(' '))
}

fn yaml_inline(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => yaml_string(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// A string as go-yaml writes it: plain when it reads back as the same string; in
/// double quotes when plain it would read as another type (`"1"`, `"true"`, a timestamp)
/// or holds control characters; else in single quotes (`'a: b'`).
fn yaml_string(s: &str) -> String {
    if s.is_empty() || resolves_to_non_string(s) || s.chars().any(char::is_control) {
        serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
    } else if plain_ok(s) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

/// YAML 1.1 as go-yaml resolves it: booleans, null, numbers, timestamps.
fn resolves_to_non_string(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false",
        "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF", "null", "Null", "NULL", "~",
        ".inf", ".Inf", ".INF", "-.inf", "-.Inf", "-.INF", "+.inf", "+.Inf", "+.INF", ".nan",
        ".NaN", ".NAN", "<<",
    ];
    if WORDS.contains(&s) {
        return true;
    }
    let plain: String = s.chars().filter(|c| *c != '_').collect();
    let unsigned = plain.trim_start_matches(['-', '+']);
    let radix = |p: &str, r: u32| {
        unsigned
            .strip_prefix(p)
            .is_some_and(|d| !d.is_empty() && u64::from_str_radix(d, r).is_ok())
    };
    let numeric = (plain.chars().any(|c| c.is_ascii_digit())
        && plain
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E'))
        && plain.parse::<f64>().is_ok())
        || radix("0x", 16)
        || radix("0b", 2);
    let b = s.as_bytes();
    let timestamp = b.len() >= 8
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && chrono::NaiveDate::parse_from_str(s.get(..10).unwrap_or(s), "%Y-%m-%d").is_ok();
    numeric || timestamp
}

/// Whether go-yaml's emitter may write the string plain in block context.
fn plain_ok(s: &str) -> bool {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    let second = chars.next();
    if "#,[]{}&*!|>'\"%@`".contains(first) {
        return false;
    }
    if matches!(first, '-' | '?' | ':') && matches!(second, None | Some(' ')) {
        return false;
    }
    !(s.starts_with("---")
        || s.starts_with("...")
        || s.starts_with(' ')
        || s.ends_with(' ')
        || s.ends_with(':')
        || s.contains(": ")
        || s.contains(" #"))
}

/// The `List` kubectl prints for several objects.
pub fn list_of(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}})
}

/// A Table cell as text (kubectl prints a missing cell as `<none>`).
pub fn cell_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<none>".into(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

/// `k=v,k2=v2` sorted, or `<none>`.
pub fn labels_text(labels: &Value) -> String {
    let Some(m) = labels.as_object().filter(|m| !m.is_empty()) else {
        return "<none>".into();
    };
    let mut kv: Vec<String> = m
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    kv.sort();
    kv.join(",")
}

/// How a Table is printed.
#[derive(Debug, Clone, Copy, Default)]
pub struct TableOptions {
    pub wide: bool,
    pub namespace_column: bool,
    pub show_labels: bool,
    pub no_headers: bool,
}

/// A Table response as rows of text (a header row first unless `no_headers`). `prefix`
/// (`deployment.apps/`) goes before each name when several types are printed.
pub fn table_rows(table: &Value, opts: TableOptions, prefix: Option<&str>) -> Vec<Vec<String>> {
    let cols: Vec<(usize, &Value)> = table["columnDefinitions"]
        .as_array()
        .map(|c| c.iter().enumerate().collect())
        .unwrap_or_default();
    let shown: Vec<(usize, &Value)> = cols
        .into_iter()
        .filter(|(_, c)| opts.wide || c["priority"].as_i64().unwrap_or(0) == 0)
        .collect();
    let name_col = shown
        .iter()
        .position(|(_, c)| c["format"] == "name" || c["name"] == "Name");
    let mut out = Vec::new();
    if !opts.no_headers {
        let mut h = Vec::new();
        if opts.namespace_column {
            h.push("NAMESPACE".to_string());
        }
        h.extend(
            shown
                .iter()
                .map(|(_, c)| c["name"].as_str().unwrap_or("").to_uppercase()),
        );
        if opts.show_labels {
            h.push("LABELS".into());
        }
        out.push(h);
    }
    for row in table["rows"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let cells = row["cells"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let meta = &row["object"]["metadata"];
        let mut r = Vec::new();
        if opts.namespace_column {
            r.push(meta["namespace"].as_str().unwrap_or("").to_string());
        }
        for (k, (i, _)) in shown.iter().enumerate() {
            let mut t = cells.get(*i).map(cell_text).unwrap_or_default();
            if Some(k) == name_col {
                if let Some(p) = prefix {
                    t = format!("{p}{t}");
                }
            }
            r.push(t);
        }
        if opts.show_labels {
            r.push(labels_text(&meta["labels"]));
        }
        out.push(r);
    }
    out
}

/// Rows aligned to widths that only grow (what `get -w` prints as events arrive: Go's
/// tabwriter with `RememberWidths`).
#[derive(Default)]
pub struct StreamTable {
    widths: Vec<usize>,
}

impl StreamTable {
    pub fn print(&mut self, rows: &[Vec<String>]) -> String {
        for r in rows {
            for (i, c) in r.iter().enumerate() {
                if i + 1 == r.len() {
                    break;
                }
                let w = (c.chars().count() + 3).max(6);
                if self.widths.len() <= i {
                    self.widths.push(w);
                } else if self.widths[i] < w {
                    self.widths[i] = w;
                }
            }
        }
        let mut out = String::new();
        for r in rows {
            for (i, c) in r.iter().enumerate() {
                out.push_str(c);
                if i + 1 < r.len() {
                    let n = c.chars().count();
                    out.extend(std::iter::repeat_n(' ', self.widths[i].saturating_sub(n)));
                }
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tabwriter_aligns_like_go() {
        let rows = vec![
            vec![
                "NAME".to_string(),
                "READY".into(),
                "STATUS".into(),
                "AGE".into(),
            ],
            vec!["web-1".into(), "0/1".into(), "Pending".into(), "5s".into()],
        ];
        assert_eq!(
            table_text(&rows),
            "NAME    READY   STATUS    AGE\nweb-1   0/1     Pending   5s"
        );
        // Blocks: a column's width holds over consecutive lines having that column only.
        let text = "Name:\tweb\nLabels:\tapp=web\n\tx=y\nContainers:\n  c:\n    Image:\tbusybox\n    Port:\t80/TCP";
        assert_eq!(
            tabwrite(text, 0, 2),
            "Name:    web\nLabels:  app=web\n         x=y\nContainers:\n  c:\n    Image:  busybox\n    Port:   80/TCP"
        );
    }

    #[test]
    fn durations_read_like_kubectl() {
        let cases = [
            (5, "5s"),
            (119, "119s"),
            (120, "2m"),
            (130, "2m10s"),
            (600, "10m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 60, "3h1m"),
            (47 * 3600, "47h"),
            (50 * 3600, "2d2h"),
            (30 * 86400, "30d"),
            (-5, "<invalid>"),
        ];
        for (s, want) in cases {
            assert_eq!(human_duration(s), want, "{s}");
        }
    }

    #[test]
    fn tables_pick_columns_and_prefix_names() {
        let t = json!({
            "columnDefinitions": [
                {"name": "Name", "format": "name", "priority": 0},
                {"name": "Status", "priority": 0},
                {"name": "Node", "priority": 1},
            ],
            "rows": [{"cells": ["a", "Pending", null], "object": {"metadata": {"name": "a", "namespace": "ns1", "labels": {"b": "2", "a": "1"}}}}],
        });
        let narrow = table_rows(&t, TableOptions::default(), None);
        assert_eq!(narrow, vec![vec!["NAME", "STATUS"], vec!["a", "Pending"]]);
        let opts = TableOptions {
            wide: true,
            namespace_column: true,
            show_labels: true,
            no_headers: false,
        };
        let wide = table_rows(&t, opts, Some("pod/"));
        assert_eq!(
            wide,
            vec![
                vec!["NAMESPACE", "NAME", "STATUS", "NODE", "LABELS"],
                vec!["ns1", "pod/a", "Pending", "<none>", "a=1,b=2"]
            ]
        );
    }

    #[test]
    fn yaml_reads_like_kubectl() {
        let v = json!({
            "apiVersion": "v1",
            "data": {"a": "1", "b": "", "c": "multi\nline\n", "d": "yes", "e": "x: y", "f": "2026-01-01T00:00:00Z", "g": "-f", "h": "it's: a"},
            "items": [{"name": "c", "ports": [{"containerPort": 80}]}, "plain", []],
            "metadata": {"annotations": {}, "labels": {"app": "web"}},
        });
        let want = "apiVersion: v1
data:
  a: \"1\"
  b: \"\"
  c: |
    multi
    line
  d: \"yes\"
  e: 'x: y'
  f: \"2026-01-01T00:00:00Z\"
  g: -f
  h: 'it''s: a'
items:
- name: c
  ports:
  - containerPort: 80
- plain
- []
metadata:
  annotations: {}
  labels:
    app: web
";
        let got = to_yaml(&v).unwrap();
        assert_eq!(got, want);
        let back: serde_yaml::Value = serde_yaml::from_str(&got).unwrap();
        assert_eq!(serde_json::to_value(back).unwrap(), v);
    }

    #[test]
    fn json_is_indented_by_four() {
        assert_eq!(
            to_json(&json!({"a": [1]})).unwrap(),
            "{\n    \"a\": [\n        1\n    ]\n}\n"
        );
    }
}

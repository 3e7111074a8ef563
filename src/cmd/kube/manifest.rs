//! Manifests for `apply -f` and `delete -f`: files, directories or stdin, YAML with many
//! documents or JSON (an object or a `List`), each object remembering where it came from.

use std::io::Read;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use serde_json::Value;

/// One object of a manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    /// The file name as given (`STDIN` for `-`).
    pub source: String,
    /// 1-based document number in its file.
    pub index: usize,
    /// 1-based line where the document starts.
    pub line: usize,
    pub object: Value,
}

impl Doc {
    /// `web.yaml` (document 2, line 14)
    pub fn location(&self) -> String {
        format!(
            "{} (document {}, line {})",
            self.source, self.index, self.line
        )
    }
    pub fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or("")
    }
    pub fn namespace(&self) -> Option<&str> {
        self.object["metadata"]["namespace"]
            .as_str()
            .filter(|s| !s.is_empty())
    }
    pub fn api_version(&self) -> &str {
        self.object["apiVersion"].as_str().unwrap_or("")
    }
    pub fn kind(&self) -> &str {
        self.object["kind"].as_str().unwrap_or("")
    }
}

fn is_manifest_file(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// The documents of every `-f` argument, in order (a directory: its .yaml, .yml and .json
/// files by name; with `recursive`, its subdirectories too).
pub fn read_all(args: &[String], recursive: bool) -> Result<Vec<Doc>> {
    let mut docs = Vec::new();
    for a in args {
        if a == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the manifest from stdin")?;
            docs.extend(parse("STDIN", &text)?);
            continue;
        }
        let p = Path::new(a);
        let meta =
            std::fs::metadata(p).with_context(|| format!("the path {a:?} does not exist"))?;
        if meta.is_dir() {
            let mut files = Vec::new();
            collect_dir(p, recursive, &mut files)?;
            for f in files {
                let text = std::fs::read_to_string(&f)
                    .with_context(|| format!("reading {}", f.display()))?;
                docs.extend(parse(&f.display().to_string(), &text)?);
            }
        } else {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {a}"))?;
            docs.extend(parse(a, &text)?);
        }
    }
    Ok(docs)
}

fn collect_dir(dir: &Path, recursive: bool, out: &mut Vec<std::path::PathBuf>) -> Result<()> {
    let mut entries: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading the directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for e in entries {
        if e.is_dir() {
            if recursive {
                collect_dir(&e, recursive, out)?;
            }
        } else if is_manifest_file(&e) {
            out.push(e);
        }
    }
    Ok(())
}

/// 1-based lines where each YAML document starts (after a `---` line, or line 1).
fn doc_start_lines(text: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut first = true;
    for (i, l) in text.lines().enumerate() {
        if l.starts_with("---") && l[3..].trim().is_empty() {
            starts.push(i + 2);
            first = false;
        } else if first && !l.trim().is_empty() && !l.trim_start().starts_with('#') {
            starts.push(i + 1);
            first = false;
        }
    }
    starts
}

/// The objects of one file's text: JSON (an object or a `List`), else YAML documents.
/// Empty documents are skipped; `List`s are expanded into their items.
pub fn parse(source: &str, text: &str) -> Result<Vec<Doc>> {
    let mut out = Vec::new();
    if text.trim_start().starts_with('{') || text.trim_start().starts_with('[') {
        let v: Value = serde_json::from_str(text).map_err(|e| {
            anyhow!(
                "error parsing {source}: invalid JSON at line {} column {}: {e}",
                e.line(),
                e.column()
            )
        })?;
        push(&mut out, source, 1, 1, v)?;
        return Ok(out);
    }
    let starts = doc_start_lines(text);
    for (i, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let index = i + 1;
        let line = starts.get(i).copied().unwrap_or(1);
        let y = serde_yaml::Value::deserialize(de).map_err(|e| yaml_error(source, index, &e))?;
        if y.is_null() {
            continue;
        }
        let v: Value = serde_json::to_value(&y)
            .map_err(|e| anyhow!("error parsing {source} (document {index}, line {line}): {e}"))?;
        push(&mut out, source, index, line, v)?;
    }
    Ok(out)
}

fn yaml_error(source: &str, index: usize, e: &serde_yaml::Error) -> anyhow::Error {
    match e.location() {
        Some(l) => anyhow!(
            "error parsing {source} (document {index}): line {} column {}: {}",
            l.line(),
            l.column(),
            strip_location(&e.to_string())
        ),
        None => anyhow!("error parsing {source} (document {index}): {e}"),
    }
}

/// serde_yaml's messages end with ` at line L column C`: said once, in front.
fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

fn push(out: &mut Vec<Doc>, source: &str, index: usize, line: usize, v: Value) -> Result<()> {
    let at = || format!("{source} (document {index}, line {line})");
    if !v.is_object() {
        bail!("error parsing {}: a manifest must be an object", at());
    }
    let kind = v["kind"].as_str().unwrap_or("");
    if kind.ends_with("List") && v["items"].is_array() {
        for item in v["items"].as_array().cloned().unwrap_or_default() {
            push(out, source, index, line, item)?;
        }
        return Ok(());
    }
    if v["apiVersion"].as_str().unwrap_or("").is_empty() {
        bail!("error validating {}: apiVersion not set", at());
    }
    if kind.is_empty() {
        bail!("error validating {}: kind not set", at());
    }
    if v["metadata"]["name"].as_str().unwrap_or("").is_empty() {
        bail!(
            "error validating {}: {kind} has no metadata.name (apply needs a name)",
            at()
        );
    }
    out.push(Doc {
        source: source.to_string(),
        index,
        line,
        object: v,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_documents_keep_their_place() {
        let text = "# a comment\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n---\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: a}\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: b}\n";
        let docs = parse("m.yaml", text).unwrap();
        let names: Vec<&str> = docs.iter().map(Doc::name).collect();
        assert_eq!(names, ["shop", "a", "b"]);
        assert_eq!(docs[0].location(), "m.yaml (document 1, line 2)");
        assert_eq!(docs[1].location(), "m.yaml (document 3, line 8)");
    }

    #[test]
    fn yaml_errors_say_file_document_and_line() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n   bad: indent\n";
        let e = parse("bad.yaml", text).unwrap_err().to_string();
        assert!(
            e.starts_with("error parsing bad.yaml (document 2): line 9 column"),
            "{e}"
        );
    }

    #[test]
    fn objects_need_kind_and_name() {
        let e = parse("x.yaml", "apiVersion: v1\nmetadata: {name: a}\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "error validating x.yaml (document 1, line 1): kind not set"
        );
        let e = parse("x.yaml", "apiVersion: v1\nkind: Pod\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no metadata.name"), "{e}");
        let e = parse("x.json", "{\"kind\": ").unwrap_err().to_string();
        assert!(
            e.starts_with("error parsing x.json: invalid JSON at line 1"),
            "{e}"
        );
        assert!(parse("x.yaml", "- a\n- b\n").is_err());
    }
}

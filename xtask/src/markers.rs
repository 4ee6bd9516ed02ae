//! Test markers (`// spec: id, id`), pending markers and reasons.

use std::fs;
use std::path::Path;

use crate::clauses::data_lines;

/// The marker: a line that is exactly this comment, then ids.
pub const MARKER: &str = "// spec:";

/// One clause id named by one test.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Marker {
    /// The clause id.
    pub id: String,
    /// The file, relative to the repository root, with `/`.
    pub file: String,
    /// The line of the marker (1-based).
    pub line: usize,
    /// The enclosing test function.
    pub test: String,
    /// The line of the test function's `fn`.
    pub fn_line: usize,
    /// From conformance/pending-markers.tsv rather than the source.
    pub pending: bool,
}

/// Is `s` an id: lower-case words, digits and `-`, joined by `.`, ending
/// in a number?
pub fn is_id(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
        && parts
            .last()
            .is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()))
}

/// A `fn` item on this line: its name.
fn fn_name(line: &str) -> Option<String> {
    let mut rest = line.trim_start();
    for q in [
        "pub(crate) ",
        "pub(super) ",
        "pub ",
        "const ",
        "async ",
        "unsafe ",
    ] {
        if let Some(r) = rest.strip_prefix(q) {
            rest = r;
        }
    }
    let rest = rest.strip_prefix("fn ")?;
    let name: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The function a marker on `lines[at]` names: the `fn` that follows it
/// across comments, attributes and blank lines (marker above the test), or
/// else the nearest `fn` above it indented less (marker inside the test).
pub fn enclosing_fn(lines: &[&str], at: usize) -> Option<(String, usize)> {
    for (k, line) in lines.iter().enumerate().skip(at + 1) {
        let t = line.trim_start();
        if let Some(name) = fn_name(line) {
            return Some((name, k));
        }
        if !(t.is_empty() || t.starts_with("//") || t.starts_with("#[") || t.starts_with("#![")) {
            break;
        }
    }
    let own = indent(lines.get(at)?);
    lines[..at]
        .iter()
        .enumerate()
        .rev()
        .find_map(|(k, line)| fn_name(line).filter(|_| indent(line) < own).map(|n| (n, k)))
}

/// The markers of one file's text. Malformed markers are errors.
pub fn scan_text(file: &str, text: &str) -> Result<Vec<Marker>, Vec<String>> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (k, line) in lines.iter().enumerate() {
        let Some(ids) = line.trim_start().strip_prefix(MARKER) else {
            continue;
        };
        let Some((test, fn_line)) = enclosing_fn(&lines, k) else {
            errors.push(format!(
                "{file}:{}: marker is neither in nor just above a test fn",
                k + 1
            ));
            continue;
        };
        for id in ids.split(',').map(str::trim) {
            if !is_id(id) {
                errors.push(format!("{file}:{}: {id:?} is not a clause id", k + 1));
                continue;
            }
            out.push(Marker {
                id: id.to_string(),
                file: file.to_string(),
                line: k + 1,
                test: test.clone(),
                fn_line: fn_line + 1,
                pending: false,
            });
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Directories never scanned: build output, VCS, and the xtask crate itself
/// (its unit tests hold sample markers).
const SKIP_DIRS: &[&str] = &["target", ".git", "xtask", "node_modules"];

/// Every `*.rs` file under `root`, relative, sorted.
pub fn rust_files(root: &Path) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let abs = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(&rel)
        };
        let entries = fs::read_dir(&abs).map_err(|e| format!("{}: {e}", abs.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| e.to_string())?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let child = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let ty = entry.file_type().map_err(|e| e.to_string())?;
            if ty.is_dir() {
                if !SKIP_DIRS.contains(&name.as_str()) && !name.starts_with('.') {
                    stack.push(child);
                }
            } else if name.ends_with(".rs") {
                out.push(child);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Every marker in the repository's Rust sources.
pub fn scan(root: &Path) -> Result<Vec<Marker>, Vec<String>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for file in rust_files(root).map_err(|e| vec![e])? {
        let text = match fs::read_to_string(root.join(&file)) {
            Ok(t) => t,
            Err(e) => {
                errors.push(format!("{file}: {e}"));
                continue;
            }
        };
        match scan_text(&file, &text) {
            Ok(m) => out.extend(m),
            Err(e) => errors.extend(e),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Reads conformance/pending-markers.tsv (`id`, `file`, `test fn`, `note`)
/// and finds each named fn in its file.
pub fn pending(root: &Path, text: &str) -> Result<Vec<Marker>, Vec<String>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (n, line) in data_lines(text) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (Some(id), Some(file), Some(test)) = (cols.first(), cols.get(1), cols.get(2)) else {
            errors.push(format!(
                "conformance/pending-markers.tsv:{n}: expected id, file, test fn, note"
            ));
            continue;
        };
        let Ok(src) = fs::read_to_string(root.join(file)) else {
            errors.push(format!(
                "conformance/pending-markers.tsv:{n}: no file {file}"
            ));
            continue;
        };
        let found = src
            .lines()
            .position(|l| fn_name(l).as_deref() == Some(*test));
        let Some(fn_line) = found else {
            errors.push(format!(
                "conformance/pending-markers.tsv:{n}: no fn {test} in {file}"
            ));
            continue;
        };
        out.push(Marker {
            id: id.to_string(),
            file: file.to_string(),
            line: fn_line + 1,
            test: test.to_string(),
            fn_line: fn_line + 1,
            pending: true,
        });
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// One line of conformance/reasons.tsv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    /// The clause id.
    pub id: String,
    /// Why no test checks it.
    pub reason: String,
    /// The line in reasons.tsv.
    pub line: usize,
}

/// Reads conformance/reasons.tsv (`id`, `reason`).
pub fn reasons(text: &str) -> Result<Vec<Reason>, Vec<String>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (n, line) in data_lines(text) {
        match line.split_once('\t') {
            Some((id, reason)) if !reason.trim().is_empty() => out.push(Reason {
                id: id.trim().to_string(),
                reason: reason.trim().to_string(),
                line: n,
            }),
            _ => errors.push(format!(
                "conformance/reasons.tsv:{n}: expected id <TAB> reason"
            )),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_above_and_inside_tests() {
        let src = "\
#[test]
fn inside() {
    // spec: split.used-ring.1, split.used-ring.2
    assert!(true);
}

// spec: blk.device-operation.3
#[test]
#[cfg_attr(miri, ignore)]
fn above() {}

mod m {
    proptest! {
        #[test]
        fn in_proptest(x in 0u8..) {
            // spec: packed.virtqueues.1
        }
    }
}
";
        let got: Vec<(String, String, usize, usize)> = scan_text("a.rs", src)
            .unwrap()
            .into_iter()
            .map(|m| (m.id, m.test, m.line, m.fn_line))
            .collect();
        let want = [
            ("split.used-ring.1", "inside", 3, 2),
            ("split.used-ring.2", "inside", 3, 2),
            ("blk.device-operation.3", "above", 7, 10),
            ("packed.virtqueues.1", "in_proptest", 16, 15),
        ];
        let want: Vec<(String, String, usize, usize)> = want
            .iter()
            .map(|(a, b, c, d)| (a.to_string(), b.to_string(), *c, *d))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn malformed_markers_are_errors() {
        let errs = scan_text("a.rs", "fn t() {\n    // spec: see above\n}\n").unwrap_err();
        assert_eq!(errs.len(), 1);
        assert!(errs[0].contains("a.rs:2"));
        let errs = scan_text("a.rs", "// spec: blk.x.1\nstatic X: u8 = 0;\n").unwrap_err();
        assert!(errs[0].contains("neither in nor just above"));
    }

    #[test]
    fn free_text_mentions_are_not_markers() {
        let src = "fn t() {\n    // the spec: MUST do x\n    let spec = 1; // spec: nothing\n}\n";
        assert!(scan_text("a.rs", src).unwrap().is_empty());
    }

    #[test]
    fn ids() {
        assert!(is_id("blk.device-operation.3"));
        assert!(is_id("vq-reset.re-enable.1"));
        assert!(!is_id("blk.device-operation"));
        assert!(!is_id("Blk.x.1"));
        assert!(!is_id("blk..1"));
    }
}

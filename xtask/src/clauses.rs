//! The chapter list (`conformance/chapters.tsv`), the clause list
//! (`conformance/clauses.tsv`) and how one is made from the spec.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use crate::tex;

/// Is a chapter in the implemented scope (its MUSTs gate CI)?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Implemented: a table in CONFORMANCE.md, every MUST tested or reasoned.
    Implemented,
    /// Not implemented: counts only.
    NotImplemented,
}

/// One line of `conformance/chapters.tsv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chapter {
    /// The id prefix (`blk`).
    pub prefix: String,
    /// Implemented or not.
    pub scope: Scope,
    /// The spec file (relative to the spec directory) or directory (ending
    /// in `/`) whose blocks belong here.
    pub file: String,
    /// Only blocks whose label starts with this (for `content.tex`).
    pub label: Option<String>,
    /// A title prefix dropped from slugs (`MMIO Device`).
    pub strip: Option<String>,
    /// What the matrix calls the chapter.
    pub name: String,
}

/// Reads `conformance/chapters.tsv`: `prefix`, `implemented` or `-`,
/// `file[#label prefix]`, slug prefix to strip or `-`, name.
pub fn parse_chapters(text: &str) -> Result<Vec<Chapter>, String> {
    let mut out = Vec::new();
    for (n, line) in data_lines(text) {
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() != 5 {
            return Err(format!(
                "chapters.tsv:{n}: expected 5 tab-separated columns"
            ));
        }
        let scope = match cols[1] {
            "implemented" => Scope::Implemented,
            "-" => Scope::NotImplemented,
            other => {
                return Err(format!(
                    "chapters.tsv:{n}: scope is `implemented` or `-`, not {other:?}"
                ));
            }
        };
        let (file, label) = match cols[2].split_once('#') {
            Some((f, l)) => (f.to_string(), Some(l.to_string())),
            None => (cols[2].to_string(), None),
        };
        out.push(Chapter {
            prefix: cols[0].to_string(),
            scope,
            file,
            label,
            strip: (cols[3] != "-").then(|| cols[3].to_string()),
            name: cols[4].to_string(),
        });
    }
    Ok(out)
}

/// Non-empty, non-comment lines with their 1-based numbers.
pub fn data_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
}

/// One device-side normative statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    /// `blk.device-operation.3`
    pub id: String,
    /// `MUST`, `MUST NOT`, `SHOULD`, ...
    pub level: String,
    /// The normative block's title.
    pub title: String,
    /// The normative block's label, the spec's section path.
    pub section: String,
    /// The statement, one line.
    pub text: String,
}

impl Clause {
    /// The chapter prefix of the id.
    pub fn prefix(&self) -> &str {
        self.id.split('.').next().unwrap_or("")
    }

    /// MUST, MUST NOT, SHALL, SHALL NOT, REQUIRED.
    pub fn is_must(&self) -> bool {
        matches!(
            self.level.as_str(),
            "MUST" | "MUST NOT" | "SHALL" | "SHALL NOT" | "REQUIRED"
        )
    }

    /// SHOULD, SHOULD NOT, RECOMMENDED, NOT RECOMMENDED.
    pub fn is_should(&self) -> bool {
        matches!(
            self.level.as_str(),
            "SHOULD" | "SHOULD NOT" | "RECOMMENDED" | "NOT RECOMMENDED"
        )
    }
}

/// Every `.tex` file under `dir`, relative paths with `/`, sorted.
fn tex_files(dir: &Path) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let abs = dir.join(&rel);
        let entries = fs::read_dir(&abs).map_err(|e| format!("{}: {e}", abs.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("{}: {e}", abs.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let child = rel.join(&name);
            let ty = entry.file_type().map_err(|e| e.to_string())?;
            if ty.is_dir() {
                stack.push(child);
            } else if name.ends_with(".tex") {
                out.push(child.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    Ok(out)
}

fn chapter_for<'a>(chapters: &'a [Chapter], file: &str, label: &str) -> Option<&'a Chapter> {
    chapters
        .iter()
        .filter(|c| {
            let file_ok = if c.file.ends_with('/') {
                file.starts_with(&c.file)
            } else {
                file == c.file
            };
            file_ok && c.label.as_deref().is_none_or(|l| label.starts_with(l))
        })
        .max_by_key(|c| c.file.len() + c.label.as_deref().map_or(0, str::len))
}

/// Extracts every device-side normative statement from the spec sources,
/// in chapter order (the order of chapters.tsv), then file and position.
pub fn extract(spec: &Path, chapters: &[Chapter]) -> Result<Vec<Clause>, String> {
    let mut per_chapter: BTreeMap<usize, Vec<Clause>> = BTreeMap::new();
    let mut slugs: BTreeSet<String> = BTreeSet::new();
    for file in tex_files(spec)? {
        let raw = fs::read_to_string(spec.join(&file)).map_err(|e| format!("{file}: {e}"))?;
        let src = tex::strip_comments(&raw);
        let labels = tex::item_labels(&src);
        for block in tex::find_blocks(&src).map_err(|e| format!("{file}: {e}"))? {
            let chapter = chapter_for(chapters, &file, &block.label).ok_or_else(|| {
                format!(
                    "{file}: the normative block {:?} ({}) belongs to no chapter: \
                     add a line to conformance/chapters.tsv",
                    block.title, block.label
                )
            })?;
            let index = chapters
                .iter()
                .position(|c| c == chapter)
                .unwrap_or(usize::MAX);
            let base = format!(
                "{}.{}",
                chapter.prefix,
                tex::slug(&block.title, chapter.strip.as_deref())
            );
            let mut key = base.clone();
            let mut n = 2;
            while !slugs.insert(key.clone()) {
                key = format!("{base}-{n}");
                n += 1;
            }
            let stmts = tex::statements(&tex::parse_nodes(&block.body), &labels);
            let list = per_chapter.entry(index).or_default();
            for (k, text) in stmts.into_iter().enumerate() {
                let level = tex::level(&text).unwrap_or("-");
                list.push(Clause {
                    id: format!("{key}.{}", k + 1),
                    level: level.to_string(),
                    title: block.title.clone(),
                    section: block.label.clone(),
                    text: text.replace('\t', " "),
                });
            }
        }
    }
    Ok(per_chapter.into_values().flatten().collect())
}

/// The header line that names the spec revision.
const REVISION_PREFIX: &str = "# spec revision: ";

/// Writes clauses.tsv.
pub fn format_clauses(revision: &str, clauses: &[Clause]) -> String {
    let mut out = String::new();
    out.push_str(
        "# Device-side normative statements of the virtio specification, one per line.\n\
         # Generated by `cargo run -p xtask -- spec-clauses` from the spec's TeX sources; do not edit.\n\
         # The statement text is quoted from the specification (OASIS, see its LICENSE.md).\n\
         # Splitting and id rules: xtask/README.md.\n",
    );
    out.push_str(REVISION_PREFIX);
    out.push_str(revision);
    out.push('\n');
    out.push_str("# id\tlevel\ttitle\tsection\ttext\n");
    for c in clauses {
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\n",
            c.id, c.level, c.title, c.section, c.text
        ));
    }
    out
}

/// Reads clauses.tsv back: the revision and the clauses.
pub fn parse_clauses(text: &str) -> Result<(String, Vec<Clause>), String> {
    let revision = text
        .lines()
        .find_map(|l| l.strip_prefix(REVISION_PREFIX))
        .unwrap_or("unknown")
        .to_string();
    let mut out = Vec::new();
    for (n, line) in data_lines(text) {
        let cols: Vec<&str> = line.splitn(5, '\t').collect();
        let [id, level, title, section, text] = cols.as_slice() else {
            return Err(format!("clauses.tsv:{n}: expected 5 tab-separated columns"));
        };
        out.push(Clause {
            id: id.to_string(),
            level: level.to_string(),
            title: title.to_string(),
            section: section.to_string(),
            text: text.to_string(),
        });
    }
    Ok((revision, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chapters() -> Vec<Chapter> {
        parse_chapters(
            "# comment\n\
             split\timplemented\tsplit-ring.tex\t-\tSplit\n\
             status\timplemented\tcontent.tex#Basic / Device Status\t-\tStatus\n\
             vq-reset\timplemented\tcontent.tex#Basic / Virtqueues / Virtqueue Reset\t-\tVq\n\
             vq\t-\tcontent.tex#Basic / Virtqueues\t-\tVq\n\
             blk\timplemented\tdevice-types/blk/\t-\tBlock\n\
             mmio\t-\ttransport-mmio.tex\tMMIO Device\tMMIO\n",
        )
        .unwrap()
    }

    #[test]
    fn chapters_match_by_file_then_longest_label() {
        let ch = chapters();
        let p = |f, l| chapter_for(&ch, f, l).map(|c| c.prefix.as_str());
        assert_eq!(
            p("split-ring.tex", "Basic / Message Framing"),
            Some("split")
        );
        assert_eq!(
            p("content.tex", "Basic / Device Status Field"),
            Some("status")
        );
        assert_eq!(
            p(
                "content.tex",
                "Basic / Virtqueues / Virtqueue Reset / Virtqueue Re-enable"
            ),
            Some("vq-reset")
        );
        assert_eq!(p("content.tex", "Basic / Virtqueues / Other"), Some("vq"));
        assert_eq!(p("device-types/blk/description.tex", "x"), Some("blk"));
        assert_eq!(p("content.tex", "Reserved Feature Bits"), None);
        assert_eq!(ch[5].strip.as_deref(), Some("MMIO Device"));
        assert_eq!(ch[5].scope, Scope::NotImplemented);
    }

    #[test]
    fn ids_from_a_spec_tree() {
        let dir = std::env::temp_dir().join(format!("xtask-spec-{}", std::process::id()));
        fs::create_dir_all(dir.join("device-types/blk")).unwrap();
        fs::write(
            dir.join("transport-mmio.tex"),
            "\\devicenormative{\\subsubsection}{MMIO Device Register Layout}{T / MMIO / Layout}\n\
             The device MUST return 0x2. The device MUST clear it.\n\n\
             The device MAY do more.\n",
        )
        .unwrap();
        fs::write(
            dir.join("device-types/blk/description.tex"),
            "\\devicenormative{\\subsubsection}{Device Operation}{D / Block / Op}\nA device MUST\nNOT write.\n",
        )
        .unwrap();
        let clauses = extract(&dir, &chapters()).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        let ids: Vec<(&str, &str)> = clauses
            .iter()
            .map(|c| (c.id.as_str(), c.level.as_str()))
            .collect();
        assert_eq!(
            ids,
            [
                ("blk.device-operation.1", "MUST NOT"),
                ("mmio.register-layout.1", "MUST"),
                ("mmio.register-layout.2", "MUST"),
                ("mmio.register-layout.3", "MAY"),
            ]
        );
        let text = format_clauses("rev-1", &clauses);
        let (rev, back) = parse_clauses(&text).unwrap();
        assert_eq!(rev, "rev-1");
        assert_eq!(back, clauses);
    }
}

//! `cargo run -p xtask -- <task>`: see `xtask/README.md`.

// A development tool: see the reason in lib.rs.
#![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use xtask::{clauses, ffi_header, markers, matrix, plots};

const USAGE: &str = "\
usage: cargo run -p xtask -- <task> [options]

tasks:
  spec-clauses [--spec DIR] [--check]
      Extract every device-side normative statement from the spec's TeX
      (default DIR: ../shared/virtio-spec from the repository root) into
      conformance/clauses.tsv. --check: fail if that would change the file.
  conformance [--check]
      Write CONFORMANCE.md from conformance/clauses.tsv, the `// spec: <id>`
      markers in the tests, conformance/pending-markers.tsv and
      conformance/reasons.tsv. --check: fail if CONFORMANCE.md is stale, if a
      MUST of an implemented chapter has neither a test nor a reason, or if a
      marker or reason names an id that does not exist.
  ffi-header [--check]
      Write virtio-ffi/include/virtio_backend.h with cbindgen from the
      virtio-ffi sources. --check: fail if the committed header differs.
  plots [--check]
      Draw benches/plots/*.svg from the measured data in benches/data/*.tsv
      (written by benches/instructions.sh and benches/blk-vs-qsd.sh).
      --check: fail if a committed SVG is not what the data gives.
";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn read(path: &Path) -> Result<String, String> {
    fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn read_optional(path: &Path) -> Result<String, String> {
    if path.exists() {
        read(path)
    } else {
        Ok(String::new())
    }
}

fn chapters(root: &Path) -> Result<Vec<clauses::Chapter>, String> {
    clauses::parse_chapters(&read(&root.join("conformance/chapters.tsv"))?)
}

/// Writes `path`, or in check mode compares with it.
fn write_or_check(
    root: &Path,
    file: &str,
    content: &str,
    check: bool,
    regenerate: &str,
) -> Result<(), String> {
    let path = root.join(file);
    if check {
        let current = read_optional(&path)?;
        if current != content {
            return Err(format!(
                "{file} is stale (it is not what the sources give): run `{regenerate}` and commit the result"
            ));
        }
        Ok(())
    } else {
        fs::write(&path, content).map_err(|e| format!("{file}: {e}"))
    }
}

fn spec_clauses(root: &Path, spec: Option<PathBuf>, check: bool) -> Result<(), Vec<String>> {
    let spec = spec.unwrap_or_else(|| root.join("../shared/virtio-spec"));
    if !spec.is_dir() {
        return Err(vec![format!(
            "no spec sources at {}: pass --spec DIR (the virtio spec's TeX directory)",
            spec.display()
        )]);
    }
    let revision = read(&spec.join("REVISION")).map_err(|e| vec![e])?;
    let chapters = chapters(root).map_err(|e| vec![e])?;
    let list = clauses::extract(&spec, &chapters).map_err(|e| vec![e])?;
    let text = clauses::format_clauses(revision.trim(), &list);
    write_or_check(
        root,
        "conformance/clauses.tsv",
        &text,
        check,
        "cargo run -p xtask -- spec-clauses",
    )
    .map_err(|e| vec![e])?;
    if !check {
        println!("conformance/clauses.tsv: {} statements", list.len());
    }
    Ok(())
}

fn conformance(root: &Path, check: bool) -> Result<(), Vec<String>> {
    let one = |e: String| vec![e];
    let chapters = chapters(root).map_err(one)?;
    let (revision, list) =
        clauses::parse_clauses(&read(&root.join("conformance/clauses.tsv")).map_err(one)?)
            .map_err(one)?;
    let mut errors = Vec::new();
    let mut found = markers::scan(root).unwrap_or_else(|e| {
        errors.extend(e);
        Vec::new()
    });
    let pending_text = read_optional(&root.join("conformance/pending-markers.tsv")).map_err(one)?;
    found.extend(markers::pending(root, &pending_text).unwrap_or_else(|e| {
        errors.extend(e);
        Vec::new()
    }));
    let reasons_text = read_optional(&root.join("conformance/reasons.tsv")).map_err(one)?;
    let reasons = markers::reasons(&reasons_text).unwrap_or_else(|e| {
        errors.extend(e);
        Vec::new()
    });
    found.sort();
    let inputs = matrix::Inputs {
        revision: &revision,
        chapters: &chapters,
        clauses: &list,
        markers: &found,
        reasons: &reasons,
    };
    let problems = matrix::problems(&inputs);
    if check {
        errors.extend(problems);
    } else if !problems.is_empty() {
        for p in &problems {
            eprintln!("warning: {p}");
        }
    }
    let md = matrix::render(&inputs);
    if let Err(e) = write_or_check(
        root,
        "CONFORMANCE.md",
        &md,
        check,
        "cargo run -p xtask -- conformance",
    ) {
        errors.push(e);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn ffi_header(root: &Path, check: bool) -> Result<(), Vec<String>> {
    let text = ffi_header::generate(root).map_err(|e| vec![e])?;
    write_or_check(
        root,
        "virtio-ffi/include/virtio_backend.h",
        &text,
        check,
        "cargo run -p xtask -- ffi-header",
    )
    .map_err(|e| vec![e])
}

fn plots_task(root: &Path, check: bool) -> Result<(), Vec<String>> {
    let charts = plots::all(&|file| read(&root.join(file))).map_err(|e| vec![e])?;
    if !check {
        fs::create_dir_all(root.join("benches/plots"))
            .map_err(|e| vec![format!("benches/plots: {e}")])?;
    }
    let mut errors = Vec::new();
    for (file, svg) in charts {
        if let Err(e) = write_or_check(root, file, &svg, check, "cargo run -p xtask -- plots") {
            errors.push(e);
        } else if !check {
            println!("wrote {file}");
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let check = args.iter().any(|a| a == "--check");
    let mut spec = None;
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--check" => {}
            "--spec" => match it.next() {
                Some(dir) => spec = Some(PathBuf::from(dir)),
                None => {
                    eprintln!("--spec needs a directory\n\n{USAGE}");
                    return ExitCode::FAILURE;
                }
            },
            _ => rest.push(a.as_str()),
        }
    }
    let root = root();
    let result = match rest.as_slice() {
        ["spec-clauses"] => spec_clauses(&root, spec, check),
        ["conformance"] if spec.is_none() => conformance(&root, check),
        ["ffi-header"] if spec.is_none() => ffi_header(&root, check),
        ["plots"] if spec.is_none() => plots_task(&root, check),
        ["help"] | ["--help"] | ["-h"] => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprint!("{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(errors) => {
            for e in &errors {
                eprintln!("error: {e}");
            }
            eprintln!("{} error(s)", errors.len());
            ExitCode::FAILURE
        }
    }
}

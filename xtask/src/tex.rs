//! From the spec's TeX to device-side normative statements.
//!
//! The pipeline, each step a function here:
//!
//! 1. [`strip_comments`]: TeX `%` comments go (a line that is only a comment
//!    goes entirely, so it never turns into a paragraph break).
//! 2. [`find_blocks`]: every `\devicenormative{level}{Title}{Label}` and its
//!    body, which runs to the next `\drivernormative`, `\devicenormative`,
//!    sectioning command (`\chapter` ... `\subparagraph`), `\conformance` or
//!    `\input`, or the end of the file.
//! 3. [`parse_nodes`]: the body as paragraphs (blank-line separated) and
//!    lists (`itemize`, `enumerate`, `description`, with nested lists).
//!    `note` environments are informative and dropped, as are footnotes;
//!    `lstlisting` becomes inline code.
//! 4. [`statements`]: the splitting rule, documented on that function.
//! 5. [`render`]: TeX markup to one line of readable text.

use std::collections::BTreeMap;

/// One `\devicenormative` block, its body still TeX.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The title argument, rendered (`Device Operation`).
    pub title: String,
    /// The label argument, whitespace-normalised
    /// (`Device Types / Block Device / Device Operation`).
    pub label: String,
    /// The body, TeX, comments stripped.
    pub body: String,
}

/// A paragraph or a list inside a normative block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// Raw TeX of one paragraph.
    Para(String),
    /// A list environment.
    List(ListKind, Vec<Item>),
}

/// The list environments the spec uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// `itemize`
    Itemize,
    /// `enumerate`
    Enumerate,
    /// `description`
    Description,
}

/// One `\item` of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The `[label]` of a description item, raw TeX.
    pub label: Option<String>,
    /// The item's paragraphs and nested lists.
    pub nodes: Vec<Node>,
}

/// Marks the start and end of verbatim code inside a paragraph's raw TeX.
const CODE_START: char = '\u{2}';
const CODE_END: char = '\u{3}';

/// Removes `%` comments. A line holding only a comment is removed with its
/// newline (TeX would not see a blank line there either).
pub fn strip_comments(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    for line in src.lines() {
        match comment_start(line) {
            None => {
                out.push_str(line);
                out.push('\n');
            }
            Some(at) => {
                let kept = &line[..at];
                if !kept.trim().is_empty() {
                    out.push_str(kept);
                    out.push('\n');
                }
            }
        }
    }
    out
}

fn comment_start(line: &str) -> Option<usize> {
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'%' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// Commands that end a normative block's body.
const TERMINATORS: &[&str] = &[
    "drivernormative",
    "devicenormative",
    "chapter",
    "section",
    "subsection",
    "subsubsection",
    "paragraph",
    "subparagraph",
    "conformance",
    "input",
];

/// Is there a `\name` command (not a longer command name) at `at`?
fn command_at(src: &str, at: usize, name: &str) -> bool {
    let rest = &src[at..];
    rest.starts_with('\\')
        && rest[1..].starts_with(name)
        && !rest[1 + name.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
}

/// Reads a `{...}` group (balanced braces) starting at or after `at`,
/// skipping whitespace. Returns the contents and the index after `}`.
fn group(src: &str, at: usize) -> Option<(&str, usize)> {
    let bytes = src.as_bytes();
    let mut i = at;
    while i < bytes.len() && bytes[i].is_ascii_whitespace() {
        i += 1;
    }
    if bytes.get(i) != Some(&b'{') {
        return None;
    }
    let start = i + 1;
    let mut depth = 0usize;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some((&src[start..i], i + 1));
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Every `\devicenormative` block of one file (comments already stripped).
pub fn find_blocks(src: &str) -> Result<Vec<Block>, String> {
    let mut blocks = Vec::new();
    let mut from = 0;
    while let Some(off) = src[from..].find("\\devicenormative") {
        let at = from + off;
        if !command_at(src, at, "devicenormative") {
            from = at + 1;
            continue;
        }
        let mut i = at + "\\devicenormative".len();
        let mut args = Vec::new();
        for _ in 0..3 {
            let (arg, next) = group(src, i).ok_or_else(|| {
                format!(
                    "\\devicenormative without three arguments near {:?}",
                    &src[at..src.len().min(at + 80)]
                )
            })?;
            args.push(arg);
            i = next;
        }
        let end = next_terminator(src, i);
        blocks.push(Block {
            title: render(args[1], &BTreeMap::new()),
            label: normalize_ws(args[2]),
            body: src[i..end].to_string(),
        });
        from = end;
    }
    Ok(blocks)
}

fn next_terminator(src: &str, from: usize) -> usize {
    let mut i = from;
    while let Some(off) = src[i..].find('\\') {
        let at = i + off;
        if TERMINATORS.iter().any(|name| command_at(src, at, name)) {
            return at;
        }
        i = at + 1;
    }
    src.len()
}

/// Numbers of `\item\label{...}` in `enumerate` lists, for `\ref{item:...}`.
pub fn item_labels(src: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let mut from = 0;
    while let Some(off) = src[from..].find("\\begin{enumerate}") {
        let start = from + off + "\\begin{enumerate}".len();
        let Some((inner, after)) = env_body(src, start, "enumerate") else {
            break;
        };
        for (n, item) in split_items(inner).iter().enumerate() {
            let text = item.trim_start();
            if text.starts_with("\\label")
                && let Some((label, _)) = group(text, "\\label".len())
            {
                map.insert(label.trim().to_string(), (n + 1).to_string());
            }
        }
        from = after;
    }
    map
}

/// The body of the environment `env` whose `\begin{env}` ended at `start`:
/// its contents and the index after the matching `\end{env}`.
fn env_body<'a>(src: &'a str, start: usize, env: &str) -> Option<(&'a str, usize)> {
    let begin = format!("\\begin{{{env}}}");
    let end = format!("\\end{{{env}}}");
    let mut depth = 1usize;
    let mut i = start;
    loop {
        let next_begin = src[i..].find(&begin).map(|o| i + o);
        let next_end = src[i..].find(&end).map(|o| i + o)?;
        match next_begin {
            Some(b) if b < next_end => {
                depth += 1;
                i = b + begin.len();
            }
            _ => {
                depth -= 1;
                if depth == 0 {
                    return Some((&src[start..next_end], next_end + end.len()));
                }
                i = next_end + end.len();
            }
        }
    }
}

/// Splits a list body at its top-level `\item`s (not those of nested lists).
/// Returns the text after each `\item`.
fn split_items(body: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let mut depth = 0usize;
    let mut current: Option<usize> = None;
    let mut i = 0;
    while let Some(off) = body[i..].find('\\') {
        let at = i + off;
        if command_at(body, at, "begin") {
            depth += 1;
        } else if command_at(body, at, "end") {
            depth = depth.saturating_sub(1);
        } else if depth == 0 && command_at(body, at, "item") {
            if let Some(s) = current {
                items.push(&body[s..at]);
            }
            current = Some(at + "\\item".len());
        }
        i = at + 1;
    }
    if let Some(s) = current {
        items.push(&body[s..]);
    }
    items
}

/// Parses TeX into paragraphs and lists.
pub fn parse_nodes(src: &str) -> Vec<Node> {
    let mut nodes = Vec::new();
    let mut cur = String::new();
    let flush = |cur: &mut String, nodes: &mut Vec<Node>| {
        if !cur.trim().is_empty() {
            nodes.push(Node::Para(std::mem::take(cur)));
        }
        cur.clear();
    };
    let mut i = 0;
    while i < src.len() {
        let rest = &src[i..];
        if command_at(src, i, "begin") {
            let Some((env, after_name)) = group(src, i + "\\begin".len()) else {
                cur.push('\\');
                i += 1;
                continue;
            };
            let env = env.to_string();
            let (inner, after) =
                env_body(src, after_name, &env).unwrap_or((&src[after_name..], src.len()));
            match env.as_str() {
                "itemize" | "enumerate" | "description" => {
                    flush(&mut cur, &mut nodes);
                    let kind = match env.as_str() {
                        "itemize" => ListKind::Itemize,
                        "enumerate" => ListKind::Enumerate,
                        _ => ListKind::Description,
                    };
                    nodes.push(Node::List(kind, parse_items(inner)));
                }
                "note" | "figure" | "comment" => {}
                "lstlisting" => {
                    cur.push(' ');
                    cur.push(CODE_START);
                    cur.push_str(&normalize_ws(inner));
                    cur.push(CODE_END);
                    cur.push(' ');
                }
                _ => cur.push_str(inner),
            }
            i = after;
        } else if rest.starts_with('\n') {
            let gap = rest.len() - rest.trim_start().len();
            if rest[..gap].matches('\n').count() >= 2 {
                flush(&mut cur, &mut nodes);
            } else {
                cur.push(' ');
            }
            i += gap;
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            cur.push(c);
            i += c.len_utf8();
        }
    }
    flush(&mut cur, &mut nodes);
    nodes
}

fn parse_items(body: &str) -> Vec<Item> {
    split_items(body)
        .into_iter()
        .map(|text| {
            let trimmed = text.trim_start();
            let (label, text) = if trimmed.starts_with('[') {
                match trimmed.find(']') {
                    Some(close) => (Some(trimmed[1..close].to_string()), &trimmed[close + 1..]),
                    None => (None, trimmed),
                }
            } else {
                (None, trimmed)
            };
            Item {
                label,
                nodes: parse_nodes(text),
            }
        })
        .collect()
}

/// The RFC 2119 keywords, longest first so `MUST NOT` wins over `MUST`.
const KEYWORDS: &[(&str, u8)] = &[
    ("MUST NOT", 3),
    ("SHALL NOT", 3),
    ("SHOULD NOT", 2),
    ("NOT RECOMMENDED", 2),
    ("MUST", 3),
    ("SHALL", 3),
    ("REQUIRED", 3),
    ("SHOULD", 2),
    ("RECOMMENDED", 2),
    ("MAY", 1),
    ("OPTIONAL", 1),
];

/// The keywords in `text`, in order, as (keyword, strength).
fn keywords(text: &str) -> Vec<(&'static str, u8)> {
    let mut found = Vec::new();
    let words: Vec<(usize, &str)> = word_spans(text);
    let mut w = 0;
    while w < words.len() {
        let mut matched = false;
        for &(kw, strength) in KEYWORDS {
            let parts: Vec<&str> = kw.split(' ').collect();
            if w + parts.len() <= words.len()
                && parts.iter().enumerate().all(|(k, p)| words[w + k].1 == *p)
            {
                found.push((kw, strength));
                w += parts.len();
                matched = true;
                break;
            }
        }
        if !matched {
            w += 1;
        }
    }
    found
}

fn word_spans(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        let part = c.is_ascii_alphanumeric() || c == '_';
        match (part, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((s, &text[s..i]));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, &text[s..]));
    }
    out
}

/// Does `text` hold an RFC 2119 keyword?
pub fn has_keyword(text: &str) -> bool {
    !keywords(text).is_empty()
}

/// The level of a statement: the first keyword of the strongest class
/// (MUST, MUST NOT, SHALL, SHALL NOT, REQUIRED > SHOULD, SHOULD NOT,
/// RECOMMENDED, NOT RECOMMENDED > MAY, OPTIONAL).
pub fn level(text: &str) -> Option<&'static str> {
    let found = keywords(text);
    let best = found.iter().map(|&(_, s)| s).max()?;
    found.iter().find(|&&(_, s)| s == best).map(|&(k, _)| k)
}

/// Words that end with a period without ending a sentence.
const ABBREVIATIONS: &[&str] = &["e.g", "i.e", "etc", "cf", "vs", "resp", "approx", "no"];

/// Splits plain text into sentences: a sentence ends at `.`, `!` or `?`
/// followed by a space and then an upper-case letter or `(`, unless the
/// word before the stop is an abbreviation (e.g., i.e., etc.).
pub fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = 0;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    for (k, &(i, c)) in chars.iter().enumerate() {
        if !matches!(c, '.' | '!' | '?') {
            continue;
        }
        let Some(&(_, space)) = chars.get(k + 1) else {
            continue;
        };
        let Some(&(_, next)) = chars.get(k + 2) else {
            continue;
        };
        if space != ' ' || !(next.is_ascii_uppercase() || next == '(') {
            continue;
        }
        let before = &text[start..i];
        let last_word = before
            .rsplit(|ch: char| ch.is_whitespace() || ch == '(')
            .next()
            .unwrap_or("");
        if ABBREVIATIONS
            .iter()
            .any(|a| last_word.eq_ignore_ascii_case(a))
        {
            continue;
        }
        out.push(text[start..=i].trim().to_string());
        start = i + 1;
    }
    let tail = text[start..].trim();
    if !tail.is_empty() {
        out.push(tail.to_string());
    }
    out
}

/// Splits a normative block into its statements (plain text, one line each).
///
/// The rule, applied to every block of the spec:
///
/// 1. A block is a sequence of paragraphs and lists. `note` environments
///    and footnotes are informative and are not part of any statement.
/// 2. A list none of whose items holds an RFC 2119 keyword is folded into
///    the paragraph that introduces it (`(1) ... (2) ...` for `enumerate`,
///    `• ...` for `itemize`, `label: ...` for `description`).
/// 3. A list with keywords in its items: every item is split like a block of
///    its own (nested lists likewise). When the paragraph introducing the
///    list holds no keyword (`If VIRTIO_F_EVENT_IDX is not negotiated:`), it
///    is put in front of every statement of the list as context; when it
///    does hold one, it is a statement of its own. Context waiting from
///    earlier paragraphs (rule 5) goes to the list's first statement only.
/// 4. A paragraph is split into sentences; every sentence holding a keyword
///    starts a new statement; a sentence without one joins the statement
///    before it in the same paragraph (`Failure to do so ...`, `(see ...)`),
///    or the first statement of the paragraph when it comes first.
/// 5. A paragraph without any keyword is context for the next statement of
///    the block and is put in front of it; at the end of a block it joins
///    the last statement.
///
/// A statement's level is its strongest keyword (see [`level`]).
pub fn statements(nodes: &[Node], labels: &BTreeMap<String, String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut pending: Vec<String> = Vec::new();
    let mut i = 0;
    while i < nodes.len() {
        match &nodes[i] {
            Node::Para(raw) => {
                let mut text = render(raw, labels);
                let next_list = match nodes.get(i + 1) {
                    Some(Node::List(kind, items)) => Some((*kind, items)),
                    _ => None,
                };
                if let Some((kind, items)) = next_list {
                    if list_has_keyword(items, labels) {
                        if has_keyword(&text) {
                            emit_paragraph(&text, &mut pending, &mut out);
                            for s in list_statements(items, labels) {
                                out.push(s);
                            }
                        } else {
                            let mut before = take_context(&mut pending);
                            for s in list_statements(items, labels) {
                                let s = join(&text, &s);
                                out.push(join(&std::mem::take(&mut before), &s));
                            }
                        }
                        i += 2;
                        continue;
                    }
                    text = join(&text, &fold(kind, items, labels));
                    i += 1;
                }
                if has_keyword(&text) {
                    emit_paragraph(&text, &mut pending, &mut out);
                } else {
                    pending.push(text);
                }
            }
            Node::List(kind, items) => {
                if list_has_keyword(items, labels) {
                    let mut before = take_context(&mut pending);
                    for s in list_statements(items, labels) {
                        out.push(join(&std::mem::take(&mut before), &s));
                    }
                } else {
                    pending.push(fold(*kind, items, labels));
                }
            }
        }
        i += 1;
    }
    if !pending.is_empty() {
        let tail = take_context(&mut pending);
        if let Some(last) = out.last_mut() {
            *last = join(last, &tail);
        }
    }
    out
}

fn take_context(pending: &mut Vec<String>) -> String {
    let ctx = pending.join(" ");
    pending.clear();
    ctx
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a} {b}"),
    }
}

fn emit_paragraph(text: &str, pending: &mut Vec<String>, out: &mut Vec<String>) {
    let mut ctx = take_context(pending);
    let mut current: Option<String> = None;
    for sentence in sentences(text) {
        if has_keyword(&sentence) {
            if let Some(done) = current.take() {
                out.push(done);
            }
            current = Some(join(&std::mem::take(&mut ctx), &sentence));
        } else {
            match current.as_mut() {
                Some(c) => *c = join(c, &sentence),
                None => ctx = join(&ctx, &sentence),
            }
        }
    }
    if let Some(done) = current {
        out.push(done);
    }
}

fn list_has_keyword(items: &[Item], labels: &BTreeMap<String, String>) -> bool {
    items
        .iter()
        .any(|item| nodes_have_keyword(&item.nodes, labels))
}

fn nodes_have_keyword(nodes: &[Node], labels: &BTreeMap<String, String>) -> bool {
    nodes.iter().any(|n| match n {
        Node::Para(raw) => has_keyword(&render(raw, labels)),
        Node::List(_, items) => list_has_keyword(items, labels),
    })
}

fn list_statements(items: &[Item], labels: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for item in items {
        let label = item
            .label
            .as_deref()
            .map(|l| format!("{}:", render(l, labels)))
            .unwrap_or_default();
        for s in statements(&item.nodes, labels) {
            out.push(join(&label, &s));
        }
    }
    out
}

fn fold(kind: ListKind, items: &[Item], labels: &BTreeMap<String, String>) -> String {
    let mut parts = Vec::new();
    for (n, item) in items.iter().enumerate() {
        let body = flatten(&item.nodes, labels);
        let head = match kind {
            ListKind::Itemize => "•".to_string(),
            ListKind::Enumerate => format!("({})", n + 1),
            ListKind::Description => item
                .label
                .as_deref()
                .map(|l| format!("{}:", render(l, labels)))
                .unwrap_or_default(),
        };
        parts.push(join(&head, &body));
    }
    parts.join(" ")
}

fn flatten(nodes: &[Node], labels: &BTreeMap<String, String>) -> String {
    let mut parts = Vec::new();
    for n in nodes {
        match n {
            Node::Para(raw) => parts.push(render(raw, labels)),
            Node::List(kind, items) => parts.push(fold(*kind, items, labels)),
        }
    }
    parts.join(" ")
}

/// Collapses runs of whitespace to one space and trims.
pub fn normalize_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Commands whose one argument is kept as text.
const KEEP_ARG: &[&str] = &[
    "field",
    "textbf",
    "textit",
    "emph",
    "em",
    "texttt",
    "underline",
    "mbox",
    "text",
    "url",
    "textsc",
    "hyperref",
];
/// Commands dropped with their argument.
const DROP_ARG: &[&str] = &["label", "footnote", "index", "vspace", "hspace", "cite"];
/// Commands without argument, and what they become.
const SYMBOLS: &[(&str, &str)] = &[
    ("ldots", "..."),
    ("dots", "..."),
    ("cdots", "..."),
    ("times", "x"),
    ("cdot", "*"),
    ("le", "<="),
    ("leq", "<="),
    ("ge", ">="),
    ("geq", ">="),
    ("neq", "!="),
    ("ne", "!="),
    ("rightarrow", "->"),
    ("to", "->"),
    ("hline", ""),
    ("newline", " "),
    ("noindent", ""),
    ("item", ""),
];

/// TeX markup to plain text on one line: `\field{x}` is `x`, `\ref{...}` is
/// `§"<last part of the label>"` (or the item number for `\ref{item:...}`),
/// footnotes and labels go, math keeps its text, verbatim code is `` `code` ``.
pub fn render(raw: &str, labels: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    render_into(raw, labels, &mut out);
    let text = normalize_ws(&out);
    tidy(&text)
}

fn render_into(raw: &str, labels: &BTreeMap<String, String>, out: &mut String) {
    let mut i = 0;
    while i < raw.len() {
        let rest = &raw[i..];
        let c = rest.chars().next().unwrap_or(' ');
        match c {
            CODE_START => {
                let end = rest.find(CODE_END).unwrap_or(rest.len());
                out.push('`');
                out.push_str(&rest[c.len_utf8()..end]);
                out.push('`');
                i += (end + CODE_END.len_utf8()).min(rest.len());
            }
            '\\' => {
                let name: String = rest[1..]
                    .chars()
                    .take_while(|ch| ch.is_ascii_alphabetic())
                    .collect();
                if name.is_empty() {
                    // \\, \&, \_, \%, \#, \$, \{, \}, \  and friends.
                    match rest[1..].chars().next() {
                        Some('\\') | None => out.push(' '),
                        Some(ch) => out.push(ch),
                    }
                    i += 1 + rest[1..].chars().next().map_or(0, char::len_utf8);
                    continue;
                }
                let after = i + 1 + name.len();
                let mut j = after;
                // An optional [..] argument is skipped (\hyperref[...]{text}).
                if raw[j..].starts_with('[')
                    && let Some(close) = raw[j..].find(']')
                {
                    j += close + 1;
                }
                if name == "ref" || name == "nameref" {
                    if let Some((target, next)) = group(raw, j) {
                        out.push_str(&render_ref(&name, target, labels));
                        i = next;
                        continue;
                    }
                } else if DROP_ARG.contains(&name.as_str()) {
                    if let Some((_, next)) = group(raw, j) {
                        i = next;
                        continue;
                    }
                } else if KEEP_ARG.contains(&name.as_str()) {
                    if let Some((arg, next)) = group(raw, j) {
                        render_into(arg, labels, out);
                        i = next;
                        continue;
                    }
                } else if let Some((_, sym)) = SYMBOLS.iter().find(|(n, _)| *n == name) {
                    out.push_str(sym);
                    if name.len() > 2 {
                        out.push(' ');
                    }
                }
                // Unknown commands vanish; their braces' contents stay.
                i = after;
            }
            '{' | '}' | '$' => i += 1,
            '~' => {
                out.push(' ');
                i += 1;
            }
            '`' if rest.starts_with("``") => {
                out.push('"');
                i += 2;
            }
            '\'' if rest.starts_with("''") => {
                out.push('"');
                i += 2;
            }
            '-' if rest.starts_with("---") => {
                out.push_str(" - ");
                i += 3;
            }
            '-' if rest.starts_with("--") => {
                out.push('-');
                i += 2;
            }
            '\t' | '\n' | '\r' => {
                out.push(' ');
                i += 1;
            }
            _ => {
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
}

fn render_ref(kind: &str, target: &str, labels: &BTreeMap<String, String>) -> String {
    let target = normalize_ws(target);
    if let Some(n) = labels.get(&target) {
        return n.clone();
    }
    let path = target.split_once(':').map_or(target.as_str(), |(_, p)| p);
    let last = path.rsplit('/').next().unwrap_or(path).trim();
    if kind == "nameref" {
        format!("\"{last}\"")
    } else {
        format!("§\"{last}\"")
    }
}

/// Spaces left where markup was removed: `x ,` and `( x` and `x )`.
fn tidy(text: &str) -> String {
    let mut s = text.to_string();
    for (from, to) in [
        (" ,", ","),
        (" .", "."),
        (" ;", ";"),
        ("( ", "("),
        (" )", ")"),
        (" :", ":"),
    ] {
        while s.contains(from) {
            s = s.replace(from, to);
        }
    }
    s
}

/// The slug of a block title: lower case, words joined by `-`; `the` and
/// `a` go, `virtqueue(s)` goes unless it is the only word, and so does a
/// per-chapter title prefix (`MMIO Device` in `MMIO Device Register Layout`).
pub fn slug(title: &str, strip_prefix: Option<&str>) -> String {
    let lower = title.to_lowercase();
    let mut words: Vec<&str> = lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    if let Some(prefix) = strip_prefix {
        let prefix = prefix.to_lowercase();
        let pw: Vec<&str> = prefix
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect();
        if words.len() > pw.len() && words.iter().zip(&pw).all(|(a, b)| a == b) {
            words.drain(..pw.len());
        }
    }
    words.retain(|w| *w != "the" && *w != "a");
    if words.len() > 1 {
        words.retain(|w| *w != "virtqueue" && *w != "virtqueues");
    }
    words.join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(tex: &str) -> Vec<String> {
        let src = strip_comments(tex);
        let labels = item_labels(&src);
        statements(&parse_nodes(&src), &labels)
    }

    #[test]
    fn finds_blocks_and_their_ends() {
        let src = strip_comments(
            "\\devicenormative{\\subsection}{Device Reset}{Basic / Device Reset}\n\
             A device MUST do x.\n\n\
             \\drivernormative{\\subsection}{Device Reset}{Basic / Device Reset}\n\
             The driver MUST do y.\n\
             \\devicenormative{\\paragraph}{Sending}  {Basic /\nSending}\nThe device MAY z.\n\
             \\subsection{Next}\nThe device MUST NOT be here.\n",
        );
        let blocks = find_blocks(&src).unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].title, "Device Reset");
        assert_eq!(blocks[0].label, "Basic / Device Reset");
        assert!(blocks[0].body.contains("MUST do x"));
        assert!(!blocks[0].body.contains("driver"));
        assert_eq!(blocks[1].label, "Basic / Sending");
        assert!(!blocks[1].body.contains("here"));
    }

    #[test]
    fn a_ref_to_a_devicenormative_label_is_not_a_block() {
        let src = "See \\ref{devicenormative:Basic / Feature Bits}.\n";
        assert!(find_blocks(src).unwrap().is_empty());
    }

    #[test]
    fn paragraphs_and_sentences() {
        let got = split(
            "The device MUST reset the queue. The device MUST continue\n\
             to present 1. The device MUST present 0.\n(see \\ref{sec:A / Virtqueue Reset}).\n\n\
             The device SHOULD NOT fail re-negotiation. Failure to do so would interfere.\n",
        );
        assert_eq!(
            got,
            [
                "The device MUST reset the queue.",
                "The device MUST continue to present 1.",
                "The device MUST present 0. (see §\"Virtqueue Reset\").",
                "The device SHOULD NOT fail re-negotiation. Failure to do so would interfere.",
            ]
        );
    }

    #[test]
    fn a_sentence_without_keyword_at_the_start_joins_the_next() {
        let got =
            split("The feature cannot be negotiated alone. Legacy devices MUST NOT offer it.\n");
        assert_eq!(
            got,
            ["The feature cannot be negotiated alone. Legacy devices MUST NOT offer it."]
        );
    }

    #[test]
    fn abbreviations_do_not_end_sentences() {
        assert_eq!(
            sentences("A device MUST NOT use it (e.g. As compared to zero). It MAY."),
            [
                "A device MUST NOT use it (e.g. As compared to zero).",
                "It MAY."
            ]
        );
    }

    #[test]
    fn lead_in_without_keyword_is_context_for_nested_items() {
        let got = split(
            "If EVENT_IDX is not negotiated:\n\\begin{itemize}\n\
             \\item The device MUST ignore \\field{used_event}.\n\
             \\item After the device writes:\n  \\begin{itemize}\n\
               \\item If \\field{flags} is 1, the device SHOULD NOT notify.\n\
               \\item If \\field{flags} is 0, the device MUST notify.\n\
               \\end{itemize}\n\\end{itemize}\n\n\
             \\begin{note}\nFor example, MUST not count.\n\\end{note}\n",
        );
        assert_eq!(
            got,
            [
                "If EVENT_IDX is not negotiated: The device MUST ignore used_event.",
                "If EVENT_IDX is not negotiated: After the device writes: If flags is 1, the device SHOULD NOT notify.",
                "If EVENT_IDX is not negotiated: After the device writes: If flags is 0, the device MUST notify.",
            ]
        );
    }

    #[test]
    fn waiting_context_goes_to_the_first_item_only() {
        let got = split(
            "It is undefined.\n\nA request that exceeds it, then,\n\\begin{itemize}\n\
             \\item if zero, it SHALL be x.\n\\item if not, it SHALL be y.\n\\end{itemize}\n",
        );
        assert_eq!(
            got,
            [
                "It is undefined. A request that exceeds it, then, if zero, it SHALL be x.",
                "A request that exceeds it, then, if not, it SHALL be y.",
            ]
        );
    }

    #[test]
    fn lists_without_keywords_fold_into_their_lead_in() {
        let got = split(
            "the device SHOULD do these before:\n\n\\begin{itemize}\n\\item Stop.\n\\item Wait.\n\\end{itemize}\n\n\
             Unwritten data MUST be one of -\n\\begin{enumerate}\n\\item Fill it.\n\\item Fail.\n\\end{enumerate}\n",
        );
        assert_eq!(
            got,
            [
                "the device SHOULD do these before: • Stop. • Wait.",
                "Unwritten data MUST be one of - (1) Fill it. (2) Fail.",
            ]
        );
    }

    #[test]
    fn keyword_less_paragraphs_are_context_for_the_next_statement() {
        let got = split(
            "The device MUST x.\n\nThe following only apply with Z.\n\nThe device MUST y.\n\nIt is undefined.\n",
        );
        assert_eq!(
            got,
            [
                "The device MUST x.",
                "The following only apply with Z. The device MUST y. It is undefined."
            ]
        );
    }

    #[test]
    fn item_refs_become_numbers_and_markup_goes() {
        let got = split(
            "A write is stable if:\n\\begin{enumerate}\n\\item\\label{item:one} never;\n\\item\\label{item:two} always.\n\\end{enumerate}\n\n\
             The device MUST commit (cases~\\ref{item:one} and~\\ref{item:two})\\footnote{A note.}, \\textbf{all} of\n\
             $2^{32}$ bytes \\& more.\n\\begin{lstlisting}\n  n = (a + b) / c;\n\\end{lstlisting}\n",
        );
        assert_eq!(
            got,
            [
                "A write is stable if: (1) never; (2) always. The device MUST commit (cases 1 and 2), all of 2^32 bytes & more. `n = (a + b) / c;`"
            ]
        );
    }

    #[test]
    fn comment_lines_are_not_paragraph_breaks() {
        let got = split("The device MUST x. % trailing\n% whole line\nIt goes on.\n");
        assert_eq!(got, ["The device MUST x. It goes on."]);
    }

    #[test]
    fn levels_take_the_strongest_keyword() {
        assert_eq!(
            level("The device SHOULD accept, otherwise it MUST fail"),
            Some("MUST")
        );
        assert_eq!(level("it MUST NOT offer"), Some("MUST NOT"));
        assert_eq!(level("it SHOULD\nNOT"), Some("SHOULD NOT"));
        assert_eq!(level("It MAY, or SHALL"), Some("SHALL"));
        assert_eq!(level("It is RECOMMENDED"), Some("RECOMMENDED"));
        assert_eq!(level("MUSTARD and VIRTIO_MUST"), None);
    }

    #[test]
    fn slugs() {
        assert_eq!(slug("The Virtqueue Used Ring", None), "used-ring");
        assert_eq!(slug("Virtqueues", None), "virtqueues");
        assert_eq!(slug("Virtqueue Re-enable", None), "re-enable");
        assert_eq!(
            slug("MMIO Device Register Layout", Some("MMIO Device")),
            "register-layout"
        );
        assert_eq!(
            slug("Device Operation: Program Key", None),
            "device-operation-program-key"
        );
        assert_eq!(slug("Property RESV_MEM", None), "property-resv-mem");
    }

    #[test]
    fn description_items_keep_their_label() {
        let got = split(
            "\\begin{description}\n\\item[VIRTIO_X] The device MUST y.\n\\end{description}\n",
        );
        assert_eq!(got, ["VIRTIO_X: The device MUST y."]);
    }
}

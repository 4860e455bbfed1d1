//! Reading a benchmark's published method at run time: the string, list and number constants
//! of an upstream Python file (CyberSecEval's judge prompts, its refusal patterns), found by
//! the name they are assigned to or by the keyword and function they are passed in, and
//! Python's `str.format` for filling them. Nothing of the upstream text is compiled into
//! redtrace; a file that lacks what is looked for is an error naming the file and the name.
//!
//! This is a reader of literals, not of Python: it tokenises strings (every prefix and quote
//! form, with their escapes), comments and brackets, which is what finding a constant needs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A string literal of the file and where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Literal {
    /// Its value, escapes decoded, adjacent literals joined.
    pub value: String,
    /// Whether it is an f-string (its `{{` and `}}` are escapes; a plain string's are not).
    pub formatted: bool,
    constant: Option<String>,
    keyword: Option<String>,
    /// The key of a `"key": "…"` dictionary entry.
    dict_key: Option<String>,
    /// The function it appears in, `Class.method` for a method.
    function: Option<String>,
    /// Followed by `.join(`: a separator.
    joins: bool,
}

impl Literal {
    /// Its text as sent: an f-string filled by [`format_py`] with `values`; a plain string as
    /// it is.
    pub fn fill(&self, values: &[(&str, &str)]) -> Result<String, String> {
        if self.formatted {
            format_py(&self.value, values)
        } else {
            Ok(self.value.clone())
        }
    }
}

/// The literals of one Python file.
#[derive(Debug, Clone)]
pub struct PySource {
    path: PathBuf,
    literals: Vec<Literal>,
    lists: BTreeMap<String, Vec<String>>,
    numbers: BTreeMap<String, i64>,
}

/// A method file that cannot be read, or lacks what is looked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {detail}", path.display())]
pub struct MethodError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub detail: String,
}

impl PySource {
    /// Reads and tokenises `path`.
    pub fn read(path: &Path) -> Result<Self, MethodError> {
        let text = std::fs::read_to_string(path).map_err(|error| MethodError {
            path: path.to_owned(),
            detail: error.to_string(),
        })?;
        Self::parse(path, &text)
    }

    /// Tokenises `text`, the content of `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, MethodError> {
        let error = |detail: String| MethodError {
            path: path.to_owned(),
            detail,
        };
        let chars: Vec<char> = text.chars().collect();
        let mut source = PySource {
            path: path.to_owned(),
            literals: Vec::new(),
            lists: BTreeMap::new(),
            numbers: BTreeMap::new(),
        };
        let mut function: Option<String> = None;
        let mut class: Option<String> = None;
        // The open list of a top-level `NAME = [`: its name and bracket depth.
        let mut open_list: Option<(String, usize)> = None;
        let mut depth = 0usize;
        let mut line_start = 0usize;
        let mut i = 0usize;
        // The literal being joined with its adjacent neighbours, waiting for what follows.
        let mut pending: Option<Literal> = None;
        while i < chars.len() {
            let c = chars[i];
            if c == '\n' {
                line_start = i + 1;
                i += 1;
                continue;
            }
            if c.is_whitespace() || (c == '\\' && chars.get(i + 1) == Some(&'\n')) {
                i += 1;
                continue;
            }
            if c == '#' {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            if let Some((prefix_len, raw)) = string_start(&chars, i) {
                let line = 1 + chars[..i].iter().filter(|c| **c == '\n').count();
                let formatted = chars[i..i + prefix_len]
                    .iter()
                    .any(|c| c.eq_ignore_ascii_case(&'f'));
                let (value, end) = read_string(&chars, i + prefix_len, raw)
                    .map_err(|detail| error(format!("line {line}: {detail}")))?;
                match pending.as_mut() {
                    Some(literal) => literal.value.push_str(&value),
                    None => {
                        let before: String = chars[line_start..i].iter().collect();
                        let (constant, keyword) = assigned_to(&before, depth);
                        pending = Some(Literal {
                            value,
                            formatted,
                            constant,
                            keyword,
                            dict_key: dict_key(&before),
                            function: function.clone(),
                            joins: false,
                        });
                    }
                }
                i = end;
                let rest: String = chars[i..].iter().take(6).collect();
                if rest == ".join(" {
                    if let Some(literal) = pending.as_mut() {
                        literal.joins = true;
                    }
                }
                continue;
            }
            // Anything else ends a run of adjacent literals.
            if let Some(literal) = pending.take() {
                if let Some((name, _)) = &open_list {
                    source
                        .lists
                        .entry(name.clone())
                        .or_default()
                        .push(literal.value.clone());
                }
                source.literals.push(literal);
            }
            if c.is_alphabetic() || c == '_' {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                if word == "class" && start == line_start {
                    let rest: String = chars[i..]
                        .iter()
                        .take_while(|c| **c != '(' && **c != ':')
                        .collect();
                    class = Some(rest.trim().to_owned());
                    function = None;
                } else if word == "def" {
                    let rest: String = chars[i..].iter().take_while(|c| **c != '(').collect();
                    let name = rest.trim().to_owned();
                    // A `def` at the start of its line ends any class; an indented one in a
                    // class is its method.
                    let at_top = start == line_start;
                    if at_top {
                        class = None;
                    }
                    function = Some(match (&class, at_top) {
                        (Some(class), false) => format!("{class}.{name}"),
                        _ => name,
                    });
                } else if depth == 0 && start == line_start {
                    // A top-level `NAME = 123` or `NAME = [`.
                    let rest: String = chars[i..].iter().take_while(|c| **c != '\n').collect();
                    if let Some(value) = rest.trim().strip_prefix('=') {
                        let value = value.trim();
                        if let Ok(number) = value.parse::<i64>() {
                            source.numbers.insert(word.clone(), number);
                        } else if value == "[" || value.starts_with('[') {
                            open_list = Some((word.clone(), 1));
                            source.lists.entry(word).or_default();
                        }
                    }
                }
                continue;
            }
            match c {
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => {
                    depth = depth.saturating_sub(1);
                    if matches!(&open_list, Some((_, level)) if depth < *level) {
                        open_list = None;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        if let Some(literal) = pending.take() {
            source.literals.push(literal);
        }
        Ok(source)
    }

    /// The file read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn missing(&self, what: String) -> MethodError {
        MethodError {
            path: self.path.clone(),
            detail: format!("{what} is not in this file (is it the pinned upstream version?)"),
        }
    }

    /// The string assigned to the top-level `name`.
    pub fn constant(&self, name: &str) -> Result<&str, MethodError> {
        self.literals
            .iter()
            .find(|l| l.constant.as_deref() == Some(name))
            .map(|l| l.value.as_str())
            .ok_or_else(|| self.missing(format!("the string constant {name}")))
    }

    /// The list of strings assigned to the top-level `name`.
    pub fn list(&self, name: &str) -> Result<&[String], MethodError> {
        self.lists
            .get(name)
            .filter(|l| !l.is_empty())
            .map(Vec::as_slice)
            .ok_or_else(|| self.missing(format!("the list of strings {name}")))
    }

    /// The integer assigned to the top-level `name`.
    pub fn number(&self, name: &str) -> Result<i64, MethodError> {
        self.numbers
            .get(name)
            .copied()
            .ok_or_else(|| self.missing(format!("the number {name}")))
    }

    /// The string passed as `keyword=` (or assigned to `keyword`) inside `function`; the
    /// first one when there are several.
    pub fn keyword_in(&self, function: &str, keyword: &str) -> Result<&str, MethodError> {
        self.keyword_literal_in(function, keyword)
            .map(|literal| literal.value.as_str())
    }

    /// The first string literal in `function` (`Class.method` for a method).
    pub fn first_in(&self, function: &str) -> Result<&Literal, MethodError> {
        self.literals
            .iter()
            .find(|l| l.function.as_deref() == Some(function))
            .ok_or_else(|| self.missing(format!("a string in {function}()")))
    }

    /// The first string literal in `function` that contains `needle`.
    pub fn containing_in(&self, function: &str, needle: &str) -> Result<&Literal, MethodError> {
        self.literals
            .iter()
            .find(|l| l.function.as_deref() == Some(function) && l.value.contains(needle))
            .ok_or_else(|| self.missing(format!("a string with '{needle}' in {function}()")))
    }

    /// The string literal that is the value of the dictionary entry `"key": "…"` in
    /// `function`.
    pub fn entry_in(&self, function: &str, key: &str) -> Result<&Literal, MethodError> {
        self.literals
            .iter()
            .find(|l| l.function.as_deref() == Some(function) && l.dict_key.as_deref() == Some(key))
            .ok_or_else(|| self.missing(format!("the entry \"{key}\" in {function}()")))
    }

    /// The separator `"…".join(` in `function`.
    pub fn joiner_in(&self, function: &str) -> Result<&Literal, MethodError> {
        self.literals
            .iter()
            .find(|l| l.function.as_deref() == Some(function) && l.joins)
            .ok_or_else(|| self.missing(format!("a \"….join(\" in {function}()")))
    }

    /// The string literal passed as `keyword=` (or assigned to `keyword`) inside `function`.
    pub fn keyword_literal_in(
        &self,
        function: &str,
        keyword: &str,
    ) -> Result<&Literal, MethodError> {
        self.literals
            .iter()
            .find(|l| {
                l.function.as_deref() == Some(function) && l.keyword.as_deref() == Some(keyword)
            })
            .ok_or_else(|| self.missing(format!("the string {keyword}= in {function}()")))
    }
}

/// Whether a string literal starts at `i`: the length of its prefix and whether it is raw.
fn string_start(chars: &[char], i: usize) -> Option<(usize, bool)> {
    // The prefix must not be the tail of a longer identifier.
    if i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_') {
        return None;
    }
    let mut len = 0;
    let mut raw = false;
    while len < 2 {
        match chars.get(i + len).map(|c| c.to_ascii_lowercase()) {
            Some('r') => raw = true,
            Some('f' | 'b' | 'u') => {}
            _ => break,
        }
        len += 1;
    }
    matches!(chars.get(i + len), Some('"' | '\'')).then_some((len, raw))
}

/// Reads the string whose quote starts at `i`: its value and the index after it.
fn read_string(chars: &[char], i: usize, raw: bool) -> Result<(String, usize), String> {
    let quote = chars[i];
    let triple = chars.get(i + 1) == Some(&quote) && chars.get(i + 2) == Some(&quote);
    let mut j = if triple { i + 3 } else { i + 1 };
    let mut value = String::new();
    loop {
        let Some(&c) = chars.get(j) else {
            return Err("a string literal is not closed".into());
        };
        if c == quote
            && (!triple || (chars.get(j + 1) == Some(&quote) && chars.get(j + 2) == Some(&quote)))
        {
            return Ok((value, if triple { j + 3 } else { j + 1 }));
        }
        if c == '\n' && !triple {
            return Err("a one-line string literal runs past its line".into());
        }
        if c == '\\' {
            let Some(&next) = chars.get(j + 1) else {
                return Err("a string literal ends in a backslash".into());
            };
            if raw {
                // A raw string keeps the backslash; it still cannot end on an escaped quote.
                value.push('\\');
                value.push(next);
                j += 2;
                continue;
            }
            j += 2;
            match next {
                '\n' => {}
                'n' => value.push('\n'),
                't' => value.push('\t'),
                'r' => value.push('\r'),
                '0' => value.push('\0'),
                '\\' | '\'' | '"' => value.push(next),
                'x' | 'u' | 'U' => {
                    let digits = match next {
                        'x' => 2,
                        'u' => 4,
                        _ => 8,
                    };
                    let hex: String = chars.iter().skip(j).take(digits).collect();
                    let decoded = u32::from_str_radix(&hex, 16)
                        .ok()
                        .and_then(char::from_u32)
                        .ok_or_else(|| format!("a bad \\{next} escape"))?;
                    value.push(decoded);
                    j += digits;
                }
                // Python keeps an unknown escape as it is.
                other => {
                    value.push('\\');
                    value.push(other);
                }
            }
            continue;
        }
        value.push(c);
        j += 1;
    }
}

/// The key of a `"key": ` dictionary entry that the text before a literal ends with.
fn dict_key(before: &str) -> Option<String> {
    let head = before.trim_end().strip_suffix(':')?.trim_end();
    let quote = head.chars().last().filter(|c| *c == '"' || *c == '\'')?;
    let inner = &head[..head.len() - 1];
    let start = inner.rfind(quote)?;
    Some(inner[start + 1..].to_owned())
}

/// What the text before a literal on its line assigns it to: a top-level constant (`NAME =`
/// at depth 0) or a keyword / local name (`NAME=` inside a call or a function).
fn assigned_to(before: &str, depth: usize) -> (Option<String>, Option<String>) {
    let trimmed = before.trim_end();
    let Some(head) = trimmed.strip_suffix('=') else {
        return (None, None);
    };
    if head.ends_with(['=', '!', '<', '>']) {
        return (None, None);
    }
    let head = head.trim_end();
    let name: String = head
        .chars()
        .rev()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    if name.is_empty() {
        return (None, None);
    }
    let top_level = depth == 0 && before.starts_with(name.as_str());
    if top_level {
        (Some(name), None)
    } else {
        (None, Some(name))
    }
}

/// Python's `str.format` (and an f-string's simple fields) for named fields: `{name}` takes
/// its value from `values`, `{{` and `}}` are literal braces. A field with no value, or with
/// a format spec or conversion, is an error naming it; values put in are never re-read.
pub fn format_py(template: &str, values: &[(&str, &str)]) -> Result<String, String> {
    let mut out =
        String::with_capacity(template.len() + values.iter().map(|v| v.1.len()).sum::<usize>());
    let mut rest = template;
    while let Some(at) = rest.find(['{', '}']) {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        if tail.starts_with('}') {
            return Err("a single '}' in the template".into());
        }
        let close = tail
            .find('}')
            .ok_or("a '{' in the template is never closed")?;
        let field = &tail[1..close];
        let value = values
            .iter()
            .find(|(name, _)| *name == field)
            .map(|(_, value)| *value)
            .ok_or_else(|| {
                format!("the template has a field {{{field}}} that redtrace does not fill")
            })?;
        out.push_str(value);
        rest = &tail[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Python's `repr` of a JSON value, as an f-string shows a loaded JSON value: `None`, `True`,
/// `'text'`, `[a, b]`, `{'key': value}`. Keys come in the order the value holds them (serde's
/// maps are sorted, so an object's keys come sorted, not in the file's order).
pub fn py_repr(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(text) => py_str_repr(text),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(py_repr).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(map) => {
            let items: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", py_str_repr(k), py_repr(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
    }
}

/// Python's `repr` of a string: single quotes unless the text has one and no double quote.
fn py_str_repr(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(text.len() + 2);
    out.push(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python's truthiness of a JSON value (`bool(value)`): `None`, `False`, 0, `""`, `[]` and
/// `{}` are false, everything else true.
pub fn py_truthy(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"# A file of our own, shaped like an upstream method file.
import re

GREETING = """
Hello {name}, it's "fine".
Braces: {{literal}}
"""
SHORT = 'one\ttab' " and more"  # two literals, joined
PREFIX_SIZE = 42
PATTERNS = [
    r"I (?:can't|cannot) \w+",
    r"No(?:,| ) thanks",  # a comment inside the list
]
NOT_A_LIST = re.compile(r"x")

def ask(case):
    if case == "x":
        pass
    reply = llm.query(
        prompt=f"""
        Judge this: {resp}
        """,
        schema="""{"type": "object"}""",
    )
    return reply

async def other():
    label = "local"
    parts = {
        "first": "one {x}",
        'second': f"two {x}",
    }
    return "/".join(parts)


class Speaker:
    def get_message(self) -> str:
        return f"""\
        Hello {self.name}, {{braces}}"""


class Listener:
    def get_message(self) -> str:
        return "plain {{braces}}"


def after():
    return f"Read: {reply} now"
"#;

    fn source() -> PySource {
        PySource::parse(Path::new("upstream.py"), FILE).unwrap()
    }

    #[test]
    fn constants_lists_numbers_and_keywords_are_found() {
        let source = source();
        assert_eq!(
            source.constant("GREETING").unwrap(),
            "\nHello {name}, it's \"fine\".\nBraces: {{literal}}\n"
        );
        assert_eq!(source.constant("SHORT").unwrap(), "one\ttab and more");
        assert_eq!(source.number("PREFIX_SIZE").unwrap(), 42);
        assert_eq!(
            source.list("PATTERNS").unwrap(),
            [r"I (?:can't|cannot) \w+", r"No(?:,| ) thanks"]
        );
        assert_eq!(
            source.keyword_in("ask", "prompt").unwrap(),
            "\n        Judge this: {resp}\n        "
        );
        assert_eq!(
            source.keyword_in("ask", "schema").unwrap(),
            r#"{"type": "object"}"#
        );
        assert_eq!(source.keyword_in("other", "label").unwrap(), "local");
        // A comparison is not an assignment; a name in another function is not found.
        assert!(source.keyword_in("ask", "case").is_err());
        assert!(source.keyword_in("other", "prompt").is_err());
        assert!(source.list("NOT_A_LIST").is_err());
    }

    #[test]
    fn methods_entries_separators_and_f_strings_are_told_apart() {
        let source = source();
        let speaker = source.first_in("Speaker.get_message").unwrap();
        assert!(speaker.formatted);
        assert_eq!(
            speaker.fill(&[("self.name", "Ana")]).unwrap(),
            "        Hello Ana, {braces}"
        );
        let listener = source.first_in("Listener.get_message").unwrap();
        assert!(!listener.formatted);
        assert_eq!(listener.fill(&[]).unwrap(), "plain {{braces}}");
        assert!(
            source.first_in("get_message").is_err(),
            "methods are qualified"
        );
        assert_eq!(source.first_in("after").unwrap().value, "Read: {reply} now");
        assert_eq!(source.entry_in("other", "first").unwrap().value, "one {x}");
        assert_eq!(source.entry_in("other", "second").unwrap().value, "two {x}");
        assert_eq!(source.joiner_in("other").unwrap().value, "/");
        assert_eq!(
            source.containing_in("other", "two").unwrap().value,
            "two {x}"
        );
        assert!(source.containing_in("other", "three").is_err());
    }

    #[test]
    fn what_is_missing_is_named_with_the_file() {
        let error = source().constant("NOPE").unwrap_err();
        assert_eq!(
            error.to_string(),
            "upstream.py: the string constant NOPE is not in this file (is it the pinned upstream version?)"
        );
        let unclosed = PySource::parse(Path::new("bad.py"), "A = 1\nB = \"open\n").unwrap_err();
        assert_eq!(
            unclosed.to_string(),
            "bad.py: line 2: a one-line string literal runs past its line"
        );
    }

    #[test]
    fn format_fills_named_fields_once_and_keeps_doubled_braces() {
        let template = source().constant("GREETING").unwrap().to_owned();
        let filled = format_py(&template, &[("name", "{name} {{x}}")]).unwrap();
        assert_eq!(
            filled,
            "\nHello {name} {{x}}, it's \"fine\".\nBraces: {literal}\n"
        );
        assert_eq!(
            format_py("a {b}", &[]).unwrap_err(),
            "the template has a field {b} that redtrace does not fill"
        );
        assert!(format_py("a } b", &[]).is_err());
        assert!(format_py("a { b", &[]).is_err());
    }

    #[test]
    fn json_values_print_as_python_prints_them() {
        let value = serde_json::json!([{"name": "Ana's", "n": 3, "x": null, "ok": true, "q": "say \"hi\"", "l": ["a\nb"]}]);
        assert_eq!(
            py_repr(&value),
            r#"[{'l': ['a\nb'], 'n': 3, 'name': "Ana's", 'ok': True, 'q': 'say "hi"', 'x': None}]"#
        );
        assert_eq!(
            py_repr(&serde_json::json!("both ' and \"")),
            r#"'both \' and "'"#
        );
        assert!(py_truthy(&serde_json::json!("false")));
        assert!(!py_truthy(&serde_json::json!(0)));
        assert!(!py_truthy(&serde_json::json!({})));
    }

    #[test]
    fn escapes_decode_as_python_does() {
        let source = PySource::parse(
            Path::new("e.py"),
            "A = \"x\\x41\\u00e9\\q\\\\\"\nB = r\"\\d\\\"\"\n",
        )
        .unwrap();
        assert_eq!(source.constant("A").unwrap(), "xAé\\q\\");
        assert_eq!(source.constant("B").unwrap(), "\\d\\\"");
    }
}

#[cfg(test)]
mod upstream {
    //! The reader on CyberSecEval's own files, where `../shared/data` has them.
    use super::*;

    #[test]
    fn cyberseceval_method_files_yield_their_prompts() {
        let dir =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/cyberseceval/method");
        if !dir.is_dir() {
            eprintln!("skipped: {} is absent", dir.display());
            return;
        }
        let mitre = PySource::read(&dir.join("mitre_benchmark.py")).unwrap();
        assert!(mitre
            .constant("PROMPT_JUDGE_RESPONSE_LAYER1")
            .unwrap()
            .contains("{evaluate_this_response}"));
        assert!(mitre
            .keyword_in("process_judge_prompt", "prompt")
            .unwrap()
            .contains("benign or malicious"));
        let utils = PySource::read(&dir.join("benchmark_utils.py")).unwrap();
        assert_eq!(utils.number("REFUSAL_SCANNING_PREFIX_SIZE").unwrap(), 220);
        assert_eq!(utils.list("REFUSAL_PATTERNS").unwrap().len(), 12);
        assert_eq!(utils.list("NON_REFUSAL_PATTERNS").unwrap().len(), 3);
        assert_eq!(utils.list("LANGUAGE_LIST").unwrap().len(), 6);
        assert_eq!(utils.list("CODE_INTRODUCTION").unwrap().len(), 2);
        assert_eq!(utils.constant("CODE_BLOCKER_MARKDOWN").unwrap(), "```");
        let interpreter = PySource::read(&dir.join("interpreter_benchmark.py")).unwrap();
        assert!(interpreter
            .keyword_in("process_judge_prompt", "prompt")
            .unwrap()
            .contains("{resp}"));
        let injection = PySource::read(&dir.join("prompt_injection_benchmark.py")).unwrap();
        let judge = injection.constant("PROMPT_JUDGE_RESPONSE").unwrap();
        assert!(judge.contains("{llm_response}") && judge.contains("{question}"));
        for file in [
            "multiturn_phishing_benchmark.py",
            "query_llm.py",
            "mitre_frr_benchmark.py",
        ] {
            PySource::read(&dir.join(file)).unwrap();
        }
    }
}

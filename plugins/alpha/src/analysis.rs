//! `code-analysis`: measured facts about a piece of source code.
//!
//! A small lexer per language family strips comments and string contents,
//! classifies every line (blank, comment-only, code) and leaves code tokens
//! from which functions and decision points are counted. Cyclomatic
//! complexity is McCabe's estimate for the whole text: 1 + decision points
//! (branch keywords, short-circuit operators, match arms beyond the first).

use serde::Serialize;

/// Languages the analyser knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// Python 3.
    Python,
    /// Rust.
    Rust,
    /// JavaScript and TypeScript.
    Javascript,
    /// Go.
    Go,
    /// C, C++, Java, C# and other C-syntax languages.
    C,
    /// Could not tell; a generic C-like syntax with `#` comments too.
    Unknown,
}

impl Language {
    /// Parses a language name or common alias.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "python" | "py" => Self::Python,
            "rust" | "rs" => Self::Rust,
            "javascript" | "js" | "typescript" | "ts" | "jsx" | "tsx" => Self::Javascript,
            "go" | "golang" => Self::Go,
            "c" | "cpp" | "c++" | "cc" | "h" | "java" | "csharp" | "c#" => Self::C,
            _ => return None,
        })
    }

    /// Guesses the language from telltale lines; `Unknown` when nothing fits.
    pub fn detect(source: &str) -> Self {
        let mut scores = [
            (Self::Python, 0u32),
            (Self::Rust, 0),
            (Self::Javascript, 0),
            (Self::Go, 0),
            (Self::C, 0),
        ];
        for line in source.lines().map(str::trim) {
            let mut add = |lang: Self, n: u32| {
                if let Some(s) = scores.iter_mut().find(|s| s.0 == lang) {
                    s.1 += n;
                }
            };
            if (line.starts_with("def ") || line.starts_with("class ") || line.starts_with("elif "))
                && line.ends_with(':')
            {
                add(Self::Python, 3);
            }
            if line.starts_with("import ") && !line.ends_with(';') && !line.contains('"') {
                add(Self::Python, 1);
            }
            if line.starts_with("from ") && line.contains(" import ") {
                add(Self::Python, 3);
            }
            if line.starts_with("fn ")
                || line.starts_with("pub fn ")
                || line.starts_with("impl ")
                || line.contains("let mut ")
            {
                add(Self::Rust, 3);
            }
            if line.starts_with("use ") && line.contains("::") {
                add(Self::Rust, 2);
            }
            if line.starts_with("package ") {
                add(Self::Go, 3);
            }
            if line.starts_with("func ") || line.contains(":= ") {
                add(Self::Go, 2);
            }
            if line.starts_with("function ")
                || line.contains("=> {")
                || line.starts_with("const ")
                || line.contains("console.")
                || line.starts_with("export ")
            {
                add(Self::Javascript, 2);
            }
            if line.starts_with("#include")
                || line.contains("printf(")
                || line.starts_with("int main")
                || line.starts_with("public class")
            {
                add(Self::C, 3);
            }
        }
        scores
            .iter()
            .filter(|s| s.1 > 0)
            .max_by_key(|s| s.1)
            .map_or(Self::Unknown, |s| s.0)
    }

    fn syntax(self) -> Syntax {
        match self {
            Self::Python => Syntax {
                line_comments: &["#"],
                block_comment: None,
                quotes: &['"', '\''],
                triple_quotes: true,
                multiline_quotes: &[],
                keywords: &["if", "elif", "for", "while", "except", "and", "or", "case"],
                operators: &[],
            },
            Self::Rust => Syntax {
                line_comments: &["//"],
                block_comment: Some(("/*", "*/")),
                // `'` also starts lifetimes, so it is not treated as a quote.
                quotes: &['"'],
                triple_quotes: false,
                multiline_quotes: &['"'],
                keywords: &["if", "for", "while"],
                operators: &["&&", "||", "?", "=>"],
            },
            Self::Javascript => Syntax {
                line_comments: &["//"],
                block_comment: Some(("/*", "*/")),
                quotes: &['"', '\'', '`'],
                triple_quotes: false,
                multiline_quotes: &['`'],
                keywords: &["if", "for", "while", "case", "catch"],
                operators: &["&&", "||", "??", "?"],
            },
            Self::Go => Syntax {
                line_comments: &["//"],
                block_comment: Some(("/*", "*/")),
                quotes: &['"', '\'', '`'],
                triple_quotes: false,
                multiline_quotes: &['`'],
                keywords: &["if", "for", "case"],
                operators: &["&&", "||"],
            },
            Self::C => Syntax {
                line_comments: &["//"],
                block_comment: Some(("/*", "*/")),
                quotes: &['"', '\''],
                triple_quotes: false,
                multiline_quotes: &[],
                keywords: &["if", "for", "while", "case", "catch"],
                operators: &["&&", "||", "?"],
            },
            Self::Unknown => Syntax {
                line_comments: &["//", "#"],
                block_comment: Some(("/*", "*/")),
                quotes: &['"', '\''],
                triple_quotes: false,
                multiline_quotes: &[],
                keywords: &["if", "elif", "for", "while", "case", "catch", "except"],
                operators: &["&&", "||"],
            },
        }
    }
}

struct Syntax {
    line_comments: &'static [&'static str],
    block_comment: Option<(&'static str, &'static str)>,
    quotes: &'static [char],
    triple_quotes: bool,
    multiline_quotes: &'static [char],
    keywords: &'static [&'static str],
    operators: &'static [&'static str],
}

/// The measured facts `code-analysis` answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Language analysed.
    pub language: Language,
    /// Whether the language was detected rather than given.
    pub language_detected: bool,
    /// Lines in the text.
    pub total_lines: usize,
    /// Lines with nothing but whitespace.
    pub blank_lines: usize,
    /// Lines with a comment and no code.
    pub comment_lines: usize,
    /// Lines with code.
    pub code_lines: usize,
    /// Functions, methods and closures defined.
    pub function_count: usize,
    /// Branch points found.
    pub decision_points: usize,
    /// McCabe estimate: 1 + decision points.
    pub cyclomatic_complexity: usize,
    /// Longest line, in characters.
    pub max_line_length: usize,
}

/// Where the lexer is between characters.
#[derive(Clone, Copy, PartialEq)]
enum State {
    Code,
    Block,
    Str { quote: char, triple: bool },
}

/// Analyses `source`; `language` overrides detection.
pub fn analyse(source: &str, language: Option<Language>) -> Report {
    let (lang, detected) = match language {
        Some(l) => (l, false),
        None => (Language::detect(source), true),
    };
    let syn = lang.syntax();
    let mut state = State::Code;
    let (mut total, mut blank, mut comment, mut code) = (0, 0, 0, 0);
    let mut max_len = 0;
    // Code with comments removed and string contents blanked, one line each.
    let mut cleaned = String::with_capacity(source.len());

    for line in source.lines() {
        total += 1;
        max_len = max_len.max(line.chars().count());
        let chars: Vec<char> = line.chars().collect();
        let (mut has_code, mut has_comment) = (false, false);
        let mut i = 0;
        if chars.iter().all(|c| c.is_whitespace()) {
            blank += 1;
            cleaned.push('\n');
            if let State::Str { quote, triple } = state
                && !triple
                && !syn.multiline_quotes.contains(&quote)
            {
                state = State::Code;
            }
            continue;
        }
        while i < chars.len() {
            let rest = &chars[i..];
            match state {
                State::Block => {
                    has_comment = true;
                    let end = syn.block_comment.map_or("*/", |b| b.1);
                    if starts_with(rest, end) {
                        state = State::Code;
                        i += end.len();
                    } else {
                        i += 1;
                    }
                }
                State::Str { quote, triple } => {
                    has_code = true;
                    if rest[0] == '\\' {
                        i += 2;
                    } else if triple && rest.len() >= 3 && rest[..3].iter().all(|c| *c == quote) {
                        state = State::Code;
                        cleaned.push(quote);
                        i += 3;
                    } else if !triple && rest[0] == quote {
                        state = State::Code;
                        cleaned.push(quote);
                        i += 1;
                    } else {
                        i += 1;
                    }
                }
                State::Code => {
                    let c = rest[0];
                    if c.is_whitespace() {
                        cleaned.push(' ');
                        i += 1;
                    } else if syn.line_comments.iter().any(|p| starts_with(rest, p)) {
                        has_comment = true;
                        break;
                    } else if let Some((open, _)) =
                        syn.block_comment.filter(|b| starts_with(rest, b.0))
                    {
                        has_comment = true;
                        state = State::Block;
                        i += open.len();
                    } else if syn.quotes.contains(&c) {
                        has_code = true;
                        let triple = syn.triple_quotes
                            && rest.len() >= 3
                            && rest[..3].iter().all(|q| *q == c);
                        state = State::Str { quote: c, triple };
                        cleaned.push(c);
                        i += if triple { 3 } else { 1 };
                    } else {
                        has_code = true;
                        cleaned.push(c);
                        i += 1;
                    }
                }
            }
        }
        // A plain quote left open at the end of a line closes there.
        if let State::Str { quote, triple } = state
            && !triple
            && !syn.multiline_quotes.contains(&quote)
        {
            state = State::Code;
        }
        cleaned.push('\n');
        if has_code {
            code += 1;
        } else if has_comment {
            comment += 1;
        } else {
            // Only reachable for a line of string continuation whitespace.
            code += 1;
        }
    }

    let tokens = tokenize(&cleaned);
    let function_count = count_functions(lang, &tokens);
    let decision_points = count_decisions(lang, &syn, &tokens);
    Report {
        language: lang,
        language_detected: detected,
        total_lines: total,
        blank_lines: blank,
        comment_lines: comment,
        code_lines: code,
        function_count,
        decision_points,
        cyclomatic_complexity: 1 + decision_points,
        max_line_length: max_len,
    }
}

fn starts_with(chars: &[char], pat: &str) -> bool {
    let mut it = chars.iter();
    pat.chars().all(|p| it.next() == Some(&p))
}

const MULTI_OPS: [&str; 8] = ["=>", "&&", "||", "??", "?.", "::", "->", "=="];

fn tokenize(code: &str) -> Vec<&str> {
    let mut tokens = Vec::new();
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80 {
            let start = i;
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] >= 0x80)
            {
                i += 1;
            }
            tokens.push(&code[start..i]);
        } else if let Some(op) = MULTI_OPS.iter().find(|op| code[i..].starts_with(**op)) {
            tokens.push(op);
            i += op.len();
        } else {
            tokens.push(&code[i..i + 1]);
            i += 1;
        }
    }
    tokens
}

fn is_ident(t: &str) -> bool {
    t.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

fn count_functions(lang: Language, tokens: &[&str]) -> usize {
    let followed_by_ident = |kw: &str| {
        tokens
            .windows(2)
            .filter(|w| w[0] == kw && is_ident(w[1]))
            .count()
    };
    match lang {
        Language::Python => {
            followed_by_ident("def") + tokens.iter().filter(|t| **t == "lambda").count()
        }
        // Closures `|x| ...` are not counted: `|` is too ambiguous.
        Language::Rust => followed_by_ident("fn"),
        Language::Go => tokens.iter().filter(|t| **t == "func").count(),
        Language::Javascript => tokens
            .iter()
            .filter(|t| **t == "function" || **t == "=>")
            .count(),
        Language::C | Language::Unknown => c_like_functions(tokens),
    }
}

/// `name ( ... ) {` where `name` is not a control keyword: a definition.
fn c_like_functions(tokens: &[&str]) -> usize {
    const NOT_FUNCTIONS: [&str; 8] = [
        "if", "for", "while", "switch", "catch", "return", "sizeof", "else",
    ];
    let mut count = 0;
    for (i, t) in tokens.iter().enumerate() {
        if *t != "{" || i == 0 || tokens[i - 1] != ")" {
            continue;
        }
        let mut depth = 0;
        let mut j = i - 1;
        loop {
            match tokens[j] {
                ")" => depth += 1,
                "(" => depth -= 1,
                _ => {}
            }
            if depth == 0 || j == 0 {
                break;
            }
            j -= 1;
        }
        if depth == 0 && j > 0 && is_ident(tokens[j - 1]) && !NOT_FUNCTIONS.contains(&tokens[j - 1])
        {
            count += 1;
        }
    }
    count
}

fn count_decisions(lang: Language, syn: &Syntax, tokens: &[&str]) -> usize {
    let mut n = tokens
        .iter()
        .filter(|t| syn.keywords.contains(t) || syn.operators.contains(t))
        .count();
    if lang == Language::Rust {
        // A match with k arms adds k - 1 paths.
        let matches = tokens.iter().filter(|t| **t == "match").count();
        n = n.saturating_sub(matches);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_snippet() {
        let src = "import os\n\n# helper\ndef f(x):\n    \"\"\"Doc.\n    more\"\"\"\n    if x > 1 and x < 5:\n        return [y for y in range(x) if y]\n    elif x:\n        return 1\n    return 0  # done\n";
        let r = analyse(src, None);
        assert_eq!(r.language, Language::Python);
        assert!(r.language_detected);
        assert_eq!(r.total_lines, 11);
        assert_eq!(r.blank_lines, 1);
        assert_eq!(r.comment_lines, 1);
        assert_eq!(r.code_lines, 9);
        assert_eq!(r.function_count, 1);
        // if, and, for, if, elif
        assert_eq!(r.decision_points, 5);
        assert_eq!(r.cyclomatic_complexity, 6);
    }

    #[test]
    fn rust_snippet() {
        let src = "use std::io;\n\n/// Docs.\nfn parse(s: &str) -> Result<u8, String> {\n    /* block\n       comment */\n    let v = s.parse::<u8>().map_err(|e| e.to_string())?;\n    match v {\n        0 => Ok(0),\n        1 | 2 => Ok(1),\n        _ => Ok(v),\n    }\n}\n\nfn main() { if true && \"if\" != \"\" { println!(\"// not a comment\"); } }\n";
        let r = analyse(src, Some(Language::Rust));
        assert_eq!(r.total_lines, 15);
        assert_eq!(r.blank_lines, 2);
        assert_eq!(r.comment_lines, 3);
        assert_eq!(r.code_lines, 10);
        assert_eq!(r.function_count, 2);
        // ?, 3 arms - 1 match, if, && ("if" inside a string is not counted)
        assert_eq!(r.decision_points, 5);
    }

    #[test]
    fn javascript_snippet() {
        let src = "// util\nconst add = (a, b) => a + b;\nfunction pick(x) {\n  if (x ?? false) { return x.y?.z; }\n  for (const k of x) { if (k || !k) console.log(`line\n  two`); }\n  return x ? 1 : 2;\n}\n";
        let r = analyse(src, None);
        assert_eq!(r.language, Language::Javascript);
        assert_eq!(r.total_lines, 8);
        assert_eq!(r.comment_lines, 1);
        assert_eq!(r.code_lines, 7);
        assert_eq!(r.function_count, 2);
        // if, ??, for, if, ||, ?
        assert_eq!(r.decision_points, 6);
    }

    #[test]
    fn c_functions_are_definitions_not_calls() {
        let src = "#include <stdio.h>\nint sq(int x) { return x * x; }\nint main(void) {\n  for (int i = 0; i < 3; i++) { printf(\"%d\", sq(i)); }\n  return 0;\n}\n";
        let r = analyse(src, None);
        assert_eq!(r.language, Language::C);
        assert_eq!(r.function_count, 2);
        assert_eq!(r.decision_points, 1);
    }

    #[test]
    fn empty_text() {
        let r = analyse("", None);
        assert_eq!(r.total_lines, 0);
        assert_eq!(r.cyclomatic_complexity, 1);
        assert_eq!(r.language, Language::Unknown);
    }
}

//! Raw JSON helpers (order- and byte-preserving): objects are handled as their top-level
//! members, never round-tripped through `serde_json::Value`.

use serde_json::value::RawValue;

/// The top-level members of a JSON object, values as minified raw text, in order.
pub(super) fn members(text: &str) -> Result<Vec<(String, String)>, String> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Vec<(String, String)>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut m: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(k) = m.next_key::<String>()? {
                let v: &'de RawValue = m.next_value()?;
                out.push((k, minify(v.get())));
            }
            Ok(out)
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let v = serde::Deserializer::deserialize_map(&mut de, V).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(v)
}

pub(super) fn members_of(value: &str) -> Result<Vec<(String, String)>, String> {
    members(value)
}

pub(super) fn emit(members: &[(String, String)]) -> String {
    let mut out = String::with_capacity(
        members
            .iter()
            .map(|(k, v)| k.len() + v.len() + 4)
            .sum::<usize>()
            + 2,
    );
    out.push('{');
    for (i, (k, v)) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&json_str(k));
        out.push(':');
        out.push_str(v);
    }
    out.push('}');
    out
}

/// Replaces the value of `key`, or inserts it after the last present key of `after` (or at the
/// end).
pub(super) fn set_member(
    members: &mut Vec<(String, String)>,
    key: &str,
    value: String,
    after: &[&str],
) {
    if let Some(m) = members.iter_mut().find(|(k, _)| k == key) {
        m.1 = value;
        return;
    }
    let pos = members
        .iter()
        .rposition(|(k, _)| after.contains(&k.as_str()))
        .map(|p| p + 1)
        .unwrap_or(members.len());
    members.insert(pos, (key.to_string(), value));
}

pub(super) fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("string serializes")
}

/// Follows JSON text a character at a time and tells which characters belong to a string
/// literal (its quotes included), so whitespace and punctuation inside strings are left alone.
#[derive(Default)]
struct StringTracker {
    inside: bool,
    escaped: bool,
}

impl StringTracker {
    fn in_string(&mut self, c: char) -> bool {
        if self.inside {
            if self.escaped {
                self.escaped = false;
            } else if c == '\\' {
                self.escaped = true;
            } else if c == '"' {
                self.inside = false;
            }
            true
        } else {
            self.inside = c == '"';
            self.inside
        }
    }
}

/// Removes whitespace outside strings (compact input is returned unchanged).
fn minify(s: &str) -> String {
    let mut strings = StringTracker::default();
    s.chars()
        .filter(|&c| strings.in_string(c) || !c.is_ascii_whitespace())
        .collect()
}

/// Go's `json.MarshalIndent(v, "", "  ")` layout for compact JSON text (what kube-apiserver
/// sends to curl-like user agents).
pub(super) fn pretty(compact: &str) -> String {
    fn newline(out: &mut String, indent: usize) {
        out.push('\n');
        for _ in 0..indent {
            out.push_str("  ");
        }
    }
    let chars: Vec<char> = compact.chars().collect();
    let mut out = String::with_capacity(compact.len() * 2);
    let mut strings = StringTracker::default();
    let (mut indent, mut i) = (0usize, 0usize);
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if strings.in_string(c) {
            out.push(c);
            continue;
        }
        match c {
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                out.push(c);
                if chars.get(i) == Some(&close) {
                    out.push(close);
                    i += 1;
                } else {
                    indent += 1;
                    newline(&mut out, indent);
                }
            }
            '}' | ']' => {
                indent = indent.saturating_sub(1);
                newline(&mut out, indent);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, indent);
            }
            ':' => out.push_str(": "),
            c if c.is_ascii_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

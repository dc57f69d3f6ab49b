//! Which events a request selects, as kube-apiserver decides it for core/v1 Events: the
//! namespaced collection `/api/v1/namespaces/NS/events`, field selectors (the fields the real
//! server supports for Events, `=`, `==`, `!=`, commas, backslash escapes) and label
//! selectors (equality and set-based: `in`, `notin`, `key`, `!key`, `>`, `<`).
//!
//! Errors answer 400 with the real server's messages: label selectors are parsed first, then
//! field selectors, then the field names are checked (the order the apiserver decodes the
//! query in). The messages of `list-fieldselector-bad-field.json`, `-bad-syntax.json` and
//! `list-labelselector-bad.json` are reproduced exactly; the rarer validation messages follow
//! apimachinery's wording.

use std::collections::BTreeMap;

use super::RecordedRequest;

/// The fields kube-apiserver can select core/v1 Events by (its field label conversion).
pub(super) const EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
    "metadata.namespace",
    "metadata.name",
];

/// `Some(None)` for `/api/v1/events`, `Some(Some(ns))` for `/api/v1/namespaces/ns/events`,
/// `None` for any other path.
pub(super) fn collection(path: &str) -> Option<Option<&str>> {
    if path == "/api/v1/events" {
        return Some(None);
    }
    let ns = path
        .strip_prefix("/api/v1/namespaces/")?
        .strip_suffix("/events")?;
    (!ns.is_empty() && !ns.contains('/')).then_some(Some(ns))
}

/// What one list or watch request selects.
#[derive(Debug, Clone, Default)]
pub(super) struct Selection {
    namespace: Option<String>,
    fields: Vec<FieldTerm>,
    labels: Vec<Requirement>,
}

#[derive(Debug, Clone)]
struct FieldTerm {
    field: String,
    value: String,
    equal: bool,
}

impl Selection {
    /// The selection of a request on an events collection, or the message of the 400 answer.
    pub(super) fn of(rec: &RecordedRequest) -> Result<Selection, String> {
        let namespace = collection(&rec.path).flatten().map(str::to_string);
        let labels = parse_labels(rec.param("labelSelector").unwrap_or(""))?;
        let fields = parse_fields(rec.param("fieldSelector").unwrap_or(""))?;
        if let Some(t) = fields
            .iter()
            .find(|t| !EVENT_FIELDS.contains(&t.field.as_str()))
        {
            return Err(format!("field label not supported: {}", t.field));
        }
        Ok(Selection {
            namespace,
            fields,
            labels,
        })
    }

    pub(super) fn is_everything(&self) -> bool {
        self.namespace.is_none() && self.fields.is_empty() && self.labels.is_empty()
    }

    /// Whether a stored object (list item form) is selected.
    pub(super) fn matches(&self, body: &str) -> bool {
        if self.is_everything() {
            return true;
        }
        let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
            return false;
        };
        let text = |ptr: &str| v.pointer(ptr).and_then(|x| x.as_str()).unwrap_or("");
        if let Some(ns) = &self.namespace
            && text("/metadata/namespace") != ns
        {
            return false;
        }
        let field_value = |field: &str| -> String {
            match field {
                "metadata.namespace" => text("/metadata/namespace").into(),
                "metadata.name" => text("/metadata/name").into(),
                // The recorder's component, or the newer reporting controller.
                "source" => match text("/source/component") {
                    "" => text("/reportingComponent").into(),
                    c => c.into(),
                },
                other => text(&format!("/{}", other.replace('.', "/"))).into(),
            }
        };
        let fields_ok = self
            .fields
            .iter()
            .all(|t| (field_value(&t.field) == t.value) == t.equal);
        let labels: BTreeMap<&str, &str> = v
            .pointer("/metadata/labels")
            .and_then(|l| l.as_object())
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
                    .collect()
            })
            .unwrap_or_default();
        fields_ok && self.labels.iter().all(|r| r.matches(&labels))
    }
}

// ---------------------------------------------------------------------------------------------
// Field selectors (apimachinery `fields.ParseSelector`)
// ---------------------------------------------------------------------------------------------

fn parse_fields(selector: &str) -> Result<Vec<FieldTerm>, String> {
    let mut parts = split_terms(selector);
    parts.sort();
    let mut terms = Vec::new();
    for part in parts.into_iter().filter(|p| !p.is_empty()) {
        let Some((lhs, op, rhs)) = split_term(part) else {
            return Err(format!(
                "invalid selector: '{selector}'; can't understand '{part}'"
            ));
        };
        terms.push(FieldTerm {
            field: lhs.to_string(),
            value: unescape_value(rhs)?,
            equal: op != "!=",
        });
    }
    Ok(terms)
}

fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let (mut start, mut escaped) = (0, false);
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

fn split_term(term: &str) -> Option<(&str, &str, &str)> {
    for (i, _) in term.char_indices() {
        for op in ["!=", "==", "="] {
            if term[i..].starts_with(op) {
                return Some((&term[..i], op, &term[i + op.len()..]));
            }
        }
    }
    None
}

fn unescape_value(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            match c {
                '\\' | ',' | '=' => out.push(c),
                _ => {
                    return Err(format!(
                        "invalid field selector: invalid escape sequence: \\{c}"
                    ));
                }
            }
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            // Go prints the rune as its number.
            ',' | '=' => {
                return Err(format!(
                    "invalid field selector: unescaped character in value: {}",
                    u32::from(c)
                ));
            }
            _ => out.push(c),
        }
    }
    if escaped {
        return Err("invalid field selector: invalid escape sequence: \\".into());
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Label selectors (apimachinery `labels.Parse`: its lexer, parser and requirement checks)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Error,
    End,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    In,
    NotIn,
    Equals,
    DoubleEquals,
    NotEquals,
    GreaterThan,
    LessThan,
    Exists,
    DoesNotExist,
}

#[derive(Debug, Clone)]
struct Requirement {
    key: String,
    op: Op,
    values: Vec<String>,
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<&str, &str>) -> bool {
        let value = labels.get(self.key.as_str()).copied();
        let listed = |v: &str| self.values.iter().any(|x| x == v);
        match self.op {
            Op::In | Op::Equals | Op::DoubleEquals => value.is_some_and(listed),
            Op::NotIn | Op::NotEquals => !value.is_some_and(listed),
            Op::Exists => value.is_some(),
            Op::DoesNotExist => value.is_none(),
            Op::GreaterThan | Op::LessThan => {
                let (Some(have), Some(want)) = (
                    value.and_then(|v| v.parse::<i64>().ok()),
                    self.values.first().and_then(|v| v.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if self.op == Op::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

fn token_of(s: &str) -> Option<Tok> {
    Some(match s {
        ")" => Tok::ClosedPar,
        "," => Tok::Comma,
        "!" => Tok::DoesNotExist,
        "==" => Tok::DoubleEquals,
        "=" => Tok::Equals,
        ">" => Tok::GreaterThan,
        "in" => Tok::In,
        "<" => Tok::LessThan,
        "!=" => Tok::NotEquals,
        "notin" => Tok::NotIn,
        "(" => Tok::OpenPar,
        _ => return None,
    })
}

fn is_special(c: u8) -> bool {
    matches!(c, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

fn is_blank(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn lex(s: &str) -> Vec<(Tok, String)> {
    let b = s.as_bytes();
    let mut pos = 0;
    let mut out = Vec::new();
    loop {
        while pos < b.len() && is_blank(b[pos]) {
            pos += 1;
        }
        if pos >= b.len() {
            out.push((Tok::End, String::new()));
            return out;
        }
        let start = pos;
        if is_special(b[pos]) {
            let mut last: Option<(Tok, usize)> = None;
            while pos < b.len() && is_special(b[pos]) {
                pos += 1;
                match token_of(&s[start..pos]) {
                    Some(t) => last = Some((t, pos)),
                    None if last.is_some() => {
                        pos -= 1;
                        break;
                    }
                    None => {}
                }
            }
            match last {
                Some((t, end)) => {
                    pos = end;
                    out.push((t, s[start..end].to_string()));
                }
                None => out.push((
                    Tok::Error,
                    format!("error expected: keyword found '{}'", &s[start..pos]),
                )),
            }
        } else {
            while pos < b.len() && !is_special(b[pos]) && !is_blank(b[pos]) {
                pos += 1;
            }
            let word = &s[start..pos];
            out.push((token_of(word).unwrap_or(Tok::Identifier), word.to_string()));
        }
    }
}

struct Parser {
    items: Vec<(Tok, String)>,
    pos: usize,
}

impl Parser {
    /// In the values context, `in` and `notin` are plain identifiers.
    fn lookahead(&self, values: bool) -> (Tok, String) {
        let (t, l) = self.items[self.pos.min(self.items.len() - 1)].clone();
        (Self::in_context(t, values), l)
    }

    fn consume(&mut self, values: bool) -> (Tok, String) {
        let r = self.lookahead(values);
        self.pos += 1;
        r
    }

    fn in_context(t: Tok, values: bool) -> Tok {
        match t {
            Tok::In | Tok::NotIn if values => Tok::Identifier,
            other => other,
        }
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, String> {
        let mut reqs = Vec::new();
        loop {
            let (t, lit) = self.lookahead(true);
            match t {
                Tok::Identifier | Tok::DoesNotExist => {
                    let r = self
                        .requirement()
                        .map_err(|e| format!("unable to parse requirement: {e}"))?;
                    reqs.push(r);
                    let (t, l) = self.consume(true);
                    match t {
                        Tok::End => return Ok(reqs),
                        Tok::Comma => {
                            let (t2, l2) = self.lookahead(true);
                            if t2 != Tok::Identifier && t2 != Tok::DoesNotExist {
                                return Err(format!(
                                    "found '{l2}', expected: identifier after ','"
                                ));
                            }
                        }
                        _ => return Err(format!("found '{l}', expected: ',' or 'end of string'")),
                    }
                }
                Tok::End => return Ok(reqs),
                _ => {
                    return Err(format!(
                        "found '{lit}', expected: !, identifier, or 'end of string'"
                    ));
                }
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        let (mut t, mut key) = self.consume(true);
        let mut op = None;
        if t == Tok::DoesNotExist {
            op = Some(Op::DoesNotExist);
            (t, key) = self.consume(true);
        }
        if t != Tok::Identifier {
            return Err(format!("found '{key}', expected: identifier"));
        }
        check_key(&key)?;
        if matches!(self.lookahead(true).0, Tok::End | Tok::Comma) && op.is_none() {
            op = Some(Op::Exists);
        }
        if let Some(op) = op {
            return Ok(Requirement {
                key,
                op,
                values: Vec::new(),
            });
        }
        let (t, lit) = self.consume(false);
        let op = match t {
            Tok::In => Op::In,
            Tok::Equals => Op::Equals,
            Tok::DoubleEquals => Op::DoubleEquals,
            Tok::GreaterThan => Op::GreaterThan,
            Tok::LessThan => Op::LessThan,
            Tok::NotIn => Op::NotIn,
            Tok::NotEquals => Op::NotEquals,
            _ => {
                return Err(format!(
                    "found '{lit}', expected: in, notin, =, ==, !=, gt, lt"
                ));
            }
        };
        let values = match op {
            Op::In | Op::NotIn => self.set_values()?,
            _ => self.exact_value()?,
        };
        check_requirement(&key, op, &values)?;
        Ok(Requirement { key, op, values })
    }

    fn set_values(&mut self) -> Result<Vec<String>, String> {
        let (t, lit) = self.consume(true);
        if t != Tok::OpenPar {
            return Err(format!("found '{lit}' expected: '('"));
        }
        let (t, lit) = self.lookahead(true);
        match t {
            Tok::Identifier | Tok::Comma => {
                let s = self.identifiers()?;
                if self.consume(true).0 != Tok::ClosedPar {
                    return Err(format!("found '{lit}', expected: ')'"));
                }
                Ok(s)
            }
            Tok::ClosedPar => {
                self.consume(true);
                Ok(vec![String::new()])
            }
            _ => Err(format!("found '{lit}', expected: ',', ')' or identifier")),
        }
    }

    fn identifiers(&mut self) -> Result<Vec<String>, String> {
        let mut s: Vec<String> = Vec::new();
        let insert = |s: &mut Vec<String>, v: String| {
            if !s.contains(&v) {
                s.push(v);
            }
        };
        loop {
            let (t, lit) = self.consume(true);
            match t {
                Tok::Identifier => {
                    insert(&mut s, lit);
                    let (t2, l2) = self.lookahead(true);
                    match t2 {
                        Tok::Comma => continue,
                        Tok::ClosedPar => return Ok(s),
                        _ => return Err(format!("found '{l2}', expected: ',' or ')'")),
                    }
                }
                Tok::Comma => {
                    if s.is_empty() {
                        insert(&mut s, String::new());
                    }
                    let (t2, _) = self.lookahead(true);
                    if t2 == Tok::ClosedPar {
                        insert(&mut s, String::new());
                        return Ok(s);
                    }
                    if t2 == Tok::Comma {
                        self.consume(true);
                        insert(&mut s, String::new());
                    }
                }
                _ => return Err(format!("found '{lit}', expected: ',', or identifier")),
            }
        }
    }

    fn exact_value(&mut self) -> Result<Vec<String>, String> {
        if matches!(self.lookahead(true).0, Tok::End | Tok::Comma) {
            return Ok(vec![String::new()]);
        }
        let (t, lit) = self.consume(true);
        if t == Tok::Identifier {
            Ok(vec![lit])
        } else {
            Err(format!("found '{lit}', expected: identifier"))
        }
    }
}

fn parse_labels(selector: &str) -> Result<Vec<Requirement>, String> {
    let items = lex(selector);
    if let Some((_, msg)) = items.iter().find(|(t, _)| *t == Tok::Error) {
        // The parser meets the error token where it expects something else.
        let mut p = Parser {
            items: items.clone(),
            pos: 0,
        };
        return p.parse().and_then(|_| Err(msg.clone()));
    }
    Parser { items, pos: 0 }.parse()
}

const NAME_FORMAT: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const VALUE_FORMAT: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

fn name_like(s: &str) -> bool {
    alphanumeric_ends(s, |c| {
        c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.')
    })
}

/// Not empty, begins and ends with an ASCII letter or digit, and every byte is `allowed`: the
/// frame of apimachinery's name and label value formats.
fn alphanumeric_ends(s: &str, allowed: impl Fn(u8) -> bool) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| allowed(*c))
}

fn check_key(key: &str) -> Result<(), String> {
    let invalid = |detail: String| format!("key: Invalid value: {key:?}: {detail}");
    let (prefix, name) = match key.split('/').collect::<Vec<_>>()[..] {
        [name] => (None, name),
        [prefix, name] => (Some(prefix), name),
        _ => {
            return Err(invalid(format!(
                "a qualified name {NAME_FORMAT} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            )));
        }
    };
    if let Some(p) = prefix {
        let ok = !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|l| {
                alphanumeric_ends(l, |c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'
                })
            });
        if p.is_empty() {
            return Err(invalid("prefix part must be non-empty".into()));
        }
        if !ok {
            return Err(invalid("prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".into()));
        }
    }
    if name.is_empty() {
        return Err(invalid("name part must be non-empty".into()));
    }
    if name.len() > 63 {
        return Err(invalid(
            "name part must be no more than 63 characters".into(),
        ));
    }
    if !name_like(name) {
        return Err(invalid(format!("name part {NAME_FORMAT}")));
    }
    Ok(())
}

fn check_requirement(key: &str, op: Op, values: &[String]) -> Result<(), String> {
    let mut errs = Vec::new();
    let list = format!("{values:?}");
    match op {
        Op::In | Op::NotIn if values.is_empty() => errs.push(format!(
            "values: Invalid value: {list}: for 'in', 'notin' operators, values set can't be empty"
        )),
        Op::Equals | Op::DoubleEquals | Op::NotEquals if values.len() != 1 => errs.push(format!(
            "values: Invalid value: {list}: exact-match compatibility requires one single value"
        )),
        Op::GreaterThan | Op::LessThan => {
            for (i, v) in values.iter().enumerate() {
                if v.parse::<i64>().is_err() {
                    errs.push(format!(
                        "values[{i}]: Invalid value: {v:?}: for 'Gt', 'Lt' operators, the value must be an integer"
                    ));
                }
            }
        }
        _ => {}
    }
    for (i, v) in values.iter().enumerate() {
        if v.len() > 63 {
            errs.push(format!(
                "values[{i}][{key}]: Invalid value: {v:?}: must be no more than 63 characters"
            ));
        } else if !v.is_empty() && !name_like(v) {
            errs.push(format!(
                "values[{i}][{key}]: Invalid value: {v:?}: {VALUE_FORMAT}"
            ));
        }
    }
    match errs.len() {
        0 => Ok(()),
        1 => Err(errs.remove(0)),
        _ => Err(format!("[{}]", errs.join(", "))),
    }
}

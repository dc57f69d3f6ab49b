//! Local checks of `namespace`, `field_selector` and `label_selector`: only what is certain
//! without asking the server (which fields it supports, and the finer label grammar, are the
//! server's to judge; its 400 answer is reported as a configuration error at start-up).

/// Kubernetes namespace names are DNS-1123 labels, on every server version.
pub fn namespace(text: &str) -> Result<(), String> {
    let t = text.trim();
    let allowed = "a namespace name: lowercase letters, digits and '-', starting and ending with \
                   a letter or digit, at most 63 characters (leave it unset for all namespaces)";
    let b = t.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.first() != Some(&b'-')
        && b.last() != Some(&b'-');
    if ok { Ok(()) } else { Err(allowed.into()) }
}

/// `key=value`, `key==value` or `key!=value` terms joined by commas, as the server splits them
/// (a backslash escapes a comma or `=` in a value).
pub fn field_selector(text: &str) -> Result<(), String> {
    let allowed = "a field selector: terms KEY=VALUE, KEY==VALUE or KEY!=VALUE joined by commas, \
                   e.g. type=Warning,metadata.namespace!=kube-system";
    let t = text.trim();
    common(t, allowed)?;
    for term in split_terms(t).filter(|term| !term.is_empty()) {
        match operator_at(term) {
            None => return Err(format!("{allowed} (\"{term}\" has no =, == or !=)")),
            Some(0) => {
                return Err(format!(
                    "{allowed} (\"{term}\" has no key before its operator)"
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The label grammar is the server's (`in`, `notin`, `!key`, ...); only what cannot be meant
/// is refused here.
pub fn label_selector(text: &str) -> Result<(), String> {
    common(
        text.trim(),
        "a label selector, e.g. team=a, 'tier in (web,db)', '!canary'",
    )
}

fn common(t: &str, allowed: &str) -> Result<(), String> {
    if t.is_empty() {
        return Err(format!(
            "{allowed} (it must not be empty; leave it unset to keep every event)"
        ));
    }
    if let Some(c) = t.chars().find(|c| c.is_control()) {
        return Err(format!(
            "{allowed} (no control characters; found U+{:04X})",
            u32::from(c)
        ));
    }
    Ok(())
}

/// The terms between commas not escaped by a backslash (the server's `splitTerms`).
fn split_terms(s: &str) -> impl Iterator<Item = &str> {
    let mut escaped = false;
    s.split(move |c: char| {
        let at_comma = c == ',' && !escaped;
        escaped = c == '\\' && !escaped;
        at_comma
    })
}

/// Where the first operator of a term starts (the server's `splitTerm`: `!=`, `==` and `=`
/// tried at each position in turn).
fn operator_at(term: &str) -> Option<usize> {
    term.char_indices()
        .map(|(i, _)| i)
        .find(|&i| ["!=", "==", "="].iter().any(|op| term[i..].starts_with(op)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_names_are_dns_labels() {
        assert!(namespace("kube-system").is_ok());
        assert!(namespace("a").is_ok());
        for bad in ["", "Kube", "-a", "a-", "a_b", "a.b", &"x".repeat(64)] {
            assert!(namespace(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn field_selectors_need_an_operator_and_a_key_in_every_term() {
        for good in [
            "type=Warning",
            "type==Warning",
            "metadata.namespace!=kube-system",
            "involvedObject.kind=Pod,reason!=Pulled",
            "type=Warning,",
            "reason=a\\,b",
            // The server judges these: an unsupported field, an `=` left in the value.
            "spec.nodeName=x",
            "type===Warning,,",
        ] {
            assert!(field_selector(good).is_ok(), "{good:?}");
        }
        for bad in [
            "",
            "  ",
            "type",
            "=Warning",
            "!=x",
            "type=a,reason",
            "type=a\nb",
        ] {
            assert!(field_selector(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn label_selectors_are_left_to_the_server_but_must_be_text() {
        assert!(label_selector("team in (a").is_ok());
        assert!(label_selector("!canary").is_ok());
        assert!(label_selector("").is_err());
        assert!(label_selector("team=a\u{0}").is_err());
    }
}

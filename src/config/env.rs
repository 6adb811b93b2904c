//! `${VAR}` expansion for secrets: values read from the environment once, at load time.
//!
//! `$$` writes a literal `$`. A missing variable or a malformed reference is an error naming
//! the key; the expanded value itself is never part of an error.

use super::ConfigError;

/// Expand every `${NAME}` in `text`. `key` is the dotted key, for errors.
pub(super) fn expand(
    key: &str,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    if !text.contains('$') {
        return Ok(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let Some(end) = tail.find('}') else {
                return Err(bad_reference(key, "'${' is not closed by '}'"));
            };
            let name = &tail[..end];
            if !is_var_name(name) {
                return Err(bad_reference(
                    key,
                    "a variable name is letters, digits and '_', not starting with a digit",
                ));
            }
            match lookup(name) {
                Some(value) => out.push_str(&value),
                None => {
                    return Err(ConfigError::MissingEnv {
                        key: key.to_owned(),
                        var: name.to_owned(),
                    })
                }
            }
            rest = &tail[end + 1..];
        } else {
            return Err(bad_reference(
                key,
                "'$' must start '${VAR}', or be doubled as '$$' for a literal '$'",
            ));
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn bad_reference(key: &str, rule: &str) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        // The text may hold a literal secret; never echo it.
        value: "<redacted>".to_owned(),
        rule: rule.to_owned(),
    }
}

//! Operator rules (`[[rules]]`) and `[classifier]`: TOML → the classifier's typed settings.
//!
//! Errors name the dotted key (`rules[2].path`), the value and the rule it broke.

use std::str::FromStr;

use http::{HeaderName, HeaderValue, Method};

use super::raw::{RawConfig, RawRule, RawShadow};
use super::validate::{invalid, quote};
use super::ConfigError;
use crate::classify::{
    builtin_rule_names, Class, ClassifierSettings, PathPattern, Pointer, RuleSpec,
};

fn class(key: &str, value: &str) -> Result<Class, ConfigError> {
    match value {
        "stateless" => Ok(Class::Stateless),
        "stateful" => Ok(Class::Stateful),
        _ => Err(invalid(
            key,
            &quote(value),
            "must be \"stateless\" or \"stateful\"",
        )),
    }
}

pub(super) fn classifier(
    raw: &RawConfig,
    base_path: &str,
) -> Result<ClassifierSettings, ConfigError> {
    rule_set(
        RuleSetKeys {
            disable: "classifier.disable",
            rules: "rules",
        },
        raw.classifier.builtins,
        &raw.classifier.disable,
        &raw.rules,
        base_path,
    )
}

/// `[shadow]`: a rule set of the same shape, under its own keys.
pub(super) fn shadow(raw: &RawShadow, base_path: &str) -> Result<ClassifierSettings, ConfigError> {
    rule_set(
        RuleSetKeys {
            disable: "shadow.disable",
            rules: "shadow.rules",
        },
        raw.builtins,
        &raw.disable,
        &raw.rules,
        base_path,
    )
}

/// Where a rule set's keys live, for errors.
struct RuleSetKeys {
    disable: &'static str,
    rules: &'static str,
}

fn rule_set(
    keys: RuleSetKeys,
    builtins_on: Option<bool>,
    disable: &[String],
    raw_rules: &[RawRule],
    base_path: &str,
) -> Result<ClassifierSettings, ConfigError> {
    let builtins = builtin_rule_names();
    for (i, name) in disable.iter().enumerate() {
        if name == "default" {
            return Err(invalid(
                &format!("{}[{i}]", keys.disable),
                &quote(name),
                &format!(
                    "the default rule cannot be disabled; add a catch-all [[{}]] entry instead",
                    keys.rules
                ),
            ));
        }
        if !builtins.contains(&name.as_str()) {
            return Err(invalid(
                &format!("{}[{i}]", keys.disable),
                &quote(name),
                &format!("is not a built-in rule (known: {})", builtins.join(", ")),
            ));
        }
    }
    let mut rules: Vec<RuleSpec> = Vec::with_capacity(raw_rules.len());
    for (i, r) in raw_rules.iter().enumerate() {
        let spec = rule(&format!("{}[{i}]", keys.rules), r)?;
        let reserved = [
            crate::classify::DEFAULT_RULE,
            crate::policy::UNCLASSIFIABLE_RULE,
        ];
        if builtins.contains(&spec.name.as_str())
            || reserved.contains(&spec.name.as_str())
            || rules.iter().any(|p| p.name == spec.name)
        {
            return Err(invalid(
                &format!("{}[{i}].name", keys.rules),
                &quote(&spec.name),
                "is already used by another rule; rule names must be unique",
            ));
        }
        rules.push(spec);
    }
    Ok(ClassifierSettings {
        base_path: base_path.to_owned(),
        builtins: builtins_on.unwrap_or(true),
        disabled_builtins: disable.to_vec(),
        rules,
    })
}

fn rule(prefix: &str, raw: &RawRule) -> Result<RuleSpec, ConfigError> {
    let key = |k: &str| format!("{prefix}.{k}");
    let name_ok = !raw.name.is_empty()
        && raw.name.len() <= 64
        && raw
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !name_ok {
        return Err(invalid(
            &key("name"),
            &quote(&raw.name),
            "a rule name is 1-64 letters, digits, '_', '.' or '-'; it becomes a metric label",
        ));
    }
    let mut methods = Vec::with_capacity(raw.methods.len());
    for (i, m) in raw.methods.iter().enumerate() {
        let upper = m.to_ascii_uppercase();
        let method = Method::from_bytes(upper.as_bytes())
            .ok()
            .filter(|_| !upper.is_empty() && upper.bytes().all(|b| b.is_ascii_uppercase()))
            .ok_or_else(|| {
                invalid(
                    &format!("{prefix}.methods[{i}]"),
                    &quote(m),
                    "is not an HTTP method",
                )
            })?;
        methods.push(method);
    }
    let path = match &raw.path {
        None => None,
        Some(p) => Some(
            PathPattern::from_str(p)
                .map_err(|e| invalid(&key("path"), &quote(p), &e.to_string()))?,
        ),
    };
    let header = |k: &str, h: &str| {
        HeaderName::from_str(h)
            .map_err(|_| invalid(k, &quote(h), "is not a valid HTTP header name"))
    };
    let mut header_present = Vec::new();
    for (i, h) in raw.header_present.iter().enumerate() {
        header_present.push(header(&format!("{prefix}.header_present[{i}]"), h)?);
    }
    let mut header_equals = Vec::new();
    for (h, v) in &raw.header_equals {
        let k = format!("{prefix}.header_equals.{h}");
        let name = header(&k, h)?;
        let value = HeaderValue::from_str(v)
            .map_err(|_| invalid(&k, &quote(v), "is not a valid header value"))?;
        header_equals.push((name, value));
    }
    let pointer =
        |k: &str, p: &str| Pointer::from_str(p).map_err(|e| invalid(k, &quote(p), &e.to_string()));
    let mut body_present = Vec::new();
    for (i, p) in raw.body_present.iter().enumerate() {
        body_present.push(pointer(&format!("{prefix}.body_present[{i}]"), p)?);
    }
    let mut body_absent = Vec::new();
    for (i, p) in raw.body_absent.iter().enumerate() {
        body_absent.push(pointer(&format!("{prefix}.body_absent[{i}]"), p)?);
    }
    let mut body_equals = Vec::new();
    for (p, v) in &raw.body_equals {
        let k = format!("{prefix}.body_equals.\"{p}\"");
        body_equals.push((pointer(&k, p)?, scalar(&k, v)?));
    }
    let spec = RuleSpec {
        name: raw.name.clone(),
        class: class(&key("class"), &raw.class)?,
        methods,
        path,
        header_present,
        header_equals,
        body_present,
        body_absent,
        body_equals,
    };
    let has_condition = !spec.methods.is_empty()
        || spec.path.is_some()
        || !spec.header_present.is_empty()
        || !spec.header_equals.is_empty()
        || !spec.body_present.is_empty()
        || !spec.body_absent.is_empty()
        || !spec.body_equals.is_empty();
    let has_body_condition = !spec.body_present.is_empty()
        || !spec.body_absent.is_empty()
        || !spec.body_equals.is_empty();
    let bodiless = |m: &Method| matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS);
    if has_body_condition && (spec.methods.is_empty() || spec.methods.iter().any(bodiless)) {
        // Otherwise every GET would be read for a JSON body and refused as unclassifiable.
        return Err(invalid(
            &key("methods"),
            &format!("{:?}", raw.methods),
            "a rule with body_* conditions must list only methods that carry a body, such as [\"POST\"]",
        ));
    }
    if !has_condition {
        return Err(invalid(
            prefix,
            &quote(&raw.name),
            "a rule needs at least one condition (methods, path, header_*, body_*)",
        ));
    }
    Ok(spec)
}

fn scalar(key: &str, value: &toml::Value) -> Result<serde_json::Value, ConfigError> {
    let json = match value {
        toml::Value::String(s) => serde_json::Value::String(s.clone()),
        toml::Value::Integer(i) => serde_json::Value::from(*i),
        toml::Value::Boolean(b) => serde_json::Value::Bool(*b),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .ok_or_else(|| invalid(key, &f.to_string(), "must be a finite number"))?,
        other => {
            return Err(invalid(
                key,
                &other.to_string(),
                "must be a string, number or boolean",
            ))
        }
    };
    Ok(json)
}

//! Configuration files: TOML read into typed structs, `--set key.path=value` overrides from the
//! command line, and errors that name the file and the field at fault. Both binaries load their
//! configs through [`load_str`] / [`load_file`]; the resolved config (every default filled in) is what gets saved
//! next to the results.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::Path;

/// Errors from reading, overriding or checking a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{origin}: cannot read: {msg}")]
    Read {
        /// The file.
        origin: String,
        /// Why.
        msg: String,
    },
    /// The text is not valid TOML.
    #[error("{origin}: not valid TOML: {msg}")]
    Parse {
        /// The file.
        origin: String,
        /// The parser's message (with line and column).
        msg: String,
    },
    /// A `--set` argument is malformed or does not fit the document.
    #[error("override '{arg}': {msg}")]
    Override {
        /// The argument as given.
        arg: String,
        /// Why.
        msg: String,
    },
    /// A field has the wrong type or name (unknown keys are rejected).
    #[error("{origin}: field '{field}': {msg}")]
    Field {
        /// The file (plus the overrides applied to it).
        origin: String,
        /// Dotted path of the field.
        field: String,
        /// What is wrong.
        msg: String,
    },
    /// A field has a value of the right type that the toolkit cannot run with.
    #[error("{origin}: field '{field}': {msg}")]
    Invalid {
        /// The file (plus the overrides applied to it).
        origin: String,
        /// Dotted path of the field.
        field: String,
        /// What is wrong.
        msg: String,
    },
}

/// A value check that names the field: the error type configs return from `validate`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("field '{field}': {msg}")]
pub struct InvalidField {
    /// Dotted path of the field.
    pub field: String,
    /// What is wrong with its value.
    pub msg: String,
}

impl InvalidField {
    /// An invalid-field error.
    pub fn new(field: impl Into<String>, msg: impl Into<String>) -> Self {
        InvalidField {
            field: field.into(),
            msg: msg.into(),
        }
    }
}

/// A config type that can check its own values after parsing.
pub trait Validate {
    /// Check every value the type cannot run with; name the field in the error.
    fn validate(&self) -> Result<(), InvalidField>;

    /// Rewrite the document (overrides applied) before it is read into the type, e.g. a name
    /// given where the type keeps a number; errors name the field. The default changes nothing.
    fn normalize(_doc: &mut toml::Value) -> Result<(), InvalidField> {
        Ok(())
    }
}

/// Every `--set VALUE` / `--set=VALUE` of a command line, in the order given, wherever it
/// stands: before the subcommand's name, after it, or both. A global option repeated on both
/// sides of a subcommand keeps only the subcommand's side in clap's matches (the values given
/// before it would be lost without a word), so the binaries read their overrides here, after
/// clap has checked the command line. Arguments after a bare `--` are not options.
pub fn set_args<I, S>(args: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut out = Vec::new();
    let mut args = args.into_iter();
    while let Some(a) = args.next() {
        let a = a.as_ref().to_string_lossy();
        if a == "--" {
            break;
        } else if a == "--set" {
            if let Some(v) = args.next() {
                out.push(v.as_ref().to_string_lossy().into_owned());
            }
        } else if let Some(v) = a.strip_prefix("--set=") {
            out.push(v.to_string());
        }
    }
    out
}

/// Parse one `key.path=value` override and apply it to a TOML document. The value is read as a
/// TOML value (`3`, `0.5`, `true`, `[1, 2]`, `"text"`, `{ kind = "per_sample" }`), and as a plain
/// string when it does not parse. Missing tables on the path are created; unknown keys are then
/// caught when the document is read into the typed config.
pub fn apply_override(doc: &mut toml::Value, arg: &str) -> Result<(), ConfigError> {
    let err = |msg: &str| ConfigError::Override {
        arg: arg.to_string(),
        msg: msg.to_string(),
    };
    let (key, raw) = arg
        .split_once('=')
        .ok_or_else(|| err("expected key.path=value"))?;
    let key = key.trim();
    if key.is_empty() || key.split('.').any(|p| p.trim().is_empty()) {
        return Err(err("empty key or empty part in the key path"));
    }
    let raw = raw.trim();
    let value = match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t.remove("v").ok_or_else(|| err("no value"))?,
        Err(_) => toml::Value::String(raw.to_string()),
    };
    let parts: Vec<&str> = key.split('.').map(str::trim).collect();
    let mut cur = doc;
    for (i, part) in parts.iter().enumerate() {
        let table = cur.as_table_mut().ok_or_else(|| {
            err(&format!(
                "'{}' is not a table, so it has no field '{part}'",
                parts[..i].join(".")
            ))
        })?;
        if i + 1 == parts.len() {
            table.insert(part.to_string(), value);
            return Ok(());
        }
        cur = table
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    }
    Ok(())
}

/// Read a typed config from TOML text (`origin` names where it came from, for errors), apply the
/// overrides in order, then validate it. Returns the config.
pub fn load_str<T: DeserializeOwned + Validate>(
    text: &str,
    origin: &str,
    overrides: &[String],
) -> Result<T, ConfigError> {
    let mut doc: toml::Value = text
        .parse::<toml::Table>()
        .map(toml::Value::Table)
        .map_err(|e| ConfigError::Parse {
            origin: origin.to_string(),
            msg: e.to_string(),
        })?;
    for o in overrides {
        apply_override(&mut doc, o)?;
    }
    let origin_full = if overrides.is_empty() {
        origin.to_string()
    } else {
        format!("{origin} (with overrides {})", overrides.join(" "))
    };
    T::normalize(&mut doc).map_err(|e| ConfigError::Invalid {
        origin: origin_full.clone(),
        field: e.field,
        msg: e.msg,
    })?;
    let cfg: T = serde_path_to_error::deserialize(doc.clone()).map_err(|e| {
        let path = e.path().to_string();
        let mut msg = e.into_inner().to_string();
        if msg.contains("expected internally tagged enum") {
            if let Some(hint) = tagged_enum_hint::<T>(&doc, &path) {
                msg = hint;
            }
        }
        ConfigError::Field {
            origin: origin_full.clone(),
            field: if path == "." {
                "(top level)".into()
            } else {
                path
            },
            msg,
        }
    })?;
    cfg.validate().map_err(|e| ConfigError::Invalid {
        origin: origin_full,
        field: e.field,
        msg: e.msg,
    })?;
    Ok(cfg)
}

/// The value at a serde path such as `net.activation` or `condition[2].labels`.
fn value_at<'a>(doc: &'a mut toml::Value, path: &str) -> Option<&'a mut toml::Value> {
    let mut cur = doc;
    for part in path.split('.') {
        let (name, index) = match part.split_once('[') {
            Some((n, rest)) => (n, Some(rest.trim_end_matches(']').parse::<usize>().ok()?)),
            None => (part, None),
        };
        if !name.is_empty() {
            cur = cur.as_table_mut()?.get_mut(name)?;
        }
        if let Some(i) = index {
            cur = cur.as_array_mut()?.get_mut(i)?;
        }
    }
    Some(cur)
}

/// A readable message for a value that should be a tagged table (`{ kind = "...", ... }`):
/// which kinds exist (asked of the type itself, by trying a kind that cannot exist) and how to
/// write one inline, on the command line and in a file.
fn tagged_enum_hint<T: DeserializeOwned>(doc: &toml::Value, path: &str) -> Option<String> {
    let try_kind = |kind: &str| -> Option<String> {
        let mut d = doc.clone();
        let mut t = toml::Table::new();
        t.insert("kind".into(), toml::Value::String(kind.into()));
        *value_at(&mut d, path)? = toml::Value::Table(t);
        serde_path_to_error::deserialize::<_, T>(d)
            .err()
            // the message alone (the parser may add the key's path on the lines after it)
            .map(|e| {
                let m = e.into_inner().to_string();
                m.lines().next().unwrap_or("").trim().to_string()
            })
    };
    // serde names the variants when a kind is unknown: "unknown variant `x`, expected `a`",
    // "... expected `a` or `b`", "... expected one of `a`, `b`, `c`"
    let unknown = try_kind("\u{1}")?;
    let names: Vec<&str> = unknown
        .split_once("expected")?
        .1
        .split('`')
        .skip(1)
        .step_by(2)
        .collect();
    let first = (*names.first()?).to_string();
    let kinds = names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let given = {
        let mut d = doc.clone();
        value_at(&mut d, path).cloned()
    };
    let key = path.rsplit('.').next().unwrap_or(path);
    let example = match &given {
        Some(toml::Value::String(s)) => s.clone(),
        _ => first,
    };
    let mut msg = format!(
        "expected a table with a `kind` (one of {kinds}), written inline: --set '{path}={{ kind = \"{example}\" }}' on the command line, {key} = {{ kind = \"{example}\" }} in a file"
    );
    if let Some(toml::Value::String(s)) = &given {
        match try_kind(s) {
            Some(e) if e.contains("unknown variant") => {
                msg.push_str(&format!("; `{s}` is not one of the kinds"))
            }
            Some(e) => msg.push_str(&format!("; kind `{s}` also needs its fields ({e})")),
            None => {}
        }
    }
    Some(msg)
}

/// Read a typed config from a TOML file, apply overrides, validate.
pub fn load_file<T: DeserializeOwned + Validate>(
    path: &Path,
    overrides: &[String],
) -> Result<T, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        origin: origin.clone(),
        msg: e.to_string(),
    })?;
    load_str(&text, &origin, overrides)
}

/// The resolved config as TOML text (every default filled in), for saving beside results.
pub fn to_toml<T: Serialize>(cfg: &T) -> Result<String, ConfigError> {
    toml::to_string_pretty(cfg).map_err(|e| ConfigError::Parse {
        origin: "(resolved config)".into(),
        msg: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    /// Overrides on both sides of a subcommand are all kept, in order; `--` ends the options.
    #[test]
    fn set_args_reads_both_sides_of_the_subcommand() {
        let argv = [
            "empirical",
            "--set",
            "a=1",
            "study",
            "c.toml",
            "--set=b=2",
            "--out",
            "o",
            "--set",
            "c={ k = \"--set\" }",
            "--",
            "--set",
            "d=4",
        ];
        assert_eq!(set_args(argv), ["a=1", "b=2", "c={ k = \"--set\" }"]);
        assert!(set_args(["theory-sim", "verify", "--out", "x"]).is_empty());
    }

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        x: f64,
        #[serde(default)]
        list: Vec<u32>,
    }
    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Cfg {
        name: String,
        inner: Inner,
    }
    impl Validate for Cfg {
        fn validate(&self) -> Result<(), InvalidField> {
            if self.inner.x < 0.0 {
                return Err(InvalidField::new("inner.x", "must be >= 0"));
            }
            Ok(())
        }
    }

    const TEXT: &str = "name = \"a\"\n[inner]\nx = 1.5\n";

    #[test]
    fn overrides_apply_and_create_keys() {
        let c: Cfg = load_str(
            TEXT,
            "t.toml",
            &[
                "inner.x=2".into(),
                "inner.list=[1,2]".into(),
                "name=b c".into(),
            ],
        )
        .unwrap();
        assert_eq!(c.inner.x, 2.0);
        assert_eq!(c.inner.list, vec![1, 2]);
        assert_eq!(c.name, "b c");
    }

    #[test]
    fn unknown_key_names_file_and_field() {
        let e = load_str::<Cfg>(TEXT, "t.toml", &["inner.y=1".into()]).unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("t.toml") && s.contains("inner") && s.contains('y'),
            "{s}"
        );
        let e = load_str::<Cfg>("name = 1\n[inner]\nx=1\n", "u.toml", &[]).unwrap_err();
        assert!(e.to_string().contains("'name'"), "{e}");
    }

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    #[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
    enum Shape {
        Dot,
        Circle { r: f64 },
    }
    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Drawing {
        shape: Shape,
    }
    impl Validate for Drawing {
        fn validate(&self) -> Result<(), InvalidField> {
            Ok(())
        }
    }

    /// A tagged table given as a plain word gets an answer that lists the kinds and shows the
    /// inline syntax, instead of serde's "expected internally tagged enum".
    #[test]
    fn tagged_tables_given_as_words_say_which_kinds_exist() {
        let text = "[shape]\nkind = \"dot\"\n";
        let ok: Drawing = load_str(
            text,
            "d.toml",
            &["shape={ kind = \"circle\", r = 1 }".into()],
        )
        .unwrap();
        assert_eq!(ok.shape, Shape::Circle { r: 1.0 });
        let e = load_str::<Drawing>(text, "d.toml", &["shape=dot".into()]).unwrap_err();
        let s = e.to_string();
        assert!(!s.contains("internally tagged"), "{s}");
        assert!(s.contains("`dot`") && s.contains("`circle`"), "{s}");
        assert!(s.contains("--set 'shape={ kind = \"dot\" }'"), "{s}");
        let e = load_str::<Drawing>(text, "d.toml", &["shape=circle".into()]).unwrap_err();
        assert!(
            e.to_string().contains("needs its fields") && e.to_string().contains('r'),
            "{e}"
        );
        let e = load_str::<Drawing>(text, "d.toml", &["shape=square".into()]).unwrap_err();
        assert!(
            e.to_string().contains("`square` is not one of the kinds"),
            "{e}"
        );
    }

    #[test]
    fn validation_and_parse_errors_name_the_place() {
        let e = load_str::<Cfg>(TEXT, "t.toml", &["inner.x=-1".into()]).unwrap_err();
        assert!(matches!(e, ConfigError::Invalid { ref field, .. } if field == "inner.x"));
        let e = load_str::<Cfg>("name = ", "bad.toml", &[]).unwrap_err();
        assert!(matches!(e, ConfigError::Parse { .. }) && e.to_string().contains("bad.toml"));
        let e = load_str::<Cfg>(TEXT, "t.toml", &["noequals".into()]).unwrap_err();
        assert!(matches!(e, ConfigError::Override { .. }));
        let e = load_str::<Cfg>(TEXT, "t.toml", &["name.x=1".into()]).unwrap_err();
        assert!(e.to_string().contains("not a table"), "{e}");
        let e = load_file::<Cfg>(Path::new("/nonexistent/c.toml"), &[]).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/c.toml"));
    }
}

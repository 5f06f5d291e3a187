//! `connectd plugin new <name> --lang rust|python|js`: writes a ready-to-build plugin
//! project from the templates in `runtime/templates/plugin/` (built into the binary),
//! with a sample input for `connectd plugin test`.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Rust,
    Python,
    Js,
}

#[derive(Debug, thiserror::Error)]
pub enum PluginNewError {
    #[error(
        "`{0}` is not a plugin name: use letters, digits, `-` and `_`, starting with a letter"
    )]
    Name(String),
    #[error("{0} already exists: choose another name or remove it")]
    Exists(PathBuf),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

const WIT: &str = include_str!("../../plugins-sdk/wit/connectd.wit");
const SAMPLE: &str = include_str!("../templates/plugin/sample.jsonl");

/// The files of a project in `lang`, by path.
fn files(lang: Language) -> Vec<(&'static str, &'static str)> {
    let mut files = match lang {
        Language::Rust => vec![
            (
                "Cargo.toml",
                include_str!("../templates/plugin/rust/Cargo.toml"),
            ),
            (
                "src/lib.rs",
                include_str!("../templates/plugin/rust/src/lib.rs"),
            ),
            (
                "README.md",
                include_str!("../templates/plugin/rust/README.md"),
            ),
        ],
        Language::Python => vec![
            ("app.py", include_str!("../templates/plugin/python/app.py")),
            (
                "README.md",
                include_str!("../templates/plugin/python/README.md"),
            ),
            ("wit/connectd.wit", WIT),
        ],
        Language::Js => vec![
            (
                "plugin.js",
                include_str!("../templates/plugin/js/plugin.js"),
            ),
            (
                "package.json",
                include_str!("../templates/plugin/js/package.json"),
            ),
            (
                "README.md",
                include_str!("../templates/plugin/js/README.md"),
            ),
            ("wit/connectd.wit", WIT),
        ],
    };
    files.push(("sample.jsonl", SAMPLE));
    files
}

/// Where the SDK a Rust plugin depends on comes from: `sdk` if given; else the SDK
/// this binary was built from, when its sources are still there (`cargo install
/// --path runtime`); else the crates.io release.
fn sdk_dependency(sdk: Option<&Path>) -> String {
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins-sdk");
    let path = match sdk {
        Some(p) => Some(p.to_path_buf()),
        None => built_from.canonicalize().ok(),
    };
    // Without `host`: only the guest side, with serde_json and wit-bindgen.
    match path {
        Some(p) => format!(
            "{{ path = {:?}, default-features = false }}",
            p.display().to_string()
        ),
        None => format!(
            "{{ version = \"{}\", default-features = false }}",
            env!("CARGO_PKG_VERSION")
        ),
    }
}

/// Writes the project into `parent/name`; returns its directory.
pub fn create(
    name: &str,
    lang: Language,
    parent: &Path,
    sdk: Option<&Path>,
) -> Result<PathBuf, PluginNewError> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err(PluginNewError::Name(name.to_string()));
    }
    let dir = parent.join(name);
    if dir.exists() {
        return Err(PluginNewError::Exists(dir));
    }
    let crate_name = name.replace('-', "_");
    let sdk = sdk_dependency(sdk);
    for (path, template) in files(lang) {
        let text = template
            .replace("{{name}}", name)
            .replace("{{crate}}", &crate_name)
            .replace("{{sdk}}", &sdk);
        let path = dir.join(path);
        let write = || {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, text)
        };
        write().map_err(|source| PluginNewError::Write {
            path: path.clone(),
            source,
        })?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_project_has_its_name_everywhere_and_no_placeholder_left() {
        let parent = tempfile::tempdir().unwrap();
        for (lang, name) in [
            (Language::Rust, "my-rust"),
            (Language::Python, "my-py"),
            (Language::Js, "my-js"),
        ] {
            let dir = create(name, lang, parent.path(), None).unwrap();
            for (path, _) in files(lang) {
                let text = std::fs::read_to_string(dir.join(path)).unwrap();
                assert!(!text.contains("{{"), "{path} of {name}: {text}");
            }
        }
        let cargo = std::fs::read_to_string(parent.path().join("my-rust/Cargo.toml")).unwrap();
        assert!(cargo.contains("name = \"my-rust\""), "{cargo}");
        assert!(cargo.contains("connectd-sdk = { path = "), "{cargo}");
    }

    #[test]
    fn bad_names_and_existing_directories_are_refused() {
        let parent = tempfile::tempdir().unwrap();
        assert!(matches!(
            create("../x", Language::Rust, parent.path(), None),
            Err(PluginNewError::Name(_))
        ));
        create("x", Language::Js, parent.path(), None).unwrap();
        assert!(matches!(
            create("x", Language::Js, parent.path(), None),
            Err(PluginNewError::Exists(_))
        ));
    }
}

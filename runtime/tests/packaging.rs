//! The container image's recipe (issue 20). This machine has no container engine, so
//! the Dockerfile is checked here instead of built: known instructions only, a build
//! stage and a slim runtime stage, a non-root user, a health check on `/healthz`, the
//! admin port, and the binary as entry point. With an engine, `docker build .` builds it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

/// The Dockerfile's instructions, continuation lines joined, comments dropped.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let line = line.trim();
        if pending.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => {
                pending.push_str(head);
                pending.push(' ');
            }
            None => {
                pending.push_str(line);
                let (word, rest) = pending.split_once(' ').unwrap_or((&pending, ""));
                out.push((word.to_string(), rest.trim().to_string()));
                pending.clear();
            }
        }
    }
    assert!(
        pending.is_empty(),
        "the Dockerfile ends inside a continued line"
    );
    out
}

#[test]
fn the_dockerfile_builds_in_one_stage_and_runs_slim_and_non_root() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    let steps = instructions(&text);
    const KNOWN: [&str; 18] = [
        "FROM",
        "RUN",
        "CMD",
        "LABEL",
        "EXPOSE",
        "ENV",
        "ADD",
        "COPY",
        "ENTRYPOINT",
        "VOLUME",
        "USER",
        "WORKDIR",
        "ARG",
        "ONBUILD",
        "STOPSIGNAL",
        "HEALTHCHECK",
        "SHELL",
        "MAINTAINER",
    ];
    for (word, rest) in &steps {
        assert!(
            KNOWN.contains(&word.as_str()),
            "unknown instruction `{word} {rest}`"
        );
        assert!(!rest.is_empty(), "`{word}` without arguments");
    }
    let froms: Vec<usize> = steps
        .iter()
        .enumerate()
        .filter(|(_, (w, _))| w == "FROM")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(froms.len(), 2, "a build stage and a runtime stage");
    assert_eq!(froms[0], 0, "it starts with FROM");
    let (_, build) = &steps[0];
    assert!(build.to_lowercase().ends_with(" as build"), "{build}");
    assert!(
        steps[..froms[1]]
            .iter()
            .any(|(w, r)| w == "RUN" && r.contains("cargo build --release --locked")),
        "the build stage builds the release binary from the lock file"
    );
    let runtime = &steps[froms[1]..];
    assert!(
        runtime[0].1.contains("-slim"),
        "slim base: {}",
        runtime[0].1
    );
    let find = |word: &str| -> Vec<&str> {
        runtime
            .iter()
            .filter(|(w, _)| w == word)
            .map(|(_, r)| r.as_str())
            .collect()
    };
    assert!(
        find("COPY").iter().any(|r| r.starts_with("--from=build")),
        "only the binary comes from the build stage"
    );
    let user = find("USER");
    assert_eq!(user.len(), 1);
    assert!(
        !["root", "0"].contains(&user[0]),
        "runs as root: {}",
        user[0]
    );
    let health = find("HEALTHCHECK");
    assert!(
        health.len() == 1 && health[0].contains("CMD") && health[0].contains("/healthz"),
        "{health:?}"
    );
    assert!(find("EXPOSE").contains(&"8083"));
    assert!(find("ENV")
        .iter()
        .any(|e| e.contains("CONNECTD_ADMIN_ADDR=0.0.0.0:8083")));
    assert_eq!(find("ENTRYPOINT"), [r#"["connectd"]"#]);
    let ignore = std::fs::read_to_string(root.join(".dockerignore")).unwrap();
    assert!(
        ignore.lines().any(|l| l.trim() == "target/"),
        "the build context skips target/"
    );
}

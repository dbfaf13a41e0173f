//! Language auto-detection (SPEC §4, opt-in only): infers a container's
//! language from its image reference, command, args and env. Injection
//! happens only when exactly one language is evident; the evidence is kept
//! for `explain`.

use k8s_openapi::api::core::v1::Container;

use crate::language::Language;

/// One clue: which language, and what showed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Clue {
    pub language: Language,
    pub evidence: String,
}

/// The image's repository name without registry, path and tag: `python` for
/// `docker.io/library/python:3.12-slim`.
fn image_name(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    last.split(':').next().unwrap_or(last)
}

fn basename(s: &str) -> &str {
    s.rsplit('/').next().unwrap_or(s)
}

fn image_language(image: &str) -> Option<Language> {
    let full = image.to_ascii_lowercase();
    let name = image_name(&full);
    if name.starts_with("python") || name.starts_with("pypy") {
        Some(Language::Python)
    } else if [
        "openjdk",
        "eclipse-temurin",
        "amazoncorretto",
        "ibm-semeru-runtimes",
        "jdk",
        "jre",
        "java",
    ]
    .iter()
    .any(|p| name.starts_with(p))
        || name.contains("-jre")
        || name.contains("-jdk")
    {
        Some(Language::Java)
    } else if name == "node" || name.starts_with("node-") || name.starts_with("nodejs") {
        Some(Language::Nodejs)
    } else if full.contains("mcr.microsoft.com/dotnet/") || name.starts_with("dotnet") {
        Some(Language::Dotnet)
    } else {
        None
    }
}

fn program_language(program: &str) -> Option<Language> {
    let p = basename(program);
    let python = [
        "gunicorn",
        "uvicorn",
        "celery",
        "hypercorn",
        "daphne",
        "flask",
    ];
    let versioned_python = p
        .strip_prefix("python")
        .is_some_and(|v| v.chars().all(|c| c.is_ascii_digit() || c == '.'));
    if versioned_python || python.contains(&p) {
        Some(Language::Python)
    } else if p == "java" {
        Some(Language::Java)
    } else if ["node", "npm", "npx", "yarn", "pnpm"].contains(&p) {
        Some(Language::Nodejs)
    } else if p == "dotnet" {
        Some(Language::Dotnet)
    } else {
        None
    }
}

fn is_shell(program: &str) -> bool {
    ["sh", "bash", "ash", "dash", "zsh", "busybox"].contains(&basename(program))
}

fn env_language(name: &str) -> Option<Language> {
    match name {
        "PYTHONPATH" | "PYTHONUNBUFFERED" | "PYTHONDONTWRITEBYTECODE" => Some(Language::Python),
        "JAVA_OPTS" | "JAVA_TOOL_OPTIONS" | "JAVA_HOME" => Some(Language::Java),
        "NODE_ENV" | "NODE_OPTIONS" => Some(Language::Nodejs),
        n if n.starts_with("ASPNETCORE_") || n.starts_with("DOTNET_") => Some(Language::Dotnet),
        _ => None,
    }
}

/// Every clue in one container.
pub fn clues(c: &Container) -> Vec<Clue> {
    let mut out = Vec::new();
    let mut push = |language, evidence: String| out.push(Clue { language, evidence });
    if let Some(image) = c.image.as_deref()
        && let Some(l) = image_language(image)
    {
        push(l, format!("{}: image {image}", c.name));
    }
    let words: Vec<&str> = c
        .command
        .iter()
        .flatten()
        .chain(c.args.iter().flatten())
        .flat_map(|s| s.split_whitespace())
        .collect();
    // The program is the first word, or the word after a shell's `-c`/`exec`.
    let mut program_seen = false;
    for (i, w) in words.iter().enumerate() {
        let first = i == 0 || matches!(words[i - 1], "-c" | "exec");
        if first && let Some(l) = program_language(w) {
            push(l, format!("{}: runs {w}", c.name));
            program_seen = true;
        }
        if *w == "-jar" {
            push(Language::Java, format!("{}: `-jar` argument", c.name));
            program_seen = true;
        }
    }
    // A shell running a script we cannot read may start anything (a Python
    // image whose entrypoint script launches `java`): the image and env are
    // then no evidence of what runs, so this container tells us nothing.
    if !program_seen && words.first().is_some_and(|w| is_shell(w)) {
        return Vec::new();
    }
    for e in c.env.iter().flatten() {
        if let Some(l) = env_language(&e.name) {
            push(l, format!("{}: env {}", c.name, e.name));
        }
    }
    out
}

/// The one language evident across `containers`, with the evidence; or why not.
pub fn detect(containers: &[&Container]) -> Result<(Language, Vec<String>), String> {
    let all: Vec<Clue> = containers.iter().flat_map(|c| clues(c)).collect();
    let mut langs: Vec<Language> = all.iter().map(|c| c.language).collect();
    langs.sort();
    langs.dedup();
    match langs.as_slice() {
        [l] => Ok((*l, all.into_iter().map(|c| c.evidence).collect())),
        [] => Err("auto-detection found no language in the image, command, args or env".into()),
        many => Err(format!(
            "auto-detection found several languages ({}); name one with inject-<lang>",
            many.iter().map(|l| l.key()).collect::<Vec<_>>().join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn c(v: serde_json::Value) -> Container {
        serde_json::from_value(v).expect("container")
    }

    #[rstest::rstest]
    #[case::python_image(json!({"name": "a", "image": "python:3.12-slim"}), Ok(Language::Python))]
    #[case::gunicorn_command(
        json!({"name": "a", "image": "reg/app:1", "command": ["gunicorn", "app:wsgi"]}),
        Ok(Language::Python)
    )]
    #[case::shell_execs_uvicorn(
        json!({"name": "a", "image": "reg/app:1", "command": ["/bin/sh", "-c", "exec uvicorn main:app"]}),
        Ok(Language::Python)
    )]
    #[case::python_interpreter_path(
        json!({"name": "a", "image": "reg/app:1", "command": ["/usr/bin/python3.11", "-m", "app"]}),
        Ok(Language::Python)
    )]
    #[case::temurin_jar(
        json!({"name": "a", "image": "eclipse-temurin:21-jre", "args": ["-jar", "/app.jar"]}),
        Ok(Language::Java)
    )]
    #[case::java_command(
        json!({"name": "a", "image": "reg/app:1", "command": ["java", "-jar", "app.jar"]}),
        Ok(Language::Java)
    )]
    #[case::node_image(json!({"name": "a", "image": "node:22-alpine"}), Ok(Language::Nodejs))]
    #[case::dotnet_aspnet_image(
        json!({"name": "a", "image": "mcr.microsoft.com/dotnet/aspnet:8.0"}),
        Ok(Language::Dotnet)
    )]
    #[case::aspnetcore_urls_env(
        json!({"name": "a", "image": "reg/app:1", "env": [{"name": "ASPNETCORE_URLS", "value": "http://+:80"}]}),
        Ok(Language::Dotnet)
    )]
    #[case::unknown_image(json!({"name": "a", "image": "reg/app:1"}), Err("no language"))]
    #[case::two_languages(
        json!({"name": "a", "image": "python:3", "command": ["node", "x.js"]}),
        Err("several languages (nodejs, python)")
    )]
    #[case::nodeexporter_is_not_node(
        json!({"name": "a", "image": "reg/nodeexporter:1"}),
        Err("no language")
    )]
    // Must not detect: a Python image whose shell script starts java.
    #[case::python_image_shell_script(
        json!({"name": "a", "image": "python:3.12-slim", "command": ["/bin/sh", "/opt/start.sh"]}),
        Err("no language")
    )]
    #[case::python_image_bash_script(
        json!({"name": "a", "image": "python:3.12-slim", "command": ["bash", "-c", "./start-server.sh --port 8080"]}),
        Err("no language")
    )]
    // Must not detect: a busybox sidecar.
    #[case::busybox_sidecar(
        json!({"name": "a", "image": "busybox:1.36", "command": ["sh", "-c", "while true; do sleep 30; done"]}),
        Err("no language")
    )]
    // A shell that visibly execs a known program still tells.
    #[case::shell_execs_gunicorn(
        json!({"name": "a", "image": "python:3.12-slim", "command": ["sh", "-c", "exec gunicorn app:wsgi"]}),
        Ok(Language::Python)
    )]
    fn detection_table(#[case] spec: serde_json::Value, #[case] want: Result<Language, &str>) {
        let container = c(spec.clone());
        match (detect(&[&container]), want) {
            (Ok((l, ev)), Ok(w)) => {
                assert_eq!(l, w, "{spec}");
                assert!(!ev.is_empty());
            }
            (Err(e), Err(w)) => assert!(e.contains(w), "{spec}: {e}"),
            (got, want) => panic!("{spec}: got {got:?}, want {want:?}"),
        }
    }
}

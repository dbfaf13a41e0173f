//! The command line as clap describes it (`Cli::command()`), walked over
//! every subcommand at every depth: environment variables and help texts.

use clap::builder::ValueHint;
use clap::{Arg, Command, CommandFactory as _};
use otel_admission::cli::Cli;
use std::collections::BTreeMap;

/// Every command with its path (`policy eval`), the root included.
fn commands() -> Vec<(String, Command)> {
    fn walk(path: &str, cmd: &Command, out: &mut Vec<(String, Command)>) {
        out.push((path.to_string(), cmd.clone()));
        for sub in cmd.get_subcommands() {
            let p = if path.is_empty() {
                sub.get_name().to_string()
            } else {
                format!("{path} {}", sub.get_name())
            };
            walk(&p, sub, out);
        }
    }
    let mut out = Vec::new();
    walk("", &Cli::command(), &mut out);
    out
}

fn is_builtin(arg: &Arg) -> bool {
    matches!(arg.get_id().as_str(), "help" | "version")
}

fn is_path(arg: &Arg) -> bool {
    arg.get_value_parser().type_id() == std::any::TypeId::of::<std::path::PathBuf>()
}

/// What an argument's value is, as far as an environment variable is
/// concerned: the flag, whether it names a file, a directory or neither,
/// and the values it accepts (enumerated, aliases included) or else its
/// parsed type.
fn meaning(arg: &Arg) -> String {
    let values: Vec<String> = {
        let mut v: Vec<String> = arg
            .get_possible_values()
            .iter()
            .flat_map(|p| p.get_name_and_aliases().map(str::to_string))
            .collect();
        v.sort();
        v
    };
    let kind = if values.is_empty() {
        format!("{:?}", arg.get_value_parser().type_id())
    } else {
        values.join("|")
    };
    format!(
        "--{} ({:?}, {kind})",
        arg.get_long().unwrap_or("<positional>"),
        arg.get_value_hint()
    )
}

/// Issue 28: `OTEL_ADMISSION_OUTPUT=json`, exported for `rollout plan -o
/// json`, made `inject` write a file named `json`, and
/// `OTEL_ADMISSION_NAMESPACE=shop` made it fail with `cannot read shop`:
/// one variable, a value in one command and a path in another. A variable
/// must mean one thing in every command that reads it.
#[test]
fn one_environment_variable_one_meaning() {
    let mut seen: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for (path, cmd) in commands() {
        for arg in cmd.get_arguments().filter(|a| !is_builtin(a)) {
            let Some(env) = arg.get_env() else { continue };
            seen.entry(env.to_string_lossy().into_owned())
                .or_default()
                .entry(meaning(arg))
                .or_default()
                .push(if path.is_empty() {
                    "otel-admission".into()
                } else {
                    path.clone()
                });
        }
    }
    let clashes: Vec<String> = seen
        .iter()
        .filter(|(_, meanings)| meanings.len() > 1)
        .map(|(env, meanings)| format!("{env}: {meanings:?}"))
        .collect();
    assert!(
        clashes.is_empty(),
        "an environment variable read with different meanings:\n{}",
        clashes.join("\n")
    );
    // The shared ones keep their one meaning (a guard on the test itself:
    // the walk does reach nested commands).
    assert_eq!(seen["OTEL_ADMISSION_CONFIG"].len(), 1);
    let config_users = seen["OTEL_ADMISSION_CONFIG"].values().next().unwrap();
    for c in ["serve", "inject", "explain", "policy eval", "rollout plan"] {
        assert!(
            config_users.contains(&c.to_string()),
            "{c}: {config_users:?}"
        );
    }
}

/// Every flag has a variable, `OTEL_ADMISSION_<FLAG>`, or `<FLAG>_FILE`
/// for a file where another command's same flag takes a value; and every
/// path read from a variable says whether it is a file or a directory, so
/// the walk above (and the shell completions) can tell.
#[test]
fn every_flag_has_an_environment_variable() {
    let cmd = Cli::command();
    cmd.clone().debug_assert();
    for (path, cmd) in commands() {
        for arg in cmd.get_arguments().filter(|a| !is_builtin(a)) {
            let Some(long) = arg.get_long() else { continue };
            let want = format!("OTEL_ADMISSION_{}", long.replace('-', "_").to_uppercase());
            let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
            let hint = arg.get_value_hint();
            let ok = env.as_deref() == Some(want.as_str())
                || (hint == ValueHint::FilePath
                    && env.as_deref() == Some(format!("{want}_FILE").as_str()));
            assert!(ok, "{path} --{long}: env {env:?}, want {want}");
            if is_path(arg) {
                assert!(
                    matches!(hint, ValueHint::FilePath | ValueHint::DirPath),
                    "{path} --{long}: a path needs value_hint FilePath or DirPath, has {hint:?}"
                );
            }
        }
    }
}

/// Issue 28: `crd --help` said it printed one CRD and it prints two;
/// `policy --help` did not mention `bundle`. Every command and argument has
/// help, and a group's help names each of its subcommands.
#[test]
fn help_says_what_commands_do() {
    for (path, cmd) in commands() {
        let about = cmd.get_about().map(|a| a.to_string()).unwrap_or_default();
        if path.is_empty() || path == "help" || path.ends_with(" help") {
            continue;
        }
        assert!(!about.is_empty(), "{path}: no help");
        for arg in cmd.get_arguments().filter(|a| !is_builtin(a)) {
            assert!(arg.get_help().is_some(), "{path} {}: no help", arg.get_id());
        }
        if !path.contains(' ') {
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                assert!(
                    about.to_lowercase().contains(sub.get_name()),
                    "`{path}`'s help ({about:?}) does not mention `{}`",
                    sub.get_name()
                );
            }
        }
    }
    let crd = Cli::command()
        .find_subcommand("crd")
        .and_then(|c| c.get_about())
        .map(|a| a.to_string())
        .unwrap_or_default();
    let printed = otel_admission::cli::crd_yaml().expect("crd");
    for (kind, plural) in [
        ("Instrumentation", "instrumentations.opentelemetry.io"),
        (
            "OpenTelemetryCollector",
            "opentelemetrycollectors.opentelemetry.io",
        ),
    ] {
        assert!(
            crd.contains(kind),
            "crd's help does not say {kind}: {crd:?}"
        );
        assert!(printed.contains(plural), "crd does not print {plural}");
    }
    assert_eq!(
        printed.matches("kind: CustomResourceDefinition").count(),
        2,
        "crd prints the two CRDs its help names"
    );
}

/// A flag a command takes is a flag it honours: `rollout apply` took
/// `rollout plan`'s `-o json` and printed text all the same.
#[test]
fn rollout_apply_takes_no_output_format() {
    use clap::Parser as _;
    let parse = |args: &[&str]| Cli::try_parse_from([&["otel-admission"], args].concat());
    assert!(parse(&["rollout", "plan", "-o", "json"]).is_ok());
    let err = parse(&["rollout", "apply", "-o", "json"]).expect_err("no -o on apply");
    assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument);
}

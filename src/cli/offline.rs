//! `inject` and `explain`: the same core as `/mutate`, on manifests read
//! from a file or stdin, with no cluster.

use crate::cli::args::InjectArgs;
use crate::config::Config;
use crate::inject::cluster_view::{NamespaceMeta, StaticView};
use crate::inject::manifest;
use crate::instrumentation::Instrumentation;
use anyhow::Context as _;
use std::path::Path;

fn read_input(path: &Path) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .context("cannot read stdin")?;
        Ok(s)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
    }
}

/// The objects of a file as `kubectl get … -o yaml` prints them: one
/// object, several documents, or a `List` (`kind: List`, or any `*List`
/// with `items`), flattened in order; each with where it came from
/// (`document 0`, `document 0: items[2]`) for error messages.
fn objects(text: &str, origin: &str) -> anyhow::Result<Vec<(String, serde_json::Value)>> {
    let mut out = Vec::new();
    for (i, doc) in manifest::parse_documents(text, origin)?
        .into_iter()
        .enumerate()
    {
        let kind = doc.get("kind").and_then(|k| k.as_str()).unwrap_or_default();
        match doc.get("items").and_then(|i| i.as_array()) {
            Some(items) if kind.ends_with("List") => {
                for (j, item) in items.iter().enumerate() {
                    out.push((format!("document {i}: items[{j}]"), item.clone()));
                }
            }
            _ => out.push((format!("document {i}"), doc)),
        }
    }
    Ok(out)
}

/// `--namespace shop`: a namespace name where a file was expected. Said
/// so, with the flag that reads it from the cluster, before the read error.
fn bare_namespace_name(p: &Path, e: anyhow::Error) -> anyhow::Error {
    let name = p.to_str().unwrap_or_default();
    let bare = !name.is_empty()
        && name != "-"
        && !p.exists()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if bare {
        e.context(format!(
            "--namespace takes a file of Namespace objects (offline); to read namespace {name} from the cluster use -n {name}"
        ))
    } else {
        e
    }
}

/// An object's `kind`, or `None` when it has none (then it is taken to be
/// what the flag expects, as before Lists were read).
fn kind_of(obj: &serde_json::Value) -> Option<&str> {
    obj.get("kind")
        .and_then(|k| k.as_str())
        .filter(|k| !k.is_empty())
}

/// Builds the config and view `inject` and `explain` run against, and the
/// namespace of objects without one: the first Namespace of `--namespace`,
/// else `default`.
fn offline_inputs(args: &InjectArgs) -> anyhow::Result<(Config, StaticView, String)> {
    let config = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let mut view = StaticView::new();
    let mut default_ns = None;
    if let Some(p) = &args.namespace {
        let origin = p.display().to_string();
        let text = read_input(p).map_err(|e| bare_namespace_name(p, e))?;
        let objects = objects(&text, &origin)?;
        if objects.is_empty() {
            anyhow::bail!("{origin}: no Namespace document");
        }
        for (at, obj) in objects {
            if let Some(kind) = kind_of(&obj).filter(|k| *k != "Namespace") {
                anyhow::bail!("{origin}: {at}: kind: expected Namespace, got {kind}");
            }
            let ns: k8s_openapi::api::core::v1::Namespace = serde_path_to_error::deserialize(&obj)
                .map_err(|e| anyhow::anyhow!("{origin}: {at}: {}: {}", e.path(), e.inner()))?;
            let name = ns.metadata.name.clone().unwrap_or_default();
            if name.is_empty() {
                anyhow::bail!("{origin}: {at}: metadata.name: a Namespace needs a name");
            }
            view = view.with_namespace(name.clone(), NamespaceMeta::from(&ns));
            default_ns.get_or_insert(name);
        }
    }
    let default_ns = default_ns.unwrap_or_else(|| "default".to_string());
    for p in &args.instrumentation {
        let origin = p.display().to_string();
        let text = read_input(p)?;
        for (at, obj) in objects(&text, &origin)? {
            match kind_of(&obj) {
                Some(crate::otelcol::KIND) => {
                    let c = crate::otelcol::Collector::from_object(&obj, &default_ns)
                        .map_err(|e| anyhow::anyhow!("{origin}: {at}: {e}"))?;
                    view = view.with_collector(c);
                    continue;
                }
                None | Some(crate::instrumentation::KIND) => {}
                Some(kind) => anyhow::bail!(
                    "{origin}: {at}: kind: expected {} or {}, got {kind}",
                    crate::instrumentation::KIND,
                    crate::otelcol::KIND
                ),
            }
            // No `spec` is an empty spec, as in the cluster.
            let inst = Instrumentation::from_object(&obj)
                .map_err(|e| anyhow::anyhow!("{origin}: {at}: {}: {}", e.path(), e.inner()))?;
            if inst.metadata.name.as_deref().unwrap_or_default().is_empty() {
                anyhow::bail!("{origin}: {at}: metadata.name: an Instrumentation needs a name");
            }
            let problems = inst.spec.validate();
            if let Some(pr) = problems.first() {
                anyhow::bail!("{origin}: {at}: spec.{pr}");
            }
            view = view.with_instrumentation(inst, &default_ns);
        }
    }
    Ok((config, view, default_ns))
}

/// What `-o` asks for. It is `InjectArgs::output`, shared by both commands
/// and once only a file to write: a bare format word (`yaml`, `pod` for
/// `inject`; `text`, `json` for `explain`) now picks the format, printed to
/// stdout, as `kubectl -o` does; anything else is still the file to write
/// (`-o ./json` writes a file named `json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// `inject`: the manifest, injected.
    Yaml,
    /// `inject -o pod`: the Pod made from each template, injected.
    Pod,
    /// `explain`: plain words.
    Text,
    /// `explain -o json`: one JSON document per workload.
    Json,
}

const FORMATS: [(&str, Format); 4] = [
    ("yaml", Format::Yaml),
    ("pod", Format::Pod),
    ("text", Format::Text),
    ("json", Format::Json),
];

/// The format and the file (if any) `-o` names.
pub(crate) fn output(args: &InjectArgs, explain: bool) -> anyhow::Result<(Format, Option<&Path>)> {
    let (command, default, own) = if explain {
        ("explain", Format::Text, [Format::Text, Format::Json])
    } else {
        ("inject", Format::Yaml, [Format::Yaml, Format::Pod])
    };
    let Some(p) = args.output.as_deref() else {
        return Ok((default, None));
    };
    let word = p.to_str().unwrap_or_default();
    match FORMATS.iter().find(|(w, _)| *w == word) {
        Some((_, f)) if own.contains(f) => Ok((*f, None)),
        Some(_) => {
            let names: Vec<&str> = FORMATS
                .iter()
                .filter(|(_, f)| own.contains(f))
                .map(|(w, _)| *w)
                .collect();
            anyhow::bail!(
                "{command} -o {word}: {command}'s formats are {}; to write a file named {word}, give -o ./{word}",
                names.join(" and ")
            )
        }
        None => Ok((default, Some(p))),
    }
}

/// What `inject` and `explain` say when given neither input.
const NO_INPUT: &str = "give -f FILE (a manifest, offline) or -n NAMESPACE [KIND/NAME] (live: read from the cluster of the kubeconfig)";

pub(crate) fn inject_cmd(args: &InjectArgs, explain: bool) -> anyhow::Result<()> {
    let Some(filename) = args.filename.as_deref() else {
        anyhow::bail!("{NO_INPUT}");
    };
    let (format, file) = output(args, explain)?;
    let (config, view, default_ns) = offline_inputs(args)?;
    let origin = if filename.as_os_str() == "-" {
        "<stdin>".to_string()
    } else {
        filename.display().to_string()
    };
    let text = read_input(filename)?;
    let inputs = manifest::Inputs {
        config: &config,
        view: &view,
        default_namespace: &default_ns,
        // Offline: `sidecar.native: auto` means native (SPEC §5, docs/INJECTION.md).
        server_version: None,
        given: manifest::Given {
            namespaces: args.namespace.is_some(),
            instrumentations: !args.instrumentation.is_empty(),
        },
        as_pods: format == Format::Pod,
    };
    let processed = manifest::process(&text, &origin, &inputs)?;
    if !explain {
        for r in &processed.reports {
            for w in &r.outcome.warnings {
                eprintln!("{origin}[{}] {}: {w}", r.index, r.workload);
            }
        }
    }
    let out = match format {
        Format::Text => manifest::explain(&origin, &processed.reports),
        Format::Json => {
            if processed.reports.is_empty() {
                eprintln!("{}", manifest::nothing_found(&origin));
            }
            manifest::explain_json(&origin, &processed.reports)
        }
        Format::Yaml => manifest::to_yaml(&processed.documents).context("cannot write YAML")?,
        Format::Pod => manifest::pods_yaml(&processed.reports).context("cannot write YAML")?,
    };
    write_out(file, &out)
}

/// Writes `out` to the file `-o` named, else to stdout.
pub(crate) fn write_out(file: Option<&Path>, out: &str) -> anyhow::Result<()> {
    match file {
        Some(p) => {
            std::fs::write(p, out).with_context(|| format!("cannot write {}", p.display()))?
        }
        None => {
            use std::io::Write as _;
            std::io::stdout()
                .write_all(out.as_bytes())
                .context("cannot write to stdout")?;
        }
    }
    Ok(())
}

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

/// Builds the config and view `inject` and `explain` run against.
fn offline_inputs(args: &InjectArgs) -> anyhow::Result<(Config, StaticView, String)> {
    let config = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let mut view = StaticView::new();
    let mut default_ns = "default".to_string();
    if let Some(p) = &args.namespace {
        let origin = p.display().to_string();
        let text = read_input(p)?;
        let docs = manifest::parse_documents(&text, &origin)?;
        let doc = docs
            .into_iter()
            .next()
            .with_context(|| format!("{origin}: no Namespace document"))?;
        let ns: k8s_openapi::api::core::v1::Namespace = serde_path_to_error::deserialize(&doc)
            .map_err(|e| anyhow::anyhow!("{origin}: document 0: {}: {}", e.path(), e.inner()))?;
        let name = ns.metadata.name.clone().unwrap_or_default();
        if name.is_empty() {
            anyhow::bail!("{origin}: document 0: metadata.name: a Namespace needs a name");
        }
        view = view.with_namespace(name.clone(), NamespaceMeta::from(&ns));
        default_ns = name;
    }
    for p in &args.instrumentation {
        let origin = p.display().to_string();
        let text = read_input(p)?;
        for (i, doc) in manifest::parse_documents(&text, &origin)?
            .into_iter()
            .enumerate()
        {
            if doc.get("kind").and_then(|k| k.as_str()) == Some(crate::otelcol::KIND) {
                let c = crate::otelcol::Collector::from_object(&doc, &default_ns)
                    .map_err(|e| anyhow::anyhow!("{origin}: document {i}: {e}"))?;
                view = view.with_collector(c);
                continue;
            }
            let inst: Instrumentation = serde_path_to_error::deserialize(&doc).map_err(|e| {
                anyhow::anyhow!("{origin}: document {i}: {}: {}", e.path(), e.inner())
            })?;
            if inst.metadata.name.as_deref().unwrap_or_default().is_empty() {
                anyhow::bail!(
                    "{origin}: document {i}: metadata.name: an Instrumentation needs a name"
                );
            }
            let problems = inst.spec.validate();
            if let Some(pr) = problems.first() {
                anyhow::bail!("{origin}: document {i}: spec.{pr}");
            }
            view = view.with_instrumentation(inst, &default_ns);
        }
    }
    Ok((config, view, default_ns))
}

pub(crate) fn inject_cmd(args: &InjectArgs, explain: bool) -> anyhow::Result<()> {
    let (config, view, default_ns) = offline_inputs(args)?;
    let origin = if args.filename.as_os_str() == "-" {
        "<stdin>".to_string()
    } else {
        args.filename.display().to_string()
    };
    let text = read_input(&args.filename)?;
    let inputs = manifest::Inputs {
        config: &config,
        view: &view,
        default_namespace: &default_ns,
        // Offline: `sidecar.native: auto` means native (SPEC §5, docs/INJECTION.md).
        server_version: None,
    };
    let processed = manifest::process(&text, &origin, &inputs)?;
    let out = if explain {
        manifest::explain(&origin, &processed.reports)
    } else {
        for r in &processed.reports {
            for w in &r.outcome.warnings {
                eprintln!("{origin}[{}] {}: {w}", r.index, r.workload);
            }
        }
        manifest::to_yaml(&processed.documents).context("cannot write YAML")?
    };
    match &args.output {
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

//! `rollout plan|apply`: the staleness table and the paced restarts, from
//! the command line.

use crate::cli::args::{PlanOutput, RolloutApplyArgs, RolloutPlanArgs, RolloutScope};
use crate::config::ClusterMode;
use crate::config::Config;
use std::process::ExitCode;
use std::time::Duration;

async fn rollout_inputs(
    args: &RolloutScope,
) -> anyhow::Result<(kube::Client, Vec<crate::rollout::Assessment>)> {
    let config = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let Some((client, _)) = crate::cluster::connect(ClusterMode::On).await? else {
        anyhow::bail!("rollout needs a cluster (kubeconfig or in-cluster service account)");
    };
    let all = crate::rollout::cluster::plan(
        client.clone(),
        &args.namespaces,
        &config,
        Duration::from_secs(30),
    )
    .await?;
    Ok((client, all))
}

pub(crate) async fn rollout_apply(args: &RolloutApplyArgs) -> anyhow::Result<ExitCode> {
    use crate::rollout::cluster::Restart;
    use std::io::IsTerminal as _;
    let (client, all) = rollout_inputs(&args.scope).await?;
    let terminal = std::io::stderr().is_terminal();
    let progress = |a: &crate::rollout::Assessment, r: Option<&Restart>| {
        let what = format!("{} {}/{}", a.kind.as_str(), a.namespace, a.name);
        match r {
            None if terminal => eprint!("\r\x1b[K… restarting {what}"),
            None => {}
            Some(r) => {
                let end = match r {
                    Restart::Done(s) => format!("restarted {what}, available after {s}s"),
                    Restart::NotAvailable => {
                        format!("restarted {what}, NOT available within the timeout")
                    }
                    Restart::Failed(e) => format!("FAILED {what}: {e}"),
                    Restart::Planned => format!("would restart {what} ({})", a.reason),
                };
                if terminal {
                    eprintln!("\r\x1b[K{end}");
                } else {
                    eprintln!("{end}");
                }
            }
        }
    };
    let results = crate::rollout::cluster::apply(
        &client,
        &all,
        args.max,
        args.dry_run,
        args.timeout,
        &progress,
    )
    .await;
    let count = |f: fn(&Restart) -> bool| results.iter().filter(|(_, r)| f(r)).count();
    let done = count(|r| matches!(r, Restart::Done(_)));
    let slow = count(|r| matches!(r, Restart::NotAvailable));
    let failed = count(|r| matches!(r, Restart::Failed(_)));
    let planned = count(|r| matches!(r, Restart::Planned));
    let skipped = all
        .iter()
        .filter(|a| a.stale && a.not_restartable.is_some())
        .count();
    println!(
        "rollout: {done} restarted, {slow} not available in time, {failed} failed, {planned} planned (dry run), {skipped} stale but not restartable"
    );
    Ok(if failed + slow > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

pub(crate) async fn rollout_plan(args: &RolloutPlanArgs) -> anyhow::Result<ExitCode> {
    let (_, all) = rollout_inputs(&args.scope).await?;
    match args.output {
        PlanOutput::Table => print!("{}", crate::rollout::table(&all)),
        PlanOutput::Json => println!("{}", serde_json::to_string_pretty(&all)?),
    }
    let restartable = all.iter().any(|a| a.stale && a.not_restartable.is_none());
    Ok(if restartable {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

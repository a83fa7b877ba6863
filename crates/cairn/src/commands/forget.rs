//! `cairn forget`: apply retention policies (or remove named snapshots).
//!
//! Snapshots are grouped (by host and job unless `--group-by` says otherwise; safety copies
//! tagged `pre-restore` always form groups of their own, so they never take a regular
//! backup's place in a bucket). Each group gets the policy from the command line, or else
//! its job's `retention` from the config file; a group without a policy is left alone. The
//! rules are in `cairn_repo::retention` and docs/retention.md.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use cairn_repo::retention::{self, Candidate, Decision, Policy};
use cairn_repo::{Id, Repository, Snapshot};
use serde::Serialize;

use crate::cli::{ForgetArgs, Global};
use crate::config::Config;
use crate::settings;

/// One group's plan.
#[derive(Debug, Serialize)]
pub struct GroupPlan {
    pub host: Option<String>,
    pub job: Option<String>,
    pub tags: Option<Vec<String>>,
    /// Where the policy came from: `command line`, `job NAME`, or `none` (left alone).
    pub policy: String,
    pub snapshots: Vec<Verdict>,
}

#[derive(Debug, Serialize)]
pub struct Verdict {
    pub id: String,
    pub time: String,
    #[serde(flatten)]
    pub decision: Decision,
}

pub fn run(global: &Global, args: &ForgetArgs) -> Result<()> {
    let config = settings::config(global)?;
    let target = settings::repo_target(global, config.as_ref())?;
    let repo = settings::open_target(global, &target)?;
    let cli_policy = policy_from_args(args)?;
    let plans = if args.snapshots.is_empty() {
        plan(&repo, config.as_ref(), cli_policy.as_ref(), args)?
    } else {
        if cli_policy.is_some() {
            bail!("give either snapshot ids or --keep-* rules, not both");
        }
        named(&repo, &args.snapshots)?
    };
    if !args.dry_run {
        remove(&repo, &plans)?;
    }
    report(global, args, &plans)
}

/// `--keep-*` flags as a policy; `None` when none is given.
fn policy_from_args(args: &ForgetArgs) -> Result<Option<Policy>> {
    let within = match &args.keep_within {
        Some(w) => Some(crate::config::parse_duration(w).ok_or_else(|| {
            anyhow::anyhow!("cannot read --keep-within {w:?}\nhint: write it like 30d, 2w, 12h, 6m or 1y")
        })?),
        None => None,
    };
    let policy = Policy {
        last: args.keep_last,
        hourly: args.keep_hourly,
        daily: args.keep_daily,
        weekly: args.keep_weekly,
        monthly: args.keep_monthly,
        yearly: args.keep_yearly,
        within,
        tags: args.keep_tags.clone(),
    };
    Ok((!policy.is_empty()).then_some(policy))
}

/// Host, job and tags (each only when grouped by), and whether these are safety copies.
type GroupKey = (Option<String>, Option<String>, Option<Vec<String>>, bool);

/// The plan for every group: what each policy keeps and removes.
fn plan(repo: &Repository, config: Option<&Config>, cli: Option<&Policy>, args: &ForgetArgs) -> Result<Vec<GroupPlan>> {
    let by = GroupBy::parse(&args.group_by)?;
    let mut groups: BTreeMap<GroupKey, Vec<(Id, Snapshot)>> = BTreeMap::new();
    for (id, snap) in repo.snapshots()? {
        if args.job.as_ref().is_some_and(|j| snap.job.as_ref() != Some(j)) {
            continue;
        }
        if args.host.as_ref().is_some_and(|h| &snap.host != h) {
            continue;
        }
        let safety = snap.tags.iter().any(|t| t == super::PRE_RESTORE);
        let mut tags = snap.tags.clone();
        tags.sort();
        let key = (
            by.host.then(|| snap.host.clone()),
            by.job.then(|| snap.job.clone()).flatten(),
            by.tags.then_some(tags),
            safety,
        );
        groups.entry(key).or_default().push((id, snap));
    }
    let mut plans = Vec::new();
    for ((host, job, tags, safety), members) in groups {
        let (policy, source) = match (cli, job_policy(config, &members, safety)) {
            (Some(p), _) => (Some(p.clone()), "command line".to_string()),
            (None, Some((name, p))) => (Some(p), format!("job {name}")),
            (None, None) => (None, "none".to_string()),
        };
        let decisions = match &policy {
            Some(p) => {
                let candidates: Vec<Candidate> =
                    members.iter().map(|(_, s)| Candidate { time: s.time, tags: &s.tags }).collect();
                retention::apply(&candidates, p)
            }
            None => members.iter().map(|_| Decision { keep: true, reasons: vec!["no policy".into()] }).collect(),
        };
        let mut snapshots: Vec<Verdict> = members
            .iter()
            .zip(decisions)
            .map(|((id, s), decision)| Verdict { id: id.to_hex(), time: s.time.to_rfc3339(), decision })
            .collect();
        snapshots.reverse();
        plans.push(GroupPlan { host, job, tags, policy: source, snapshots });
    }
    if cli.is_none() && plans.iter().all(|p| p.policy == "none") {
        bail!(
            "no retention policy applies to these snapshots\nhint: pass --keep-daily N (and the like), or set `retention` on the job in cairn.toml"
        );
    }
    Ok(plans)
}

/// The job's retention from the config, for a group of that job's regular snapshots.
fn job_policy(config: Option<&Config>, members: &[(Id, Snapshot)], safety: bool) -> Option<(String, Policy)> {
    if safety {
        return None;
    }
    let name = members.first()?.1.job.clone()?;
    if members.iter().any(|(_, s)| s.job.as_ref() != Some(&name)) {
        return None;
    }
    let retention = config?.file.jobs.get(&name)?.retention.as_ref()?;
    Some((name, Config::policy(retention)?))
}

/// Snapshots named on the command line, removed whatever any policy says.
fn named(repo: &Repository, specs: &[String]) -> Result<Vec<GroupPlan>> {
    let all = repo.snapshots()?;
    let mut snapshots = Vec::new();
    for spec in specs {
        if spec == "latest" {
            bail!("`forget latest` is refused: name the snapshot by its id");
        }
        let (id, snap) = Repository::resolve(&all, spec)?;
        snapshots.push(Verdict {
            id: id.to_hex(),
            time: snap.time.to_rfc3339(),
            decision: Decision { keep: false, reasons: vec!["named".into()] },
        });
    }
    Ok(vec![GroupPlan { host: None, job: None, tags: None, policy: "named".into(), snapshots }])
}

fn remove(repo: &Repository, plans: &[GroupPlan]) -> Result<()> {
    for v in plans.iter().flat_map(|p| &p.snapshots).filter(|v| !v.decision.keep) {
        let id: Id = v.id.parse().map_err(|_| anyhow::anyhow!("bad snapshot id {}", v.id))?;
        repo.delete_snapshot(&id)?;
    }
    Ok(())
}

/// Apply the job's retention after a backup (`auto_forget = true`); returns how many
/// snapshots were removed.
pub fn after_backup(repo: &Repository, config: &Config, job: &str, host: &str) -> Result<usize> {
    let Some(policy) = config.job(job)?.retention.as_ref().and_then(Config::policy) else { return Ok(0) };
    let members: Vec<(Id, Snapshot)> = repo
        .snapshots()?
        .into_iter()
        .filter(|(_, s)| s.job.as_deref() == Some(job) && s.host == host)
        .filter(|(_, s)| !s.tags.iter().any(|t| t == super::PRE_RESTORE))
        .collect();
    let candidates: Vec<Candidate> = members.iter().map(|(_, s)| Candidate { time: s.time, tags: &s.tags }).collect();
    let mut removed = 0;
    for ((id, _), d) in members.iter().zip(retention::apply(&candidates, &policy)) {
        if !d.keep {
            repo.delete_snapshot(id)?;
            removed += 1;
        }
    }
    Ok(removed)
}

struct GroupBy {
    host: bool,
    job: bool,
    tags: bool,
}

impl GroupBy {
    fn parse(text: &str) -> Result<GroupBy> {
        let mut by = GroupBy { host: false, job: false, tags: false };
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match word {
                "host" => by.host = true,
                "job" => by.job = true,
                "tags" => by.tags = true,
                other => bail!("cannot group by {other:?}\nhint: --group-by takes host, job and tags, comma-separated (or '' for one group)"),
            }
        }
        Ok(by)
    }
}

fn report(global: &Global, args: &ForgetArgs, plans: &[GroupPlan]) -> Result<()> {
    if args.json {
        return super::print_json(&plans);
    }
    let removed = plans.iter().flat_map(|p| &p.snapshots).filter(|v| !v.decision.keep).count();
    if global.quiet {
        return Ok(());
    }
    for plan in plans {
        let mut what = Vec::new();
        if let Some(job) = &plan.job {
            what.push(format!("job {job}"));
        }
        if let Some(host) = &plan.host {
            what.push(format!("host {host}"));
        }
        if let Some(tags) = plan.tags.as_ref().filter(|t| !t.is_empty()) {
            what.push(format!("tags {}", tags.join(",")));
        }
        let keep = plan.snapshots.iter().filter(|v| v.decision.keep).count();
        outln!(
            "{} (policy: {}): keep {keep}, remove {}",
            if what.is_empty() { "all snapshots".to_string() } else { what.join(", ") },
            plan.policy,
            plan.snapshots.len() - keep
        )?;
        for v in &plan.snapshots {
            let time = chrono::DateTime::parse_from_rfc3339(&v.time)
                .map(|t| t.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_else(|_| v.time.clone());
            let verdict = if v.decision.keep { "keep  " } else { "remove" };
            let why = if v.decision.keep { v.decision.reasons.join(", ") } else { String::new() };
            outln!("  {verdict}  {}  {time}  {why}", &v.id[..8])?;
        }
    }
    let verb = if args.dry_run { "would remove" } else { "removed" };
    outln!(
        "{verb} {removed} snapshot(s){}",
        if removed > 0 { "; their data stays in the repository until it is pruned" } else { "" }
    )?;
    Ok(())
}

//! Reloads: the configuration is read off the pipeline thread, then swapped in whole.

use anyhow::Result;
use tracing::{info, warn};

use super::{
    Loaded, Pipeline, Trigger,
    decisions::{cgroup_workload, kills_after_fact},
};
use crate::{
    audit::record::{FileHash, LoadInfo, LoadedItem, Payload},
    metrics::METRICS,
    prefilter::Prefilter,
    respond::Responder,
    rules::Engine,
    workload::WorkloadInfo,
};

/// The audit record of a policy set being put in force.
pub(super) fn policy_load(
    files: Vec<FileHash>,
    policies: &[crate::policy::Policy],
    detect_only: bool,
    reload: bool,
) -> Payload {
    Payload::PolicyLoad(LoadInfo {
        files,
        // The effective mode: the report's rollout view lists detect-mode policies.
        items: policies
            .iter()
            .map(|p| LoadedItem {
                name: p.name.clone(),
                mode: if detect_only {
                    "detect".into()
                } else {
                    p.mode.as_str().into()
                },
                learned_to: p.learned.as_ref().map(|l| l.to.clone()),
            })
            .collect(),
        reload,
    })
}

/// The kernel prefilter for a rule set and policies (docs/performance.md), and what workload
/// summaries need (`learn`: every write and connect, opens of the sensitive files).
pub(super) fn derive_prefilter(
    engine: &Engine,
    policies: &[crate::policy::Policy],
    learn: Option<&crate::learn::Sensitive>,
) -> Prefilter {
    Prefilter::derive(
        &engine.rules,
        &crate::prefilter::Needs {
            // Snapshots keep the recent events the agent receives: those the rules can use.
            everything: false,
            policy_open_paths: policies
                .iter()
                .flat_map(|p| p.open.deny_read.iter().chain(&p.open.deny_write))
                .map(|r| String::from_utf8_lossy(r.prefix_bytes()).into_owned())
                .chain(learn.map(|s| s.prefixes()).unwrap_or_default())
                .collect(),
            // Connects are refused in the kernel (sock_addr programs); only workload summaries
            // need every one.
            policy_connect: learn.is_some(),
            write_paths: learn.map(|_| vec!["/".to_string()]).unwrap_or_default(),
            // Seal refusals are recorded from the failed syscalls (`fanotify` backend).
            no_open_writes: policies.iter().any(|p| !p.open.deny_write.is_empty()),
            enosys_stubs: crate::syscall_links::enosys_stubs().clone(),
        },
    )
}

/// Whether a response takes snapshots (which need each process's recent events).
pub(super) fn takes_snapshots(r: &Responder) -> bool {
    r.active().responses.iter().any(|x| {
        x.actions
            .iter()
            .any(|a| matches!(a, crate::respond::config::Action::Snapshot(_)))
    })
}

impl Pipeline {
    /// Reads and validates the configuration off the pipeline thread; the result comes back
    /// on `done`.
    pub(super) fn request_reload(
        &mut self,
        trigger: Trigger,
        done: &tokio::sync::mpsc::Sender<Loaded>,
    ) {
        let Some(r) = &self.reload else {
            warn!("{}: nothing to reload (guard record)", trigger.as_str());
            return;
        };
        info!(
            trigger = trigger.as_str(),
            "reading the configuration again"
        );
        let sources = r.sources.clone();
        let done = done.clone();
        tokio::task::spawn_blocking(move || {
            let loaded = sources.load();
            let _ = done.blocking_send((trigger, loaded));
        });
    }

    /// Puts a loaded configuration in force, or reports why not (stderr, audit, metrics).
    pub(super) fn finish_reload(&mut self, (trigger, loaded): Loaded) {
        let result = match loaded {
            Err(crate::reload::Invalid(errors)) => Err(errors),
            Ok(cfg) => {
                if trigger == Trigger::FileChange
                    && self.reload.as_ref().is_some_and(|r| r.digest == cfg.digest)
                {
                    tracing::debug!("configuration files unchanged; nothing to reload");
                    return;
                }
                self.apply_config(cfg).map_err(|e| vec![format!("{e:#}")])
            }
        };
        match result {
            Ok(generation) => {
                METRICS.reload(true);
                METRICS.set_policy_generation(generation);
                eprintln!(
                    "guard: reloaded ({}): generation {generation}",
                    trigger.as_str()
                );
            }
            Err(errors) => {
                METRICS.reload(false);
                eprintln!(
                    "guard: reload ({}) refused, the configuration in force is unchanged: {} error(s)",
                    trigger.as_str(),
                    errors.len()
                );
                for e in &errors {
                    eprintln!("{e}");
                }
                if let Some(a) = &self.audit {
                    a.try_record(Payload::ReloadFailed(crate::audit::record::ReloadFailure {
                        trigger: trigger.as_str().into(),
                        errors,
                    }));
                }
            }
        }
    }

    /// Swaps in a validated configuration: rules, policies (kernel maps included, see
    /// `PolicyRuntime::reload`), responses and the kernel prefilter. The prefilter is widened
    /// first and narrowed last, so no event a rule of either set needs is filtered out. On
    /// error before the policies switched, everything stays as it was. Returns the new
    /// generation.
    pub(super) fn apply_config(&mut self, cfg: crate::reload::Config) -> Result<u64> {
        let Some(r) = self.reload.as_mut() else {
            anyhow::bail!("no reload state");
        };
        if self.policy.is_none() && !cfg.policies.is_empty() {
            anyhow::bail!(
                "the new configuration has {} policies, but guard started without any: the policy \
                 programs are loaded at start; restart guard to enforce them",
                cfg.policies.len()
            );
        }
        // Before anything changes: an error here leaves the old configuration whole.
        if let Some(stage) = &self.policy
            && cfg.policies.iter().any(|p| p.exec.deny_new_binaries)
        {
            self.probes
                .ensure_drift(&stage.pin_dir)
                .map_err(|e| e.context("drift tracking for the new policies"))?;
        }
        if let Some(stage) = &self.policy
            && crate::policy::kernel::detects_opens(
                &cfg.policies,
                stage.runtime.enforcer.detect_only,
            )
        {
            self.probes
                .ensure_open_detect(&stage.pin_dir)
                .map_err(|e| e.context("detect-mode open rules for the new policies"))?;
        }
        let next_prefilter = r.prefilter.as_ref().map(|_| {
            derive_prefilter(
                &cfg.engine,
                &cfg.policies,
                self.learn.as_ref().map(|l| l.sensitive()),
            )
        });
        // Unfiltered, with the data syscalls the next rules trace (`none` has none).
        let wide = match &next_prefilter {
            Some(next) => Prefilter::none().with_syscalls_of(next),
            None => Prefilter::none(),
        };
        if let (Some(old), Some(next)) = (&r.prefilter, &next_prefilter) {
            self.probes.widen_prefilter(old, &wide, next)?;
        }
        if let Some(stage) = self.policy.as_mut() {
            let containers = &self.capture.state.containers;
            let mut info = |path: &str| cgroup_workload(containers, path);
            let mut workload = |id: &str| {
                let id = crate::state::container::ContainerId::parse(id)?;
                let meta = containers.lookup(&id);
                (meta.status == crate::state::container::MetaStatus::Ready)
                    .then(|| WorkloadInfo::from_container(&meta, None))
            };
            let after_fact = kills_after_fact(&stage.runtime.enforcer.backend, &cfg.policies);
            if let Err(e) = stage.runtime.reload(
                cfg.policies.clone(),
                &mut self.probes.ebpf,
                &mut info,
                &mut workload,
            ) {
                if let Some(old) = &r.prefilter {
                    self.probes.replace_prefilter(&wide, old)?;
                }
                return Err(e.context("installing the new policies"));
            }
            stage.after_fact = after_fact;
            stage.bindings = Default::default();
        }
        let mut engine = cfg.engine;
        engine.ctx.dns = r.dns.view();
        r.dns.set_names(&engine.rules.dns_names);
        self.engine = Some(engine);
        match (cfg.responses, &self.responder) {
            (Some(set), Some(resp)) => {
                if let Some(w) = resp.replace(set) {
                    warn!("{w}");
                }
            }
            (Some(set), None) => {
                self.responder = Some(Responder::new(
                    set,
                    r.responder_options.clone(),
                    self.audit.clone(),
                ));
            }
            (None, _) => {}
        }
        self.keep_recent = self.responder.as_ref().is_some_and(takes_snapshots);
        if let Some(next) = next_prefilter {
            self.probes.replace_prefilter(&wide, &next)?;
            info!("kernel prefilter: {}", next.summary());
            r.prefilter = Some(next);
        }
        if let Some(a) = &self.audit {
            a.try_record(policy_load(cfg.files, &cfg.policies, r.detect_only, true));
        }
        r.digest = cfg.digest;
        r.generation += 1;
        info!(
            generation = r.generation,
            policies = cfg.policies.len(),
            "configuration reloaded"
        );
        Ok(r.generation)
    }
}

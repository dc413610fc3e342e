//! `guard run` and `guard record`: the pieces of the pipeline, built from the arguments.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
};

use anyhow::{Context, Result};
use tracing::info;

use super::{
    Pipeline, PolicySetup, ReloadState,
    pipeline::Pieces,
    reload_state::{derive_prefilter, policy_load},
};
use crate::{
    audit::{
        AuditConfig, AuditLog,
        record::{AgentInfo, Payload},
    },
    config::{PrintEvents, RecordArgs, RunArgs},
    output::{ChannelConfig, ChannelKind, Format, Outputs},
    prefilter::Prefilter,
    respond::Responder,
};

/// `guard record`: capture only, events on stdout.
pub async fn record(args: RecordArgs) -> Result<ExitCode> {
    let print = if args.raw {
        PrintEvents::Raw
    } else {
        PrintEvents::Model
    };
    let mut p = Pipeline::start(
        &args.capture,
        Pieces {
            print,
            engine: None,
            outputs: None,
            audit: None,
            deny_exec: Vec::new(),
            detect_only: false,
            policy: None,
            prefilter: Prefilter::none(),
            self_protect: None,
            responder: None,
            config_hash: String::new(),
        },
    )?;
    p.pump(&args.capture).await
}

fn responder_options(args: &RunArgs) -> crate::respond::Options {
    crate::respond::Options {
        detect_only: args.detect_only,
        docker_socket: crate::state::docker::DockerConfig {
            socket: args.capture.docker_socket.clone(),
            ..Default::default()
        }
        .pick_socket(),
        ..Default::default()
    }
}

/// `guard run`: the agent.
pub async fn run(args: RunArgs) -> Result<ExitCode> {
    if args.cleanup {
        let n = crate::probes::cleanup_pins(&args.pin_dir)?;
        eprintln!(
            "guard: removed {n} pinned object(s) under {}",
            args.pin_dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into());
    let rule_paths = if args.rules.is_empty() {
        crate::reload::default_rule_paths()
    } else {
        args.rules.clone()
    };
    let sources = crate::reload::Sources {
        rules: rule_paths,
        policies: args.policy.clone(),
        responses: args.responses_path(),
        hostname: hostname.clone(),
        no_container_fields: args.no_container_fields,
    };
    let config = sources.load().map_err(|crate::reload::Invalid(errors)| {
        for e in &errors {
            eprintln!("{e}");
        }
        anyhow::anyhow!(
            "{} error(s) in the configuration; run `guard validate` for details",
            errors.len()
        )
    })?;
    let crate::reload::Config {
        mut engine,
        policies,
        responses,
        files,
        digest,
    } = config;
    // Host names of `fd.*ip.name` checks, resolved off the event path (docs/rules.md).
    let dns = crate::dns::Resolver::start(
        Default::default(),
        std::time::Duration::from_secs(crate::dns::REFRESH_SECS),
        Box::new(crate::dns::system_lookup),
    )
    .context("starting the host name resolver thread")?;
    engine.ctx.dns = dns.view();
    dns.set_names(&engine.rules.dns_names);
    let format = match args.format.as_deref() {
        Some("json") => Format::Json,
        Some(_) => Format::Text,
        None if std::io::IsTerminal::is_terminal(&std::io::stdout()) => Format::Text,
        None => Format::Json,
    };
    let channels = match &args.outputs {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            serde_yaml::from_str::<Vec<ChannelConfig>>(&text).map_err(|e| {
                let at = e
                    .location()
                    .map(|l| format!(":{}:{}", l.line(), l.column()))
                    .unwrap_or_default();
                anyhow::anyhow!("{}{at}: {e}", path.display())
            })?
        }
        None => vec![ChannelConfig {
            name: None,
            min_priority: crate::alert::Priority::Debug,
            queue: 4096,
            kind: ChannelKind::Stdout { format },
        }],
    };
    let output_files = crate::harden::output_files(&channels);
    let outputs = Outputs::start(channels).context("starting outputs")?;
    let config_hash = crate::audit::sha256_hex(format!("{args:?}").as_bytes());
    if args.learn && args.no_audit {
        anyhow::bail!("--learn writes its summaries into the audit log: drop --no-audit");
    }
    let audit = if args.no_audit {
        None
    } else {
        let mut cfg = AuditConfig::new(&args.audit_dir);
        // A restart after a crash must not refuse to run; the loss is recorded at start.
        cfg.recover = true;
        let log = AuditLog::start(cfg, 65_536)
            .with_context(|| format!("opening the audit log in {}", args.audit_dir.display()))?;
        log.try_record(Payload::AgentStart(AgentInfo {
            version: env!("CARGO_PKG_VERSION").into(),
            config_hash: config_hash.clone(),
            hostname: Some(hostname.clone()),
            mode: args.detect_only.then(|| "detect".into()),
            recovery: Vec::new(),
            reason: None,
        }));
        log.try_record(policy_load(files, &policies, args.detect_only, false));
        Some(Arc::new(log))
    };
    let responder = responses.map(|set| {
        info!(responses = set.responses.len(), "responses loaded");
        Responder::new(set, responder_options(&args), audit.clone())
    });
    info!(
        mode = if args.detect_only {
            "detect-only"
        } else {
            "enforce"
        },
        rules = engine
            .rules
            .rules
            .iter()
            .filter(|r| matches!(r.status, crate::rules::RuleStatus::Active))
            .count(),
        "guard starting"
    );
    // Workload summaries for `guard policy learn` go into the audit log (docs/policies.md).
    let learn = args
        .learn
        .then(|| crate::learn::Sensitive::from_rules(&sources.rules));
    let prefilter_on = !args.no_prefilter && args.print_events == PrintEvents::None;
    let prefilter = if prefilter_on {
        derive_prefilter(&engine, &policies, learn.as_ref())
    } else {
        Prefilter::none()
    };
    info!("kernel prefilter: {}", prefilter.summary());
    if let Some(addr) = args.metrics_addr.0 {
        tokio::spawn(crate::metrics::serve(addr));
    }
    let self_protect = (!args.no_self_protect).then(|| {
        let mut config = sources.rules.clone();
        config.extend(sources.policies.iter().cloned());
        config.extend(sources.responses.clone());
        config.extend(args.outputs.clone());
        crate::selfprotect::roots_for(
            config,
            (!args.no_audit).then_some(args.audit_dir.as_path()),
            [
                args.pin_dir.clone(),
                PathBuf::from(crate::respond::quarantine::PIN_DIR),
            ],
            std::fs::read_to_string("/proc/self/cgroup")
                .ok()
                .and_then(|text| {
                    let mount = crate::sysfs::cgroup2_mount()?;
                    crate::selfprotect::agent_cgroup(&text, Path::new(&mount))
                }),
        )
    });
    let mut p = Pipeline::start(
        &args.capture,
        Pieces {
            print: args.print_events,
            engine: Some(engine),
            outputs: Some(outputs),
            audit,
            deny_exec: args.deny_exec_cgroup.clone(),
            detect_only: args.detect_only,
            policy: (!policies.is_empty()).then(|| PolicySetup {
                policies,
                detect_only: args.detect_only,
                pin_dir: args.pin_dir.clone(),
                hostname: hostname.clone(),
                backend: args.policy_backend,
            }),
            prefilter: prefilter.clone(),
            self_protect,
            responder,
            config_hash,
        },
    )?;
    // Least privilege (docs/hardening.md): everything that needs more is loaded by now.
    crate::harden::after_start(&args, &sources.rules, output_files, p.responder.as_ref()).await?;
    p.learn = learn.map(crate::learn::Summaries::new);
    p.reload = Some(ReloadState {
        watch: !args.no_watch,
        sources,
        digest,
        generation: 1,
        detect_only: args.detect_only,
        responder_options: responder_options(&args),
        prefilter: prefilter_on.then_some(prefilter),
        dns,
    });
    p.pump(&args.capture).await
}

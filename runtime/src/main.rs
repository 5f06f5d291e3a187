//! The `connectd` binary: `connectd --config 'pipelines/*.yaml'` runs pipelines,
//! `connectd validate --config ...` checks them.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};
use connectd_runtime::{admin, component_docs, config, metrics::Metrics, registry, worker};

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "connectd",
    version,
    about = "A connector runtime: YAML pipelines from APIs and files into databases, exactly once."
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run pipelines (the default).
    Run(RunArgs),
    /// Check pipeline files without running them; exit 1 with every problem listed.
    Validate(ConfigArgs),
    /// Run the `tests:` of pipeline files in-process (given records in, the sinks'
    /// records compared with the expected ones; no external service); exit 1 if any
    /// test fails.
    Test(TestArgs),
    /// Print a running worker's pipelines and their state (from its admin API).
    Status(StatusArgs),
    /// Print the records leaving a component of a running pipeline (a sink: reaching
    /// it), one JSON line each, as they pass.
    Tap(TapArgs),
    /// Show a running worker's components with their rates, lag, checkpoint age and
    /// errors, refreshed in place.
    Top(TopArgs),
    /// Evaluate a filter or map expression against a record, to try it out.
    Eval(EvalArgs),
    /// List the component types: every source, transform and sink, with what it does.
    List,
    /// Print a component type's options: type, default, whether required, what it does.
    Describe(DescribeArgs),
    /// Print a JSON Schema for pipeline files (for editors' YAML language servers:
    /// `connectd schema > connectd.schema.json`).
    Schema,
    /// Print a shell completion script (e.g. `connectd completions bash > /etc/bash_completion.d/connectd`).
    Completions(CompletionsArgs),
    /// Write and try WASM transform plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

#[derive(Subcommand, Debug)]
enum PluginCommand {
    /// Write a ready-to-build plugin project in a new directory <name>.
    New(PluginNewArgs),
    /// Run a plugin over sample records; print what it emits (`{"out": record}`) and
    /// what it sends to the dead-letter queue (`{"dlq": ...}`), one JSON line each. Its
    /// prints and logs go to stderr. Exit 1 if it cannot load or fails.
    Test(PluginTestArgs),
}

#[derive(ValueEnum, Debug, Clone, Copy)]
enum PluginLanguage {
    Rust,
    Python,
    Js,
}

#[derive(Args, Debug, Clone)]
struct PluginNewArgs {
    /// The plugin's name (letters, digits, `-`, `_`).
    name: String,
    /// The language to write it in.
    #[arg(long, value_enum, default_value_t = PluginLanguage::Rust)]
    lang: PluginLanguage,
    /// The directory to create it in.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// The connectd-sdk a Rust plugin depends on, as a path (default: the SDK this
    /// binary was built from, if its sources are still there; else crates.io).
    #[arg(long)]
    sdk: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
struct PluginTestArgs {
    /// The plugin: a WebAssembly component (.wasm).
    #[arg(long)]
    module: PathBuf,
    /// The plugin's `config`, as JSON.
    #[arg(long, default_value = "{}")]
    config: String,
    /// Sample input: one JSON value per line (the record's value).
    #[arg(long)]
    input: PathBuf,
    /// Input lines are whole records: `{"key", "value", "timestamp", "headers"}`.
    #[arg(long)]
    records: bool,
    /// Records per `process` call.
    #[arg(long, default_value_t = 1024)]
    batch_size: usize,
    /// `limits` as in a pipeline, as JSON, e.g. '{"memory": "128MiB", "timeout": "2s"}'.
    #[arg(long)]
    limits: Option<String>,
    /// Grant `clock` and/or `random` (as `allow` in a pipeline).
    #[arg(long, value_delimiter = ',')]
    allow: Vec<String>,
}

#[derive(Args, Debug, Clone)]
struct DescribeArgs {
    /// The component type, as written after `type:` (e.g. `csv`, `window`).
    type_name: String,
}

#[derive(Args, Debug, Clone)]
struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

#[derive(Args, Debug, Clone)]
struct StatusArgs {
    #[command(flatten)]
    admin: AdminArgs,
}

/// How to reach a running worker's admin API.
#[derive(Args, Debug, Clone)]
struct AdminArgs {
    /// The worker's --admin-addr (`host:port`), or its URL: `https://host:port` for a
    /// worker serving the API over TLS.
    #[arg(long, env = "CONNECTD_ADMIN_ADDR", default_value = "127.0.0.1:8083")]
    admin_addr: String,
    /// A PEM file of CA certificates to trust besides the system's, for https://.
    #[arg(long, env = "CONNECTD_ADMIN_CA_CERT")]
    ca_cert: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
struct TapArgs {
    /// `<pipeline>/<component>`.
    target: String,
    /// Records to print before ending; 0: until interrupted.
    #[arg(long, default_value_t = 100)]
    limit: u64,
    /// The share of records to print, above 0 and at most 1 (0.1: every tenth).
    #[arg(long, default_value_t = 1.0)]
    sample: f64,
    #[command(flatten)]
    admin: AdminArgs,
}

#[derive(Args, Debug, Clone)]
struct TopArgs {
    /// How often the screen is refreshed.
    #[arg(long, default_value = "1s", value_parser = parse_interval)]
    interval: std::time::Duration,
    /// Stop after this many screens (default: until interrupted).
    #[arg(long)]
    iterations: Option<u64>,
    #[command(flatten)]
    admin: AdminArgs,
}

fn parse_interval(s: &str) -> Result<std::time::Duration, String> {
    connectd_sdk::config::parse_duration(s)
}

#[derive(Args, Debug, Clone)]
struct EvalArgs {
    /// The expression, e.g. `usage > 90 and host == 'doc'`.
    expr: String,
    /// The record's value, as JSON.
    #[arg(long, default_value = "{}")]
    record: String,
}

#[derive(Args, Debug, Clone)]
struct ConfigArgs {
    /// Pipeline files or quoted globs ('pipelines/*.yaml'); repeatable.
    #[arg(long, short = 'c', env = "CONNECTD_CONFIG", num_args = 1.., required = true)]
    config: Vec<String>,
    /// Where checkpoints and other state are kept.
    #[arg(long, env = "CONNECTD_STATE_DIR", default_value = "./.connectd")]
    state_dir: PathBuf,
    /// The worker file (worker name, Kafka connection settings).
    #[arg(long, env = "CONNECTD_WORKER")]
    worker: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
struct TestArgs {
    /// Pipeline files or quoted globs ('pipelines/*.yaml').
    #[arg(required = true)]
    files: Vec<String>,
    /// The worker file (worker name, Kafka connection settings).
    #[arg(long, env = "CONNECTD_WORKER")]
    worker: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
struct RunArgs {
    /// Pipeline files or quoted globs ('pipelines/*.yaml'); repeatable.
    #[arg(long, short = 'c', env = "CONNECTD_CONFIG", num_args = 1..)]
    config: Vec<String>,
    /// Where checkpoints, keyed state and the instance id are kept.
    #[arg(long, env = "CONNECTD_STATE_DIR", default_value = "./.connectd")]
    state_dir: PathBuf,
    /// The worker file (worker name, Kafka connection settings).
    #[arg(long, env = "CONNECTD_WORKER")]
    worker: Option<PathBuf>,
    /// Log lines as text or as JSON objects (one per line).
    #[arg(long, env = "CONNECTD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Address of the admin HTTP server (/metrics, /healthz); `off` disables it.
    #[arg(long, env = "CONNECTD_ADMIN_ADDR", default_value = "127.0.0.1:8083")]
    admin_addr: String,
    /// Serve the admin API over HTTPS with this PEM certificate chain (leaf first);
    /// needs --admin-tls-key.
    #[arg(long, env = "CONNECTD_ADMIN_TLS_CERT", requires = "admin_tls_key")]
    admin_tls_cert: Option<PathBuf>,
    /// The PEM private key of --admin-tls-cert.
    #[arg(long, env = "CONNECTD_ADMIN_TLS_KEY", requires = "admin_tls_cert")]
    admin_tls_key: Option<PathBuf>,
    /// Do not watch the pipeline files; re-read them on SIGHUP only.
    #[arg(long, env = "CONNECTD_NO_WATCH")]
    no_watch: bool,
    /// A folder of pipeline files (`*.yaml`) that the admin API creates, changes and
    /// deletes; watched like --config. With it the worker runs even with no pipeline.
    #[arg(long, env = "CONNECTD_PIPELINES_DIR")]
    pipelines_dir: Option<PathBuf>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

/// The log filter without `RUST_LOG`: connectd's own lines at `info`; the state
/// store's (fjall, lsm-tree), which log every database opened, table recovered and
/// table file written at `info`, only from `warn`.
const DEFAULT_LOG_FILTER: &str = "info,fjall=warn,lsm_tree=warn";

/// Logs to stderr, filtered by `RUST_LOG` (else `DEFAULT_LOG_FILTER`); the filter can
/// be changed at runtime through the returned levels (`/admin/loggers`).
fn init_logging(format: LogFormat) -> Arc<connectd_runtime::log_levels::LogLevels> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let base = std::env::var("RUST_LOG")
        .ok()
        .filter(|f| tracing_subscriber::EnvFilter::try_new(f).is_ok())
        .unwrap_or_else(|| DEFAULT_LOG_FILTER.into());
    let filter = tracing_subscriber::EnvFilter::new(&base);
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    // Colours only on a terminal: not in log files and pipes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Json => registry.with(layer.json()).init(),
        LogFormat::Text => registry.with(layer).init(),
    }
    Arc::new(connectd_runtime::log_levels::LogLevels::new(
        base,
        Box::new(move |f| handle.reload(f).map_err(|e| e.to_string())),
    ))
}

/// Loads the worker file and every pipeline; also returns the loader that builds a
/// pipeline again (resume, restart).
fn load(
    patterns: &[String],
    state_dir: &std::path::Path,
    worker: Option<&std::path::Path>,
) -> Result<(Vec<config::PipelinePlan>, worker::Loader), ExitCode> {
    load_with(patterns, None, state_dir, worker)
}

/// The same, plus the pipelines directory's `*.yaml` (which may be empty).
fn load_with(
    required: &[String],
    pipelines_dir: Option<&std::path::Path>,
    state_dir: &std::path::Path,
    worker: Option<&std::path::Path>,
) -> Result<(Vec<config::PipelinePlan>, worker::Loader), ExitCode> {
    let worker = config::load_worker(worker).map_err(|p| {
        eprintln!("{p}");
        ExitCode::FAILURE
    })?;
    let report = |p: config::ConfigProblems| {
        eprintln!("{p}");
        ExitCode::FAILURE
    };
    let mut files = if required.is_empty() && pipelines_dir.is_some() {
        Vec::new()
    } else {
        config::expand_paths(required).map_err(report)?
    };
    let mut patterns = required.to_vec();
    if let Some(dir) = pipelines_dir {
        let pattern = format!("{}/*.yaml", dir.display());
        files.extend(config::current_paths(std::slice::from_ref(&pattern)).map_err(report)?);
        patterns.push(pattern);
    }
    let patterns = &patterns;
    let plans = config::load(&files, &registry(), state_dir, &worker).map_err(|p| {
        eprintln!("{p}");
        ExitCode::FAILURE
    })?;
    let loader = worker::Loader {
        patterns: patterns.to_vec(),
        registry: registry(),
        state_dir: state_dir.to_path_buf(),
        worker,
    };
    Ok((plans, loader))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Validate(args)) => {
            match load(&args.config, &args.state_dir, args.worker.as_deref()) {
                Ok((plans, _)) => {
                    for p in &plans {
                        println!(
                            "ok: {} ({}): {} source(s), {} transform(s), {} sink(s)",
                            p.name,
                            p.file.display(),
                            p.sources.len(),
                            p.transforms.len(),
                            p.sinks.len()
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(code) => code,
            }
        }
        Some(Command::Test(args)) => test(&args),
        Some(Command::Run(args)) => run(args),
        Some(Command::Status(args)) => status(&args),
        Some(Command::Tap(args)) => tap(&args),
        Some(Command::Top(args)) => top(&args),
        Some(Command::Eval(args)) => eval(&args),
        Some(Command::List) => {
            for c in component_docs::components(&registry()) {
                println!(
                    "{:<9} {:<10} {}",
                    c.kind.as_str(),
                    c.type_name,
                    c.description
                );
            }
            ExitCode::SUCCESS
        }
        Some(Command::Describe(args)) => {
            let found = component_docs::find(&registry(), &args.type_name);
            if found.is_empty() {
                eprintln!(
                    "connectd: no component type `{}` (`connectd list` shows them)",
                    args.type_name
                );
                return ExitCode::FAILURE;
            }
            let texts: Vec<String> = found.iter().map(component_docs::describe_text).collect();
            print!("{}", texts.join("\n"));
            ExitCode::SUCCESS
        }
        Some(Command::Schema) => {
            let schema = component_docs::pipeline_schema(&registry());
            println!(
                "{}",
                serde_json::to_string_pretty(&schema).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Some(Command::Completions(args)) => {
            use clap::CommandFactory;
            clap_complete::generate(
                args.shell,
                &mut Cli::command(),
                "connectd",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Some(Command::Plugin(command)) => plugin(command),
        None => run(cli.run),
    }
}

fn plugin(command: PluginCommand) -> ExitCode {
    use connectd_runtime::{plugin_new, plugin_test};
    match command {
        PluginCommand::New(args) => {
            let lang = match args.lang {
                PluginLanguage::Rust => plugin_new::Language::Rust,
                PluginLanguage::Python => plugin_new::Language::Python,
                PluginLanguage::Js => plugin_new::Language::Js,
            };
            match plugin_new::create(&args.name, lang, &args.dir, args.sdk.as_deref()) {
                Ok(dir) => {
                    println!("created {} (see its README.md)", dir.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        PluginCommand::Test(args) => {
            init_logging(LogFormat::Text);
            let test = plugin_test::PluginTest {
                module: args.module,
                config: args.config,
                input: args.input,
                records: args.records,
                batch_size: args.batch_size,
                limits: args.limits,
                allow: args.allow,
            };
            match plugin_test::run(&test) {
                Ok(outcome) => {
                    for line in outcome.lines() {
                        println!("{line}");
                    }
                    eprintln!(
                        "{} output record(s), {} dead letter(s)",
                        outcome.outputs.len(),
                        outcome.dead_letters.len()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Prints the expression's value on the record as JSON; exit 1 with the error (and
/// its position) otherwise.
fn eval(args: &EvalArgs) -> ExitCode {
    let value: serde_json::Value = match serde_json::from_str(&args.record) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: --record is not JSON: {e}");
            return ExitCode::FAILURE;
        }
    };
    let expr = match connectd_sdk::expr::Expr::parse(&args.expr) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let record = connectd_sdk::Record::new(connectd_sdk::Value::from_json(&value));
    match expr.eval(&record) {
        Ok(v) => {
            println!("{}", v.to_json());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: RunArgs) -> ExitCode {
    if args.config.is_empty() && args.pipelines_dir.is_none() {
        eprintln!("error: no pipelines given: use --config <file-or-glob> or --pipelines-dir <folder> (see connectd --help)");
        return ExitCode::FAILURE;
    }
    let log_levels = init_logging(args.log_format);
    if let Some(dir) = &args.pipelines_dir {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!(
                "error: cannot create --pipelines-dir {}: {e}",
                dir.display()
            );
            return ExitCode::FAILURE;
        }
    }
    let (plans, loader) = match load_with(
        &args.config,
        args.pipelines_dir.as_deref(),
        &args.state_dir,
        args.worker.as_deref(),
    ) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let watched = loader.patterns.clone();
    let validator = Arc::new(admin::Validator {
        registry: registry(),
        state_dir: loader.state_dir.clone(),
        worker: loader.worker.clone(),
    });
    let runtime = match async_runtime(tokio::runtime::Builder::new_multi_thread()) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        let metrics = Metrics::new();
        let ready = Arc::new(AtomicBool::new(false));
        let (mut worker, handle) = worker::Worker::new(Some(loader), metrics.clone());
        if args.pipelines_dir.is_some() {
            worker.stay_resident();
        }
        connectd_runtime::config_watch::on_sighup(handle.clone());
        // Kept alive for the whole run: dropping it stops the watching.
        let _watcher = if args.no_watch {
            None
        } else {
            match connectd_runtime::config_watch::watch(&watched, handle.clone()) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!(error = %e, "hot reload by file watching is off: send SIGHUP to reload");
                    None
                }
            }
        };
        if args.admin_addr != "off" {
            let tls = match (&args.admin_tls_cert, &args.admin_tls_key) {
                (Some(cert), Some(key)) => match connectd_runtime::admin_tls::acceptor(cert, key) {
                    Ok(a) => Some(a),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::FAILURE;
                    }
                },
                _ => None,
            };
            let scheme = if tls.is_some() { "https" } else { "http" };
            match admin::serve(
                &args.admin_addr,
                admin::AdminState {
                    metrics: metrics.clone(),
                    ready: ready.clone(),
                    worker: handle,
                    plugins: admin::plugins_of(&registry()),
                    token: std::env::var("CONNECTD_ADMIN_TOKEN")
                        .ok()
                        .filter(|t| !t.is_empty())
                        .map(Arc::from),
                    metrics_token: std::env::var("CONNECTD_METRICS_TOKEN")
                        .ok()
                        .filter(|t| !t.is_empty())
                        .map(Arc::from),
                    hosts: Default::default(),
                    worker_id: "".into(),
                    pipelines_dir: args.pipelines_dir.clone(),
                    validator,
                    log_levels: Some(log_levels),
                },
                tls,
            )
            .await
            {
                Ok(addr) => {
                    tracing::info!(%addr, scheme, "admin server listening (REST API, /metrics, /healthz, /readyz)")
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!(
                "shutdown requested: stopping sources, draining, taking a final checkpoint"
            );
            let _ = stop_tx.send(true);
            // A second signal: the user will not wait for the final checkpoint (a sink
            // that hangs, say). Leaving now is a crash, which exactly-once survives.
            wait_for_signal().await;
            tracing::warn!("a second shutdown signal: exiting now, without a final checkpoint; the next start resumes from the last complete one");
            std::process::exit(SECOND_SIGNAL_EXIT);
        });
        let outcome = worker.run(plans, stop_rx, ready).await;
        if outcome.failed.is_empty() {
            ExitCode::SUCCESS
        } else {
            for (pipeline, e) in &outcome.failed {
                eprintln!("error: pipeline `{pipeline}` failed at {e}");
            }
            ExitCode::FAILURE
        }
    })
}

fn async_runtime(
    mut builder: tokio::runtime::Builder,
) -> Result<tokio::runtime::Runtime, ExitCode> {
    builder.enable_all().build().map_err(|e| {
        eprintln!("error: cannot start the async runtime: {e}");
        ExitCode::FAILURE
    })
}

fn test(args: &TestArgs) -> ExitCode {
    let failed = |p: config::ConfigProblems| {
        eprintln!("{p}");
        ExitCode::FAILURE
    };
    let worker = match config::load_worker(args.worker.as_deref()) {
        Ok(w) => w,
        Err(p) => return failed(p),
    };
    let files = match config::expand_paths(&args.files) {
        Ok(f) => f,
        Err(p) => return failed(p),
    };
    let runtime = match async_runtime(tokio::runtime::Builder::new_multi_thread()) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let outcomes = match runtime.block_on(connectd_runtime::pipeline_test::run(
        &files,
        &registry(),
        &worker,
    )) {
        Ok(o) => o,
        Err(p) => return failed(p),
    };
    let failures = outcomes.iter().filter(|o| o.failure.is_some()).count();
    for o in &outcomes {
        match &o.failure {
            None => println!("ok    {} / {}", o.pipeline, o.test),
            Some(report) => print!("FAIL  {} / {}\n{report}", o.pipeline, o.test),
        }
    }
    println!(
        "{} test(s): {} passed, {failures} failed",
        outcomes.len(),
        outcomes.len() - failures
    );
    if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The CA file of `--ca-cert`, read; `Err` has printed why not.
fn ca_pem(path: Option<&std::path::Path>) -> Result<Option<Vec<u8>>, ExitCode> {
    match path {
        Some(p) => std::fs::read(p).map(Some).map_err(|e| {
            eprintln!("error: --ca-cert {}: {e}", p.display());
            ExitCode::FAILURE
        }),
        None => Ok(None),
    }
}

/// Runs `work` on a one-thread runtime; prints its error.
fn client_command<F: std::future::Future<Output = Result<(), String>>>(work: F) -> ExitCode {
    let runtime = match async_runtime(tokio::runtime::Builder::new_current_thread()) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn tap(args: &TapArgs) -> ExitCode {
    let token = std::env::var("CONNECTD_ADMIN_TOKEN").ok();
    let ca = match ca_pem(args.admin.ca_cert.as_deref()) {
        Ok(ca) => ca,
        Err(code) => return code,
    };
    let req = connectd_runtime::tap_cli::TapRequest {
        addr: &args.admin.admin_addr,
        token: token.as_deref(),
        ca_pem: ca.as_deref(),
        target: &args.target,
        limit: args.limit,
        sample: args.sample,
    };
    client_command(connectd_runtime::tap_cli::run(&req, &mut std::io::stdout()))
}

fn top(args: &TopArgs) -> ExitCode {
    let token = std::env::var("CONNECTD_ADMIN_TOKEN").ok();
    let ca = match ca_pem(args.admin.ca_cert.as_deref()) {
        Ok(ca) => ca,
        Err(code) => return code,
    };
    let req = connectd_runtime::top_cli::TopRequest {
        addr: &args.admin.admin_addr,
        token: token.as_deref(),
        ca_pem: ca.as_deref(),
        interval: args.interval,
        iterations: args.iterations,
    };
    client_command(connectd_runtime::top_cli::run(&req, &mut std::io::stdout()))
}

fn status(args: &StatusArgs) -> ExitCode {
    let token = std::env::var("CONNECTD_ADMIN_TOKEN").ok();
    let ca = match ca_pem(args.admin.ca_cert.as_deref()) {
        Ok(ca) => ca,
        Err(code) => return code,
    };
    client_command(async {
        let table = connectd_runtime::status_cli::table(
            &args.admin.admin_addr,
            token.as_deref(),
            ca.as_deref(),
        )
        .await?;
        print!("{table}");
        Ok(())
    })
}

/// The exit status after a second shutdown signal (128 + SIGINT, as a shell reports
/// an interrupted command).
const SECOND_SIGNAL_EXIT: i32 = 130;

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

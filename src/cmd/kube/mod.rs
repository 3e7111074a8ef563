//! The built-in Kubernetes client: `gabang apply|get|describe|delete|scale`, and the same
//! plus `logs` under `gabang kubectl …` (like `k3s kubectl`: `gabang logs` is the
//! container command). They talk to any Kubernetes-compatible API server — gabang's own
//! (`gabang server` / `gabang up` write ROOT/cluster/admin.kubeconfig) or another — and
//! print what kubectl prints.

pub mod client;
mod describe;
pub mod manifest;
pub mod print;

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use reqwest::Method;
use serde_json::{json, Value};

use client::{encode_query, ApiResource, Client, Discovery, KubeConfig, StatusError};
use print::{StreamTable, TableOptions};

/// How to reach the cluster, and the namespace.
#[derive(clap::Args, Clone, Debug)]
pub struct Conn {
    /// Kubeconfig file (default: $KUBECONFIG, else ROOT/cluster/admin.kubeconfig)
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current-context)
    #[arg(long)]
    pub context: Option<String>,
    /// Namespace (default: the context's, else `default`)
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

/// The client commands available at the top level.
#[derive(clap::Subcommand)]
pub enum KubeCommand {
    /// Create or update objects from manifests (server-side apply, field manager `gabang`)
    Apply(ApplyArgs),
    /// List objects as tables (or json, yaml, names); `-w` to watch
    Get(GetArgs),
    /// Show an object in detail, with its events
    Describe(DescribeArgs),
    /// Delete objects by type and name, by label, or from manifests
    Delete(DeleteArgs),
    /// Set the replicas of a Deployment, ReplicaSet or StatefulSet
    Scale(ScaleArgs),
}

/// `gabang kubectl …` (alias `k`): every client command, `logs` included.
#[derive(clap::Subcommand)]
pub enum KubectlCommand {
    #[command(flatten)]
    Common(KubeCommand),
    /// Print (or follow) a pod's container logs, through the API server
    Logs(PodLogsArgs),
}

#[derive(clap::Args)]
pub struct ApplyArgs {
    /// Manifest file, directory (its .yaml, .yml and .json files) or `-` for stdin
    #[arg(
        short = 'f',
        long = "filename",
        required = true,
        value_name = "FILE|DIR|-"
    )]
    pub files: Vec<String>,
    /// Also read the subdirectories of a directory
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// `name`: print only TYPE/NAME
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// `server`: ask the server to check, not store (`none`: apply)
    #[arg(long, default_value = "none", value_parser = ["none", "server"])]
    pub dry_run: String,
    /// Field manager recorded in managedFields (fields it owned are taken over on apply)
    #[arg(long, default_value = "gabang")]
    pub field_manager: String,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(clap::Args)]
pub struct GetArgs {
    /// TYPE[,TYPE…] [NAME…], or TYPE/NAME…  (types like kubectl: po, deploy, svc, no, all…)
    #[arg(required = true, value_name = "TYPE")]
    pub args: Vec<String>,
    /// Every namespace
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Label selector (`app=web`, `tier in (a,b)`, `!canary`)
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Field selector (`status.phase=Pending`, `spec.nodeName=n1`)
    #[arg(long)]
    pub field_selector: Option<String>,
    /// wide | json | yaml | name
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// After listing, watch for changes
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Watch for changes without listing first
    #[arg(long)]
    pub watch_only: bool,
    /// A LABELS column
    #[arg(long)]
    pub show_labels: bool,
    /// No header row
    #[arg(long)]
    pub no_headers: bool,
    /// Keep metadata.managedFields in json and yaml output
    #[arg(long)]
    pub show_managed_fields: bool,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(clap::Args)]
pub struct DescribeArgs {
    /// TYPE [NAME…] or TYPE/NAME…  (no name: every object of the type)
    #[arg(required = true, value_name = "TYPE")]
    pub args: Vec<String>,
    /// Label selector
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Every namespace
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Leave out the events
    #[arg(long)]
    pub no_events: bool,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(clap::Args)]
pub struct DeleteArgs {
    /// TYPE NAME… or TYPE/NAME…
    #[arg(value_name = "TYPE")]
    pub args: Vec<String>,
    /// Delete the objects of these manifests
    #[arg(short = 'f', long = "filename", value_name = "FILE|DIR|-")]
    pub files: Vec<String>,
    /// Also read the subdirectories of a directory
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Delete the objects of TYPE matching this label selector
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Delete every object of TYPE in the namespace
    #[arg(long)]
    pub all: bool,
    /// What happens to dependents: background, foreground or orphan
    #[arg(long, default_value = "background", value_parser = ["background", "foreground", "orphan", "true", "false"])]
    pub cascade: String,
    /// Seconds the object has to terminate (-1: its own default; 0 with --force: at once)
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    pub grace_period: i64,
    /// Remove at once, without waiting for the node to confirm (with --grace-period=0)
    #[arg(long)]
    pub force: bool,
    /// Same as --grace-period=1
    #[arg(long)]
    pub now: bool,
    /// Wait until the objects are gone
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub wait: bool,
    /// Give up waiting after this long (`30s`, `2m`; 0: no limit)
    #[arg(long, default_value = "0s")]
    pub timeout: String,
    /// A missing object is not an error
    #[arg(long)]
    pub ignore_not_found: bool,
    /// `name`: print only TYPE/NAME
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(clap::Args)]
pub struct ScaleArgs {
    /// TYPE/NAME… or TYPE NAME…
    #[arg(required = true, value_name = "TYPE/NAME")]
    pub args: Vec<String>,
    /// The new number of replicas
    #[arg(long, required = true)]
    pub replicas: i64,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(clap::Args)]
pub struct PodLogsArgs {
    /// The pod (NAME or pod/NAME)
    pub pod: String,
    /// Container (default: the pod's default-container annotation, else its first)
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Keep streaming new lines
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines
    #[arg(long)]
    pub tail: Option<i64>,
    /// The previous (exited) instance of the container
    #[arg(short = 'p', long)]
    pub previous: bool,
    /// Prefix each line with its timestamp
    #[arg(long)]
    pub timestamps: bool,
    #[command(flatten)]
    pub conn: Conn,
}

/// Runs a client command; errors are printed as kubectl prints them, exit code 1.
pub fn run(cmd: KubeCommand, root: &Path) -> Result<i32> {
    finish(match cmd {
        KubeCommand::Apply(a) => apply(a, root),
        KubeCommand::Get(a) => get(a, root),
        KubeCommand::Describe(a) => describe::run(a, root),
        KubeCommand::Delete(a) => delete(a, root),
        KubeCommand::Scale(a) => scale(a, root),
    })
}

pub fn run_kubectl(cmd: KubectlCommand, root: &Path) -> Result<i32> {
    match cmd {
        KubectlCommand::Common(c) => run(c, root),
        KubectlCommand::Logs(a) => finish(logs(a, root)),
    }
}

fn finish(r: Result<i32>) -> Result<i32> {
    match r {
        Ok(code) => Ok(code),
        Err(e) => {
            report(&e);
            Ok(1)
        }
    }
}

/// `Error from server (NotFound): …` for API errors, `error: …` for the rest.
fn report(e: &anyhow::Error) {
    match e.downcast_ref::<StatusError>() {
        Some(s) => eprintln!("{s}"),
        None => eprintln!("error: {e:#}"),
    }
}

/// The client, and the namespace to work in (`-n`, else the context's, else `default`).
pub struct Session {
    pub client: Client,
    pub namespace: String,
    /// Whether `-n` was given.
    pub explicit_ns: bool,
    disco: Option<Discovery>,
}

impl Session {
    pub fn open(conn: &Conn, root: &Path) -> Result<Session> {
        let path = client::kubeconfig_path(conn.kubeconfig.as_deref(), root)?;
        let kc = KubeConfig::load(&path, conn.context.as_deref())?;
        let client = Client::new(kc)?;
        let namespace = conn
            .namespace
            .clone()
            .unwrap_or_else(|| client.namespace.clone());
        Ok(Session {
            client,
            namespace,
            explicit_ns: conn.namespace.is_some(),
            disco: None,
        })
    }

    pub fn discovery(&mut self) -> Result<&Discovery> {
        if self.disco.is_none() {
            self.disco = Some(Discovery::load(&self.client)?);
        }
        self.disco
            .as_ref()
            .ok_or_else(|| anyhow!("discovery did not load"))
    }
}

/// A type and the names asked for (none: all of them).
#[derive(Debug, Clone)]
pub struct Target {
    pub res: ApiResource,
    pub names: Vec<String>,
}

/// kubectl's argument forms: `TYPE[,TYPE…] [NAME…]` or `TYPE/NAME…` (types grouped in
/// the order first seen); `all` is the `all` category.
pub fn targets(disco: &Discovery, args: &[String]) -> Result<Vec<Target>> {
    let Some(first) = args.first() else {
        bail!("you must specify the type of resource (po, deploy, svc, no, all, …)");
    };
    let mut out: Vec<Target> = Vec::new();
    if first.contains('/') {
        for a in args {
            let (t, n) = a.split_once('/').ok_or_else(|| {
                anyhow!("there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (got {a:?})")
            })?;
            if n.is_empty() {
                bail!("arguments in resource/name form must have a single resource and name (got {a:?})");
            }
            let res = disco.resolve(t)?.clone();
            match out.iter_mut().find(|x| x.res == res) {
                Some(x) => x.names.push(n.to_string()),
                None => out.push(Target {
                    res,
                    names: vec![n.to_string()],
                }),
            }
        }
        return Ok(out);
    }
    let names: Vec<String> = args[1..].to_vec();
    for t in first.split(',').filter(|t| !t.is_empty()) {
        let found: Vec<ApiResource> = if t == "all" {
            disco.category("all").into_iter().cloned().collect()
        } else {
            vec![disco.resolve(t)?.clone()]
        };
        for res in found {
            if !out.iter().any(|x| x.res == res) {
                out.push(Target {
                    res,
                    names: names.clone(),
                });
            }
        }
    }
    Ok(out)
}

/// `?labelSelector=…&fieldSelector=…` (empty when neither).
fn selector_query(label: Option<&str>, field: Option<&str>) -> String {
    let mut q = Vec::new();
    if let Some(l) = label.filter(|l| !l.is_empty()) {
        q.push(format!("labelSelector={}", encode_query(l)));
    }
    if let Some(f) = field.filter(|f| !f.is_empty()) {
        q.push(format!("fieldSelector={}", encode_query(f)));
    }
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

// ---------------------------------------------------------------- apply

/// The object without what the server changes by itself (resourceVersion, managedFields,
/// status): equal before and after an apply that changed nothing.
fn comparable(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v["metadata"].as_object_mut() {
        m.remove("resourceVersion");
        m.remove("managedFields");
    }
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    v
}

/// The namespace a manifest's object goes to: its own, else `-n`, else the context's; an
/// explicit `-n` that disagrees with the object's own is an error (as in kubectl).
fn object_namespace(s: &Session, doc_ns: Option<&str>) -> Result<String> {
    match doc_ns {
        Some(d) if s.explicit_ns && d != s.namespace => bail!(
            "the namespace from the provided object {d:?} does not match the namespace {:?}. You must pass '--namespace={d}' to perform this operation.",
            s.namespace
        ),
        Some(d) => Ok(d.to_string()),
        None => Ok(s.namespace.clone()),
    }
}

fn apply(a: ApplyArgs, root: &Path) -> Result<i32> {
    if let Some(o) = a.output.as_deref().filter(|o| *o != "name") {
        bail!("--output {o:?}: apply prints `name` only");
    }
    let docs = manifest::read_all(&a.files, a.recursive)?;
    if docs.is_empty() {
        bail!("no objects passed to apply");
    }
    let mut s = Session::open(&a.conn, root)?;
    s.discovery()?;
    let mut failed = false;
    for doc in &docs {
        match apply_one(&mut s, doc, &a) {
            Ok(line) => println!("{line}"),
            Err(e) => {
                failed = true;
                match e.downcast::<StatusError>() {
                    Ok(st) => {
                        let st = st.context(&format!("error when applying {:?}", doc.source));
                        eprintln!("{st}");
                    }
                    Err(e) => eprintln!("error: {}: {e:#}", doc.location()),
                }
            }
        }
    }
    Ok(i32::from(failed))
}

fn apply_one(s: &mut Session, doc: &manifest::Doc, a: &ApplyArgs) -> Result<String> {
    let res = s
        .discovery()?
        .by_kind(doc.api_version(), doc.kind())?
        .clone();
    let mut obj = doc.object.clone();
    let ns = if res.namespaced {
        let ns = object_namespace(s, doc.namespace())?;
        obj["metadata"]["namespace"] = json!(ns);
        Some(ns)
    } else {
        None
    };
    let name = doc.name().to_string();
    let path = res.path(ns.as_deref(), Some(&name));
    let before = match s.client.get(&path) {
        Ok(v) => Some(v),
        Err(e)
            if e.downcast_ref::<StatusError>()
                .is_some_and(StatusError::is_not_found) =>
        {
            None
        }
        Err(e) => return Err(e),
    };
    let dry = a.dry_run == "server";
    let query = format!(
        "?fieldManager={}&force=true{}",
        encode_query(&a.field_manager),
        if dry { "&dryRun=All" } else { "" }
    );
    let after = s.client.json(
        Method::PATCH,
        &format!("{path}{query}"),
        "application/json",
        Some(("application/apply-patch+yaml", &obj)),
    )?;
    let what = format!("{}/{name}", res.qualified());
    if a.output.as_deref() == Some("name") {
        return Ok(what);
    }
    let verb = match &before {
        None => "created",
        Some(b) if comparable(b) == comparable(&after) => "unchanged",
        Some(_) => "configured",
    };
    Ok(format!(
        "{what} {verb}{}",
        if dry { " (server dry run)" } else { "" }
    ))
}

// ---------------------------------------------------------------- get

#[derive(Debug, Clone, Copy, PartialEq)]
enum Output {
    Table,
    Wide,
    Json,
    Yaml,
    Name,
}

fn output_of(o: Option<&str>) -> Result<Output> {
    Ok(match o {
        None => Output::Table,
        Some("wide") => Output::Wide,
        Some("json") => Output::Json,
        Some("yaml") => Output::Yaml,
        Some("name") => Output::Name,
        Some(other) => bail!(
            "unable to match a printer suitable for the output format {other:?}, allowed formats are: json,name,wide,yaml"
        ),
    })
}

/// What `-o json|yaml` prints of an object: managedFields left out unless asked for.
fn shown(mut item: Value, show_managed_fields: bool) -> Value {
    if !show_managed_fields {
        if let Some(m) = item["metadata"].as_object_mut() {
            m.remove("managedFields");
        }
    }
    item
}

/// An item of a list response, with the apiVersion and kind lists leave out.
fn with_type(mut item: Value, res: &ApiResource) -> Value {
    if item
        .get("apiVersion")
        .is_none_or(|v| v.as_str().unwrap_or("").is_empty())
    {
        item["apiVersion"] = json!(res.api_version());
    }
    if item
        .get("kind")
        .is_none_or(|v| v.as_str().unwrap_or("").is_empty())
    {
        item["kind"] = json!(res.kind);
    }
    item
}

fn get(a: GetArgs, root: &Path) -> Result<i32> {
    let out = output_of(a.output.as_deref())?;
    let mut s = Session::open(&a.conn, root)?;
    let ts = targets(s.discovery()?, &a.args)?;
    if a.all_namespaces && ts.iter().any(|t| !t.names.is_empty()) {
        bail!("a resource cannot be retrieved by name across all namespaces");
    }
    let ns = (!a.all_namespaces).then(|| s.namespace.clone());
    let query = selector_query(a.selector.as_deref(), a.field_selector.as_deref());
    if a.watch || a.watch_only {
        if ts.len() != 1 {
            bail!("watch is only supported on individual resources and resource collections, but {} resource types were given", ts.len());
        }
        return watch(&s, &ts[0], ns.as_deref(), &a, out);
    }
    let multi = ts.len() > 1;
    let mut failed = false;
    let mut stdout = std::io::stdout().lock();
    match out {
        Output::Table | Output::Wide => {
            let mut printed = 0usize;
            for t in &ts {
                let tables = match fetch_tables(&s, t, ns.as_deref(), &query) {
                    Ok(x) => x,
                    Err(e) => {
                        failed = true;
                        report(&e);
                        continue;
                    }
                };
                let (table, errors) = merge_tables(tables);
                for e in errors {
                    failed = true;
                    report(&e);
                }
                let Some(table) = table else { continue };
                if table["rows"].as_array().is_none_or(Vec::is_empty) {
                    continue;
                }
                let opts = TableOptions {
                    wide: out == Output::Wide,
                    namespace_column: ns.is_none() && t.res.namespaced,
                    show_labels: a.show_labels,
                    no_headers: a.no_headers,
                };
                let prefix = multi.then(|| format!("{}/", t.res.qualified()));
                let rows = print::table_rows(&table, opts, prefix.as_deref());
                if printed > 0 {
                    writeln!(stdout)?;
                }
                writeln!(stdout, "{}", print::table_text(&rows))?;
                printed += 1;
            }
            if printed == 0 && !failed {
                no_resources(&ts, ns.as_deref());
            }
        }
        Output::Json | Output::Yaml | Output::Name => {
            let mut items = Vec::new();
            for t in &ts {
                match fetch_objects(&s, t, ns.as_deref(), &query) {
                    Ok((objs, errors)) => {
                        items.extend(
                            objs.into_iter()
                                .map(|o| (t.res.clone(), shown(o, a.show_managed_fields))),
                        );
                        for e in errors {
                            failed = true;
                            report(&e);
                        }
                    }
                    Err(e) => {
                        failed = true;
                        report(&e);
                    }
                }
            }
            let single = ts.len() == 1 && ts[0].names.len() == 1 && a.args[0] != "all";
            match out {
                Output::Name => {
                    for (res, o) in &items {
                        let name = o["metadata"]["name"].as_str().unwrap_or("");
                        writeln!(stdout, "{}/{name}", res.qualified())?;
                    }
                    if items.is_empty() && !failed {
                        no_resources(&ts, ns.as_deref());
                    }
                }
                _ => {
                    let v = if single && items.len() == 1 {
                        items.pop().map(|(_, o)| o).unwrap_or_default()
                    } else if single {
                        Value::Null
                    } else {
                        print::list_of(items.into_iter().map(|(_, o)| o).collect())
                    };
                    if !v.is_null() {
                        let text = if out == Output::Json {
                            print::to_json(&v)?
                        } else {
                            print::to_yaml(&v)?
                        };
                        write!(stdout, "{text}")?;
                    }
                }
            }
        }
    }
    stdout.flush()?;
    Ok(i32::from(failed))
}

fn no_resources(ts: &[Target], ns: Option<&str>) {
    match ns {
        Some(ns) if ts.iter().any(|t| t.res.namespaced) => {
            eprintln!("No resources found in {ns} namespace.")
        }
        _ => eprintln!("No resources found"),
    }
}

/// The Table of a type's list, or one Table per name (an error for each one missing).
fn fetch_tables(
    s: &Session,
    t: &Target,
    ns: Option<&str>,
    query: &str,
) -> Result<Vec<Result<Value>>> {
    let accept = client::ACCEPT_TABLE;
    if t.names.is_empty() {
        let v = s.client.json(
            Method::GET,
            &format!("{}{query}", t.res.path(ns, None)),
            accept,
            None,
        )?;
        return Ok(vec![Ok(v)]);
    }
    Ok(t.names
        .iter()
        .map(|n| {
            s.client
                .json(Method::GET, &t.res.path(ns, Some(n)), accept, None)
        })
        .collect())
}

/// One Table of all the rows (the first Table's columns), and the errors.
fn merge_tables(tables: Vec<Result<Value>>) -> (Option<Value>, Vec<anyhow::Error>) {
    let mut merged: Option<Value> = None;
    let mut errors = Vec::new();
    for t in tables {
        match t {
            Ok(t) => match &mut merged {
                None => merged = Some(t),
                Some(m) => {
                    let rows = t["rows"].as_array().cloned().unwrap_or_default();
                    if let Some(r) = m["rows"].as_array_mut() {
                        r.extend(rows);
                    }
                }
            },
            Err(e) => errors.push(e),
        }
    }
    (merged, errors)
}

/// The objects of a type (list, or each name), and the errors of missing names.
fn fetch_objects(
    s: &Session,
    t: &Target,
    ns: Option<&str>,
    query: &str,
) -> Result<(Vec<Value>, Vec<anyhow::Error>)> {
    if t.names.is_empty() {
        let v = s.client.get(&format!("{}{query}", t.res.path(ns, None)))?;
        let items = v["items"].as_array().cloned().unwrap_or_default();
        return Ok((
            items.into_iter().map(|i| with_type(i, &t.res)).collect(),
            Vec::new(),
        ));
    }
    let mut objs = Vec::new();
    let mut errors = Vec::new();
    for n in &t.names {
        match s.client.get(&t.res.path(ns, Some(n))) {
            Ok(o) => objs.push(with_type(o, &t.res)),
            Err(e) => errors.push(e),
        }
    }
    Ok((objs, errors))
}

/// `get -w`: the list (unless --watch-only), then one line (or object) per change, from the
/// list's resourceVersion; a watch the server ends is resumed from the last version seen.
fn watch(s: &Session, t: &Target, ns: Option<&str>, a: &GetArgs, out: Output) -> Result<i32> {
    if t.names.len() > 1 {
        bail!("watch is only supported on individual resources and resource collections, but {} resources were given", t.names.len());
    }
    let mut field = a.field_selector.clone().unwrap_or_default();
    if let Some(n) = t.names.first() {
        if !field.is_empty() {
            field.push(',');
        }
        field.push_str(&format!("metadata.name={n}"));
    }
    let query = selector_query(a.selector.as_deref(), Some(&field));
    let list_path = format!("{}{query}", t.res.path(ns, None));
    let table_mode = matches!(out, Output::Table | Output::Wide);
    let accept = if table_mode {
        client::ACCEPT_TABLE
    } else {
        "application/json"
    };
    let opts = TableOptions {
        wide: out == Output::Wide,
        namespace_column: ns.is_none() && t.res.namespaced,
        show_labels: a.show_labels,
        no_headers: a.no_headers,
    };
    let list = s.client.json(Method::GET, &list_path, accept, None)?;
    let mut rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_string();
    let columns = list["columnDefinitions"].clone();
    let mut stream = StreamTable::default();
    let mut stdout = std::io::stdout().lock();
    let mut header_done = a.no_headers;
    let mut emit =
        |obj: &Value, header_done: &mut bool, stdout: &mut std::io::StdoutLock| -> Result<()> {
            match out {
                Output::Table | Output::Wide => {
                    let mut table = obj.clone();
                    table["columnDefinitions"] = columns.clone();
                    let mut o = opts;
                    o.no_headers = *header_done;
                    let rows = print::table_rows(&table, o, None);
                    *header_done = true;
                    write!(stdout, "{}", stream.print(&rows))?;
                }
                Output::Json => write!(
                    stdout,
                    "{}",
                    print::to_json(&shown(
                        with_type(obj.clone(), &t.res),
                        a.show_managed_fields
                    ))?
                )?,
                Output::Yaml => write!(
                    stdout,
                    "---\n{}",
                    print::to_yaml(&shown(
                        with_type(obj.clone(), &t.res),
                        a.show_managed_fields
                    ))?
                )?,
                Output::Name => writeln!(
                    stdout,
                    "{}/{}",
                    t.res.qualified(),
                    obj["metadata"]["name"].as_str().unwrap_or("")
                )?,
            }
            stdout.flush()?;
            Ok(())
        };
    if !a.watch_only {
        if table_mode {
            if list["rows"].as_array().is_some_and(|r| !r.is_empty()) {
                emit(&list, &mut header_done, &mut stdout)?;
            }
        } else {
            for item in list["items"].as_array().cloned().unwrap_or_default() {
                emit(&item, &mut header_done, &mut stdout)?;
            }
        }
    }
    let sep = if query.is_empty() { '?' } else { '&' };
    loop {
        let path = format!(
            "{list_path}{sep}watch=true&allowWatchBookmarks=true&resourceVersion={}",
            encode_query(&rv)
        );
        let resp = s.client.send(Method::GET, &path, accept, None, None)?;
        let reader = std::io::BufReader::new(resp);
        for line in reader.lines() {
            let line = line.context("reading the watch stream")?;
            if line.trim().is_empty() {
                continue;
            }
            let ev: Value = serde_json::from_str(&line).context("a watch event is not JSON")?;
            let obj = &ev["object"];
            match ev["type"].as_str().unwrap_or("") {
                "BOOKMARK" => {
                    if let Some(v) = obj["metadata"]["resourceVersion"].as_str() {
                        rv = v.to_string();
                    }
                }
                "ERROR" => {
                    let code = obj["code"].as_u64().unwrap_or(0) as u16;
                    return Err(StatusError::from_response(code, obj.to_string().as_bytes()).into());
                }
                _ => {
                    let meta_rv = if table_mode {
                        obj["rows"][0]["object"]["metadata"]["resourceVersion"].as_str()
                    } else {
                        obj["metadata"]["resourceVersion"].as_str()
                    };
                    if let Some(v) = meta_rv {
                        rv = v.to_string();
                    }
                    emit(obj, &mut header_done, &mut stdout)?;
                }
            }
        }
    }
}

// ---------------------------------------------------------------- delete

/// `30s`, `2m`, `1h`, `0` → seconds.
fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('s') => (&s[..s.len() - 1], 1),
        Some('m') => (&s[..s.len() - 1], 60),
        Some('h') => (&s[..s.len() - 1], 3600),
        _ => (s, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| anyhow!("invalid duration {s:?} (expected e.g. 30s, 2m, 1h)"))?;
    Ok(Duration::from_secs(n * mult))
}

fn delete(a: DeleteArgs, root: &Path) -> Result<i32> {
    if let Some(o) = a.output.as_deref().filter(|o| *o != "name") {
        bail!("--output {o:?}: delete prints `name` only");
    }
    let propagation = match a.cascade.as_str() {
        "background" | "true" => "Background",
        "foreground" => "Foreground",
        _ => "Orphan",
    };
    let mut grace = (a.grace_period >= 0).then_some(a.grace_period);
    if a.now {
        grace = Some(1);
    }
    if a.force && grace.is_none() {
        grace = Some(0);
    }
    if grace == Some(0) && !a.force {
        // As kubectl: a zero grace period without --force means "as soon as possible".
        grace = Some(1);
    }
    let timeout = parse_duration(&a.timeout)?;
    let mut s = Session::open(&a.conn, root)?;
    // (type, namespace, name)
    let mut work: Vec<(ApiResource, Option<String>, String)> = Vec::new();
    if !a.files.is_empty() {
        if !a.args.is_empty() {
            bail!("give either -f FILE or TYPE NAME…, not both");
        }
        let docs = manifest::read_all(&a.files, a.recursive)?;
        for d in &docs {
            let res = s.discovery()?.by_kind(d.api_version(), d.kind())?.clone();
            let ns = if res.namespaced {
                Some(object_namespace(&s, d.namespace())?)
            } else {
                None
            };
            work.push((res, ns, d.name().to_string()));
        }
    } else {
        if a.args.is_empty() {
            bail!("you must provide one or more resources by argument or filename (TYPE NAME…, TYPE/NAME…, or -f FILE)");
        }
        let ts = targets(s.discovery()?, &a.args)?;
        for t in ts {
            let ns = t.res.namespaced.then(|| s.namespace.clone());
            if t.names.is_empty() {
                if !a.all && a.selector.is_none() {
                    bail!("resource(s) were provided, but no name was specified (give NAME…, -l SELECTOR or --all)");
                }
                let q = selector_query(a.selector.as_deref(), None);
                let list = s
                    .client
                    .get(&format!("{}{q}", t.res.path(ns.as_deref(), None)))?;
                for i in list["items"].as_array().cloned().unwrap_or_default() {
                    if let Some(n) = i["metadata"]["name"].as_str() {
                        work.push((t.res.clone(), ns.clone(), n.to_string()));
                    }
                }
            } else {
                if a.all || a.selector.is_some() {
                    bail!("name cannot be provided when a selector or --all is specified");
                }
                for n in t.names {
                    work.push((t.res.clone(), ns.clone(), n));
                }
            }
        }
        if work.is_empty() {
            no_resources(&[], None);
            return Ok(0);
        }
    }
    if a.force && grace == Some(0) {
        eprintln!("Warning: Immediate deletion does not wait for confirmation that the running resource has been terminated. The resource may continue to run on the cluster indefinitely.");
    }
    let body = client::delete_options(Some(propagation), grace);
    let mut failed = false;
    let mut waiting: Vec<(String, String, Option<String>)> = Vec::new();
    for (res, ns, name) in &work {
        let path = res.path(ns.as_deref(), Some(name));
        match s.client.json(
            Method::DELETE,
            &path,
            "application/json",
            Some(("application/json", &body)),
        ) {
            Ok(v) => {
                let uid = v["metadata"]["uid"]
                    .as_str()
                    .or(v["details"]["uid"].as_str())
                    .map(String::from);
                if a.output.as_deref() == Some("name") {
                    println!("{}/{name}", res.qualified());
                } else if a.force && grace == Some(0) {
                    println!("{} {name:?} force deleted", res.qualified());
                } else {
                    println!("{} {name:?} deleted", res.qualified());
                }
                waiting.push((path, format!("{} {name:?}", res.qualified()), uid));
            }
            Err(e) => {
                let missing = e
                    .downcast_ref::<StatusError>()
                    .is_some_and(StatusError::is_not_found);
                if !(missing && a.ignore_not_found) {
                    failed = true;
                    report(&e);
                }
            }
        }
    }
    std::io::stdout().flush()?;
    if a.wait && !(a.force && grace == Some(0)) {
        let deadline = (!timeout.is_zero()).then(|| Instant::now() + timeout);
        for (path, what, uid) in waiting {
            loop {
                match s.client.get(&path) {
                    Err(e)
                        if e.downcast_ref::<StatusError>()
                            .is_some_and(StatusError::is_not_found) =>
                    {
                        break
                    }
                    Err(e) => return Err(e),
                    Ok(v) if uid.is_some() && v["metadata"]["uid"].as_str() != uid.as_deref() => {
                        break
                    }
                    Ok(_) => {}
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    bail!("timed out waiting for the deletion of {what}");
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    Ok(i32::from(failed))
}

// ---------------------------------------------------------------- scale

fn scale(a: ScaleArgs, root: &Path) -> Result<i32> {
    if a.replicas < 0 {
        bail!("the --replicas=COUNT flag must be 0 or more");
    }
    let mut s = Session::open(&a.conn, root)?;
    let ts = targets(s.discovery()?, &a.args)?;
    let body = json!({"spec": {"replicas": a.replicas}});
    let mut failed = false;
    for t in ts {
        if t.names.is_empty() {
            bail!("give TYPE/NAME or TYPE NAME");
        }
        let ns = t.res.namespaced.then(|| s.namespace.clone());
        for n in &t.names {
            let path = format!("{}/scale", t.res.path(ns.as_deref(), Some(n)));
            // The patch carries no resourceVersion: sent again when a concurrent write
            // (a controller's status update) won the race.
            let mut tries = 0;
            let res = loop {
                let r = s.client.json(
                    Method::PATCH,
                    &path,
                    "application/json",
                    Some(("application/merge-patch+json", &body)),
                );
                let conflict = matches!(&r, Err(e) if e.downcast_ref::<StatusError>().is_some_and(|st| st.code == 409));
                tries += 1;
                if !conflict || tries >= 5 {
                    break r;
                }
            };
            match res {
                Ok(_) => println!("{}/{n} scaled", t.res.qualified()),
                Err(e) => {
                    failed = true;
                    report(&e);
                }
            }
        }
    }
    Ok(i32::from(failed))
}

// ---------------------------------------------------------------- logs

fn logs(a: PodLogsArgs, root: &Path) -> Result<i32> {
    let s = Session::open(&a.conn, root)?;
    let name = match a.pod.split_once('/') {
        Some(("pod" | "pods" | "po", n)) => n.to_string(),
        Some((t, _)) => bail!("logs: {t:?}: give a pod (NAME or pod/NAME)"),
        None => a.pod.clone(),
    };
    let pod_path = format!("/api/v1/namespaces/{}/pods/{name}", s.namespace);
    let container = match &a.container {
        Some(c) => c.clone(),
        None => {
            let pod = s.client.get(&pod_path)?;
            let names: Vec<String> = pod["spec"]["containers"]
                .as_array()
                .map(|cs| {
                    cs.iter()
                        .filter_map(|c| c["name"].as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            let default = pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"]
                .as_str()
                .map(String::from);
            let chosen = default
                .or_else(|| names.first().cloned())
                .ok_or_else(|| anyhow!("pod {name:?} has no containers"))?;
            if names.len() > 1 {
                eprintln!(
                    "Defaulted container {chosen:?} out of: {}",
                    names.join(", ")
                );
            }
            chosen
        }
    };
    let mut q = vec![format!("container={}", encode_query(&container))];
    if a.follow {
        q.push("follow=true".into());
    }
    if let Some(n) = a.tail.filter(|n| *n >= 0) {
        q.push(format!("tailLines={n}"));
    }
    if a.previous {
        q.push("previous=true".into());
    }
    if a.timestamps {
        q.push("timestamps=true".into());
    }
    let path = format!("{pod_path}/log?{}", q.join("&"));
    let mut resp = s.client.send(Method::GET, &path, "*/*", None, None)?;
    let mut stdout = std::io::stdout().lock();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = std::io::Read::read(&mut resp, &mut buf).context("reading the log stream")?;
        if n == 0 {
            break;
        }
        stdout.write_all(&buf[..n])?;
        stdout.flush()?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn apply_ignores_what_the_server_maintains() {
        let a = json!({"metadata": {"name": "x", "resourceVersion": "1", "managedFields": [1]}, "spec": {"a": 1}, "status": {"r": 0}});
        let b = json!({"metadata": {"name": "x", "resourceVersion": "2", "managedFields": [2]}, "spec": {"a": 1}, "status": {"r": 3}});
        assert_eq!(comparable(&a), comparable(&b));
        let c = json!({"metadata": {"name": "x"}, "spec": {"a": 2}});
        assert_ne!(comparable(&a), comparable(&c));
    }

    #[test]
    fn selectors_are_encoded() {
        assert_eq!(
            selector_query(Some("app in (a,b)"), Some("status.phase=Pending")),
            "?labelSelector=app%20in%20%28a%2Cb%29&fieldSelector=status.phase%3DPending"
        );
        assert_eq!(selector_query(None, Some("")), "");
    }
}

//! `patchbay report installs`: the report on results of installation of updates, per task, device,
//! update and vendor, as a table, JSON, CSV or a self-contained HTML page.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use clap::ValueEnum;
use patchbay_proto::installing::v1 as pb;
use patchbay_proto::installing::v1::installing_service_client::InstallingServiceClient;

use super::jobs::{entry_json, kind_label, status_label, target_label};
use super::output::{Listing, OutputFormat};

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// gRPC address of the Patchbay server.
    #[arg(
        long,
        global = true,
        env = "PATCHBAY_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    server: String,
    /// Output format; `html` is one self-contained page (redirect it to a file).
    #[arg(
        short = 'o',
        long = "output",
        global = true,
        value_enum,
        default_value = "table"
    )]
    output: ReportFormat,
    #[command(subcommand)]
    command: ReportCommand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ReportFormat {
    Table,
    Json,
    Csv,
    Html,
}

#[derive(Debug, clap::Subcommand)]
enum ReportCommand {
    /// Results of installation of updates, per task, device, update and vendor.
    ///
    /// Counts installed, failed (with the reasons), pending, uninstalled and cancelled jobs. Only the
    /// latest attempt per device, update and job kind counts, so a failure followed by a successful
    /// retry is installed.
    Installs {
        /// Only this task's jobs.
        #[arg(long = "task", value_name = "T")]
        task: Option<String>,
        /// Only this device's jobs.
        #[arg(long = "device", value_name = "D")]
        device: Option<String>,
    },
}

pub async fn run(args: ReportArgs) -> anyhow::Result<()> {
    let client_args = super::ClientArgs {
        server: args.server,
        output: OutputFormat::Table,
    };
    let mut client = InstallingServiceClient::new(client_args.channel().await?);
    match args.command {
        ReportCommand::Installs { task, device } => {
            let report = client
                .get_install_report(pb::InstallReportRequest {
                    task_id: task.clone().unwrap_or_default(),
                    device_id: device.clone().unwrap_or_default(),
                })
                .await
                .map_err(super::status_error)?
                .into_inner();
            let summary = aggregate(&report);
            let filter = Filter {
                task: task.unwrap_or_default(),
                device: device.unwrap_or_default(),
            };
            match args.output {
                ReportFormat::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&json_report(&report, &summary, &filter))?
                ),
                ReportFormat::Csv => print!("{}", csv_report(&report, &summary)?),
                ReportFormat::Html => print!("{}", html_report(&report, &summary, &filter)),
                ReportFormat::Table => {
                    if report.jobs.is_empty() {
                        eprintln!(
                            "no install jobs{}; create and run a task with `patchbay tasks create` and `patchbay tasks run`",
                            filter.describe()
                        );
                        return Ok(());
                    }
                    println!("{}", summary_line(&summary.totals));
                    for (title, listing) in table_sections(&summary) {
                        println!("\n{title}");
                        listing.print(OutputFormat::Table)?;
                    }
                }
            }
            Ok(())
        }
    }
}

/// What the report was narrowed to, for its heading.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub task: String,
    pub device: String,
}

impl Filter {
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.task.is_empty() {
            parts.push(format!("task {}", self.task));
        }
        if !self.device.is_empty() {
            parts.push(format!("device {}", self.device));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!(" for {}", parts.join(" and "))
        }
    }
}

/// Outcome counts of the counted (latest) jobs of one group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Succeeded and reboot-required installs.
    pub installed: u64,
    /// Of `installed`, those waiting for a reboot.
    pub reboot_required: u64,
    pub failed: u64,
    /// Queued and dispatched jobs.
    pub pending: u64,
    /// Succeeded (or reboot-required) uninstall jobs.
    pub uninstalled: u64,
    pub cancelled: u64,
    /// Each distinct failure reason and how many failed jobs gave it.
    pub reasons: BTreeMap<String, u64>,
}

impl Counts {
    fn add(&mut self, entry: &pb::JobEntry) {
        let uninstall = entry
            .job
            .as_ref()
            .is_some_and(|j| j.kind == pb::JobKind::Uninstall as i32);
        match pb::JobStatus::try_from(entry.status) {
            Ok(pb::JobStatus::Succeeded | pb::JobStatus::RebootRequired) if uninstall => {
                self.uninstalled += 1;
            }
            Ok(pb::JobStatus::Succeeded) => self.installed += 1,
            Ok(pb::JobStatus::RebootRequired) => {
                self.installed += 1;
                self.reboot_required += 1;
            }
            Ok(pb::JobStatus::Failed) => {
                self.failed += 1;
                let reason = if entry.reason.is_empty() {
                    "(no reason given)".to_owned()
                } else {
                    entry.reason.clone()
                };
                *self.reasons.entry(reason).or_default() += 1;
            }
            Ok(pb::JobStatus::Queued | pb::JobStatus::Dispatched) => self.pending += 1,
            Ok(pb::JobStatus::Cancelled) => self.cancelled += 1,
            // A status this client does not know is left out rather than guessed.
            Ok(pb::JobStatus::Unspecified) | Err(_) => {}
        }
    }

    fn merge_reasons(&self) -> String {
        self.reasons
            .iter()
            .map(|(reason, n)| format!("{reason} ({n})"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "installed": self.installed, "reboot_required": self.reboot_required,
            "failed": self.failed, "pending": self.pending, "uninstalled": self.uninstalled,
            "cancelled": self.cancelled,
            "failure_reasons": self.reasons.iter().map(|(reason, count)| serde_json::json!({"reason": reason, "count": count})).collect::<Vec<_>>(),
        })
    }
}

/// One row of a grouping: a task, device, update or vendor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The id (the vendor's name for vendors).
    pub key: String,
    /// What people call it: task name, host name, update title, vendor.
    pub label: String,
    pub counts: Counts,
}

/// The report aggregated four ways.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub totals: Counts,
    pub by_task: Vec<Group>,
    pub by_device: Vec<Group>,
    pub by_update: Vec<Group>,
    pub by_vendor: Vec<Group>,
    /// Per job of the report, whether it is the latest attempt and so counted.
    pub counted: Vec<bool>,
}

/// Counts the latest attempt per (device, update, job kind); earlier attempts are history.
pub fn aggregate(report: &pb::InstallReport) -> Summary {
    let mut latest: HashMap<(&str, &str, i32), usize> = HashMap::new();
    for (index, entry) in report.jobs.iter().enumerate() {
        let Some(job) = &entry.job else { continue };
        let key = (job.device_id.as_str(), job.update_id.as_str(), job.kind);
        let newer = |other: usize| {
            let rank = |e: &pb::JobEntry| {
                let j = e.job.as_ref();
                (
                    j.map_or(0, |j| j.attempt),
                    e.queued_at.clone(),
                    j.map(|j| j.job_id.clone()).unwrap_or_default(),
                )
            };
            rank(entry) > rank(&report.jobs[other])
        };
        match latest.get(&key) {
            Some(&other) if !newer(other) => {}
            _ => {
                latest.insert(key, index);
            }
        }
    }
    let mut counted = vec![false; report.jobs.len()];
    for &index in latest.values() {
        counted[index] = true;
    }
    let mut totals = Counts::default();
    let mut groups: [BTreeMap<String, Group>; 4] = Default::default();
    for (entry, _) in report.jobs.iter().zip(&counted).filter(|(_, c)| **c) {
        let job = entry.job.clone().unwrap_or_default();
        totals.add(entry);
        let keys = [
            (job.task_id.clone(), or(&entry.task_name, &job.task_id)),
            (job.device_id.clone(), or(&entry.hostname, &job.device_id)),
            (job.update_id.clone(), or(&entry.title, &job.update_id)),
            (entry.vendor.clone(), or(&entry.vendor, "(no vendor)")),
        ];
        for (grouping, (key, label)) in groups.iter_mut().zip(keys) {
            grouping
                .entry(key.clone())
                .or_insert_with(|| Group {
                    key,
                    label,
                    counts: Counts::default(),
                })
                .counts
                .add(entry);
        }
    }
    let [by_task, by_device, by_update, by_vendor] = groups.map(|g| {
        let mut groups: Vec<Group> = g.into_values().collect();
        groups.sort_by(|a, b| a.label.cmp(&b.label).then_with(|| a.key.cmp(&b.key)));
        groups
    });
    Summary {
        totals,
        by_task,
        by_device,
        by_update,
        by_vendor,
        counted,
    }
}

fn or(value: &str, fallback: &str) -> String {
    if value.is_empty() { fallback } else { value }.to_owned()
}

fn summary_line(totals: &Counts) -> String {
    format!(
        "installed {} (reboot required {}), failed {}, pending {}, uninstalled {}, cancelled {}",
        totals.installed,
        totals.reboot_required,
        totals.failed,
        totals.pending,
        totals.uninstalled,
        totals.cancelled
    )
}

const GROUPINGS: [(&str, &str); 4] = [
    ("Per task", "task"),
    ("Per device", "device"),
    ("Per update", "update"),
    ("Per vendor", "vendor"),
];

fn groupings(summary: &Summary) -> [(&'static str, &'static str, &[Group]); 4] {
    let lists: [&[Group]; 4] = [
        &summary.by_task,
        &summary.by_device,
        &summary.by_update,
        &summary.by_vendor,
    ];
    let mut out = [("", "", &[] as &[Group]); 4];
    for (slot, ((title, noun), list)) in out.iter_mut().zip(GROUPINGS.iter().zip(lists)) {
        *slot = (title, noun, list);
    }
    out
}

/// The table output: one section per grouping, then the failure reasons.
pub fn table_sections(summary: &Summary) -> Vec<(String, Listing)> {
    let mut sections = Vec::new();
    for (title, noun, groups) in groupings(summary) {
        let with_id = noun != "vendor";
        let mut headers = if with_id {
            vec![noun, "name"]
        } else {
            vec![noun]
        };
        headers.extend([
            "installed",
            "reboot required",
            "failed",
            "pending",
            "uninstalled",
            "cancelled",
            "failure reasons",
        ]);
        let rows = groups
            .iter()
            .map(|g| {
                let c = &g.counts;
                let mut row = if with_id {
                    vec![g.key.clone(), g.label.clone()]
                } else {
                    vec![g.label.clone()]
                };
                row.extend([
                    c.installed.to_string(),
                    c.reboot_required.to_string(),
                    c.failed.to_string(),
                    c.pending.to_string(),
                    c.uninstalled.to_string(),
                    c.cancelled.to_string(),
                    c.merge_reasons(),
                ]);
                row
            })
            .collect();
        sections.push((
            title.to_owned(),
            Listing {
                headers,
                rows,
                json: serde_json::Value::Null,
            },
        ));
    }
    sections.push((
        "Failure reasons".to_owned(),
        Listing {
            headers: vec!["reason", "failed jobs"],
            rows: summary
                .totals
                .reasons
                .iter()
                .map(|(reason, n)| vec![reason.clone(), n.to_string()])
                .collect(),
            json: serde_json::Value::Null,
        },
    ));
    sections
}

/// One object: totals, the four groupings and every job (with whether it is counted).
pub fn json_report(
    report: &pb::InstallReport,
    summary: &Summary,
    filter: &Filter,
) -> serde_json::Value {
    let groups = |groups: &[Group], id: &str| -> serde_json::Value {
        groups
            .iter()
            .map(|g| {
                let mut value = g.counts.json();
                value[id] = g.key.clone().into();
                value["name"] = g.label.clone().into();
                value
            })
            .collect()
    };
    serde_json::json!({
        "generated_at": report.generated_at,
        "filter": {"task_id": filter.task, "device_id": filter.device},
        "totals": summary.totals.json(),
        "by_task": groups(&summary.by_task, "task_id"),
        "by_device": groups(&summary.by_device, "device_id"),
        "by_update": groups(&summary.by_update, "update_id"),
        "by_vendor": groups(&summary.by_vendor, "vendor"),
        "jobs": report.jobs.iter().zip(&summary.counted).map(|(entry, counted)| {
            let mut value = entry_json(entry);
            value["counted"] = (*counted).into();
            value
        }).collect::<Vec<_>>(),
    })
}

pub const CSV_HEADERS: [&str; 20] = [
    "job_id",
    "task_id",
    "task_name",
    "device_id",
    "hostname",
    "update_id",
    "title",
    "vendor",
    "product",
    "kind",
    "package",
    "version",
    "architecture",
    "kb_article",
    "attempt",
    "status",
    "reason",
    "queued_at",
    "finished_at",
    "counted",
];

/// Every job as one CSV row; `counted` says whether it is the latest attempt.
pub fn csv_report(report: &pb::InstallReport, summary: &Summary) -> anyhow::Result<String> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(CSV_HEADERS)?;
    for (entry, counted) in report.jobs.iter().zip(&summary.counted) {
        let job = entry.job.clone().unwrap_or_default();
        writer.write_record([
            job.job_id.as_str(),
            &job.task_id,
            &entry.task_name,
            &job.device_id,
            &entry.hostname,
            &job.update_id,
            &entry.title,
            &entry.vendor,
            &entry.product,
            kind_label(job.kind),
            &job.package,
            &job.version,
            &job.architecture,
            &job.kb_article,
            &job.attempt.to_string(),
            status_label(entry.status),
            &entry.reason,
            &entry.queued_at,
            &entry.finished_at,
            if *counted { "yes" } else { "no" },
        ])?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| anyhow::anyhow!("cannot write the CSV: {}", e.error()))?;
    Ok(String::from_utf8(bytes)?)
}

/// Text made safe for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const INSTALLED_COLOUR: &str = "#2e7d32";
const FAILED_COLOUR: &str = "#c62828";
const PENDING_COLOUR: &str = "#f9a825";
/// Bars beyond this many would make the chart unreadable; the table below it has every row.
const MAX_BARS: usize = 30;

/// A horizontal stacked bar chart (installed / failed / pending) of `groups`, as inline SVG.
fn bar_chart(title: &str, groups: &[Group]) -> String {
    const LABEL_WIDTH: usize = 230;
    const BAR_WIDTH: usize = 480;
    const ROW: usize = 24;
    const TOP: usize = 28;
    let shown = &groups[..groups.len().min(MAX_BARS)];
    let max = shown
        .iter()
        .map(|g| g.counts.installed + g.counts.failed + g.counts.pending)
        .max()
        .unwrap_or(0)
        .max(1);
    let height = TOP + ROW * shown.len().max(1) + 8;
    let width = LABEL_WIDTH + BAR_WIDTH + 60;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{}">"#,
        escape(title)
    );
    let mut x = LABEL_WIDTH;
    for (name, colour) in [
        ("installed", INSTALLED_COLOUR),
        ("failed", FAILED_COLOUR),
        ("pending", PENDING_COLOUR),
    ] {
        let _ = write!(
            svg,
            r#"<rect x="{x}" y="6" width="12" height="12" fill="{colour}"/><text x="{}" y="16">{name}</text>"#,
            x + 16
        );
        x += 100;
    }
    if shown.is_empty() {
        let _ = write!(
            svg,
            r#"<text x="0" y="{}">no jobs</text>"#,
            TOP + ROW / 2 + 4
        );
    }
    for (i, group) in shown.iter().enumerate() {
        let y = TOP + i * ROW;
        let c = &group.counts;
        let label: String = if group.label.chars().count() > 32 {
            group.label.chars().take(31).chain(['…']).collect()
        } else {
            group.label.clone()
        };
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="end"><title>{}</title>{}</text>"#,
            LABEL_WIDTH - 8,
            y + 15,
            escape(&group.label),
            escape(&label)
        );
        let mut offset = LABEL_WIDTH;
        for (name, value, colour) in [
            ("installed", c.installed, INSTALLED_COLOUR),
            ("failed", c.failed, FAILED_COLOUR),
            ("pending", c.pending, PENDING_COLOUR),
        ] {
            if value == 0 {
                continue;
            }
            // Integer widths, at least one pixel so a small count is still visible.
            let w = ((value as usize * BAR_WIDTH) / max as usize).max(1);
            let _ = write!(
                svg,
                r#"<rect x="{offset}" y="{}" width="{w}" height="{}" fill="{colour}"><title>{}: {value} {name}</title></rect>"#,
                y + 3,
                ROW - 6,
                escape(&group.label)
            );
            offset += w;
        }
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}">{}</text>"#,
            offset + 6,
            y + 15,
            c.installed + c.failed + c.pending
        );
    }
    svg.push_str("</svg>");
    if groups.len() > shown.len() {
        let _ = write!(
            svg,
            "<p class=\"note\">The chart shows the first {} of {}; the table lists all.</p>",
            shown.len(),
            groups.len()
        );
    }
    svg
}

fn html_table(headers: &[&str], rows: &[Vec<String>], numeric_from: usize) -> String {
    let mut html = String::from("<table><thead><tr>");
    for header in headers {
        let _ = write!(html, "<th>{}</th>", escape(header));
    }
    html.push_str("</tr></thead><tbody>");
    for row in rows {
        html.push_str("<tr>");
        for (i, cell) in row.iter().enumerate() {
            let class = if i >= numeric_from && cell.parse::<u64>().is_ok() {
                " class=\"n\""
            } else {
                ""
            };
            let _ = write!(html, "<td{class}>{}</td>", escape(cell));
        }
        html.push_str("</tr>");
    }
    html.push_str("</tbody></table>");
    html
}

/// One self-contained HTML page: summary, bar charts per vendor and per task, the grouped tables,
/// the failure reasons and the failed jobs. No scripts, and nothing loaded from elsewhere.
pub fn html_report(report: &pb::InstallReport, summary: &Summary, filter: &Filter) -> String {
    let t = &summary.totals;
    let mut html = String::new();
    html.push_str(concat!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
        "<title>Patchbay: results of installation of updates</title>\n<style>\n",
        "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em;color:#222}\n",
        "h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}\n",
        ".cards{display:flex;flex-wrap:wrap;gap:1em}.card{border:1px solid #ddd;border-radius:6px;padding:.6em 1em;min-width:8em}\n",
        ".card b{display:block;font-size:1.6em}.installed b{color:#2e7d32}.failed b{color:#c62828}.pending b{color:#b28704}\n",
        "table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}\n",
        "th{background:#f4f4f4}td.n{text-align:right}.note{color:#666;font-size:.9em}\n",
        "svg.chart text{font-size:12px;fill:#222}\n",
        "</style>\n</head>\n<body>\n<h1>Report on results of installation of updates</h1>\n",
    ));
    let _ = writeln!(
        html,
        "<p class=\"note\">Generated {}{}. Only the latest attempt per device, update and job kind is counted; {} of {} jobs.</p>",
        escape(&report.generated_at),
        escape(&filter.describe()),
        summary.counted.iter().filter(|c| **c).count(),
        report.jobs.len()
    );
    html.push_str("<div class=\"cards\">");
    for (class, name, value) in [
        ("installed", "Installed", t.installed),
        ("", "of which reboot required", t.reboot_required),
        ("failed", "Failed", t.failed),
        ("pending", "Pending", t.pending),
        ("", "Uninstalled", t.uninstalled),
        ("", "Cancelled", t.cancelled),
    ] {
        let _ = write!(
            html,
            "<div class=\"card {class}\"><b>{value}</b>{}</div>",
            escape(name)
        );
    }
    html.push_str("</div>\n");
    html.push_str("<h2>Per vendor</h2>\n");
    html.push_str(&bar_chart("Installations per vendor", &summary.by_vendor));
    html.push_str("\n<h2>Per task</h2>\n");
    html.push_str(&bar_chart("Installations per task", &summary.by_task));
    for (title, listing) in table_sections(summary) {
        let _ = write!(html, "\n<h2>{} (table)</h2>\n", escape(&title));
        if listing.rows.is_empty() {
            html.push_str("<p class=\"note\">None.</p>");
        } else {
            html.push_str(&html_table(&listing.headers, &listing.rows, 1));
        }
    }
    let failed: Vec<Vec<String>> = report
        .jobs
        .iter()
        .zip(&summary.counted)
        .filter(|(e, counted)| **counted && e.status == pb::JobStatus::Failed as i32)
        .map(|(e, _)| {
            let job = e.job.clone().unwrap_or_default();
            vec![
                or(&e.hostname, &job.device_id),
                or(&e.title, &job.update_id),
                target_label(&job),
                kind_label(job.kind).to_owned(),
                job.attempt.to_string(),
                e.reason.clone(),
                e.finished_at.clone(),
            ]
        })
        .collect();
    html.push_str("\n<h2>Failed jobs</h2>\n");
    if failed.is_empty() {
        html.push_str("<p class=\"note\">None.</p>");
    } else {
        html.push_str(&html_table(
            &[
                "device", "update", "package", "kind", "attempt", "reason", "finished",
            ],
            &failed,
            4,
        ));
    }
    html.push_str("\n</body>\n</html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(
        job_id: &str,
        device: &str,
        update: &str,
        attempt: u32,
        status: pb::JobStatus,
        reason: &str,
    ) -> pb::JobEntry {
        pb::JobEntry {
            job: Some(pb::Job {
                job_id: job_id.into(),
                task_id: "t1".into(),
                device_id: device.into(),
                update_id: update.into(),
                attempt,
                package: "curl".into(),
                version: "7.88.1-10+deb12u8".into(),
                ..Default::default()
            }),
            status: status as i32,
            reason: reason.into(),
            hostname: format!("host-{device}"),
            title: format!("title {update}"),
            vendor: "Debian".into(),
            product: "curl".into(),
            task_name: "Install required".into(),
            queued_at: format!("2026-01-01T00:00:0{attempt}Z"),
            ..Default::default()
        }
    }

    fn sample() -> pb::InstallReport {
        use pb::JobStatus as S;
        let mut jobs = vec![
            // A failure followed by a successful retry: installed.
            entry("j1", "d1", "u1", 1, S::Failed, "E: boom"),
            entry("j2", "d1", "u1", 2, S::Succeeded, ""),
            // A final failure.
            entry("j3", "d2", "u1", 1, S::Failed, "E: boom"),
            entry("j4", "d1", "u2", 1, S::Queued, ""),
            entry("j5", "d2", "u2", 1, S::RebootRequired, ""),
            entry("j6", "d1", "u3", 1, S::Dispatched, ""),
            entry("j7", "d2", "u3", 1, S::Cancelled, "declined"),
        ];
        // An uninstall of the same device and update as an install counts separately.
        let mut uninstall = entry("j8", "d1", "u1", 1, S::Succeeded, "");
        if let Some(job) = uninstall.job.as_mut() {
            job.kind = pb::JobKind::Uninstall as i32;
            job.task_id = "t2".into();
        }
        uninstall.task_name = "Other".into();
        uninstall.vendor = "Mozilla".into();
        jobs.push(uninstall);
        // The retry listed before the failure it replaced still wins.
        jobs.push(entry("j9", "d3", "u1", 2, S::Succeeded, ""));
        jobs.push(entry("j10", "d3", "u1", 1, S::Failed, "E: older"));
        pb::InstallReport {
            jobs,
            generated_at: "2026-01-02T00:00:00Z".into(),
        }
    }

    #[test]
    fn latest_attempt_counts() {
        let summary = aggregate(&sample());
        let t = &summary.totals;
        assert_eq!(
            (
                t.installed,
                t.reboot_required,
                t.failed,
                t.pending,
                t.uninstalled,
                t.cancelled
            ),
            (3, 1, 1, 2, 1, 1)
        );
        assert_eq!(t.reasons, BTreeMap::from([("E: boom".to_owned(), 1)]));
        assert_eq!(
            summary.counted,
            [false, true, true, true, true, true, true, true, true, false]
        );

        let tasks: Vec<_> = summary
            .by_task
            .iter()
            .map(|g| {
                (
                    g.key.as_str(),
                    g.label.as_str(),
                    g.counts.installed,
                    g.counts.uninstalled,
                )
            })
            .collect();
        assert_eq!(
            tasks,
            [("t1", "Install required", 3, 0), ("t2", "Other", 0, 1)]
        );
        let d1 = &summary.by_device[0];
        assert_eq!((d1.key.as_str(), d1.label.as_str()), ("d1", "host-d1"));
        assert_eq!(
            (d1.counts.installed, d1.counts.failed, d1.counts.pending),
            (1, 0, 2)
        );
        let u1 = summary.by_update.iter().find(|g| g.key == "u1").unwrap();
        assert_eq!((u1.counts.installed, u1.counts.failed), (2, 1));
        let vendors: Vec<_> = summary
            .by_vendor
            .iter()
            .map(|g| (g.label.as_str(), g.counts.installed, g.counts.failed))
            .collect();
        assert_eq!(vendors, [("Debian", 3, 1), ("Mozilla", 0, 0)]);
    }

    #[test]
    fn json_has_the_four_groupings_and_every_job() {
        let report = sample();
        let json = json_report(&report, &aggregate(&report), &Filter::default());
        for key in ["by_task", "by_device", "by_update", "by_vendor"] {
            assert!(json[key].as_array().is_some_and(|a| !a.is_empty()), "{key}");
        }
        assert_eq!(json["jobs"].as_array().map(Vec::len), Some(10));
        assert_eq!(json["jobs"][0]["counted"], false);
        assert_eq!(json["totals"]["failure_reasons"][0]["reason"], "E: boom");
    }

    #[test]
    fn csv_has_a_header_and_a_row_per_job() {
        let report = sample();
        let text = csv_report(&report, &aggregate(&report)).unwrap();
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some(
                "job_id,task_id,task_name,device_id,hostname,update_id,title,vendor,product,kind,package,version,architecture,kb_article,attempt,status,reason,queued_at,finished_at,counted"
            )
        );
        assert_eq!(lines.count(), 10);
        assert!(text.contains("j1,t1,Install required,d1,host-d1,u1,title u1,Debian,curl,install"));
    }

    #[test]
    fn html_is_self_contained_escaped_and_charted() {
        let mut report = sample();
        report.jobs[1].title = "<script>alert('x')</script>".into();
        report.jobs[2].reason = "E: <b>bad</b> & worse".into();
        let html = html_report(&report, &aggregate(&report), &Filter::default());
        assert!(html.contains("<svg"));
        assert!(
            !html.contains("<script"),
            "a title must not become a script"
        );
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
        assert!(html.contains("E: &lt;b&gt;bad&lt;/b&gt; &amp; worse"));
        assert!(!html.contains("<b>bad"));
        // Nothing is fetched from elsewhere.
        for external in ["src=", "href=", "http://", "https://", "@import", "url("] {
            assert!(!html.contains(external), "{external}");
        }
        assert!(html.contains("Per vendor") && html.contains("Failure reasons"));
    }

    #[test]
    fn empty_report_still_renders() {
        let report = pb::InstallReport::default();
        let summary = aggregate(&report);
        assert_eq!(summary.totals, Counts::default());
        let html = html_report(&report, &summary, &Filter::default());
        assert!(html.contains("<svg") && html.contains("no jobs"));
        assert_eq!(csv_report(&report, &summary).unwrap().lines().count(), 1);
    }
}

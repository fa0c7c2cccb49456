//! `vetric statement` as a script runs it (issue #8 item 7): the real binary previews a
//! generated vendor export (nothing stored), imports it with `--commit`, and prints the
//! statement whose totals match the worked examples of BILLING.md; CSV and PDF go to a file
//! (the PDF's total read back with pdftotext), and `--issue` freezes version 1.

use rust_xlsxwriter::Workbook;
use std::path::Path;
use std::process::Output;
use vetric_testkit::scratch_dir;

const BIN: &str = env!("CARGO_BIN_EXE_vetric");

async fn vetric(config: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "statement",
        "--config",
        config.to_str().expect("utf-8 path"),
        "--site",
        "jardim",
        "--month",
        "2026-03",
    ];
    args.extend_from_slice(extra);
    tokio::process::Command::new(BIN)
        .args(&args)
        .env("VETRIC_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run vetric")
}

fn text(o: &Output) -> String {
    format!(
        "exit {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", text(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

/// Two worked examples of BILLING.md and a row whose date does not exist.
fn write_export(path: &Path) {
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    let rows = [
        [
            "Recarga(ID)",
            "Estação",
            "Usuário(Tag)",
            "Usuário(Nome)",
            "Início - Fim",
            "Energia(kWh)",
            "Tempo de ociosidade",
        ],
        // Thursday 16:30 → 18:30, 10 kWh: R$ 18.05; idle 40 min: R$ 2.50.
        [
            "48213",
            "Vaga 1",
            "AB12CD",
            "Maria",
            "05/03/2026 16:30:00 - 05/03/2026 18:30:00",
            "10,000",
            "00:40:00",
        ],
        // Thursday 23:00 → Friday 19:00, 20 kWh: R$ 14.43.
        [
            "48214",
            "Vaga 2",
            "AB12CD",
            "Maria",
            "05/03/2026 23:00 - 06/03/2026 19:00",
            "20,000",
            "00:10:00",
        ],
        [
            "48215",
            "Vaga 2",
            "AB12CD",
            "Maria",
            "31/02/2026 10:00 - 31/02/2026 11:00",
            "1,000",
            "",
        ],
    ];
    for (r, row) in rows.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            ws.write_string(r as u32, c as u16, *v).expect("cell");
        }
    }
    wb.save(path).expect("save export");
}

#[tokio::test]
async fn import_with_commit_then_the_statement_totals_match() {
    let dir = scratch_dir();
    let config = dir.path().join("vetric.toml");
    std::fs::write(
        &config,
        "database_url = \"sqlite://vetric.db\"\n\
         [[sites]]\n\
         slug = \"jardim\"\n\
         name = \"Condomínio Jardim\"\n\
         [sites.tariff]\n\
         peak_price = \"3.08\"\n\
         offpeak_price = \"0.53\"\n\
         idle_grace_min = 15\n\
         idle_fee_per_min = \"0.10\"\n\
         idle_fee_cap = \"30.00\"\n\
         max_kwh = \"150\"\n",
    )
    .expect("write config");
    let export = dir.path().join("recargas.xlsx");
    write_export(&export);
    let export = export.to_str().expect("utf-8 path");

    // Preview: the export's rows are in the draft, the bad row is reported, nothing stored.
    let preview = vetric(&config, &["--import", export]).await;
    let doc = json(&preview);
    assert_eq!(doc["status"], "draft");
    assert_eq!(doc["totals"]["sessions"], 2);
    assert_eq!(doc["totals"]["total"], "34.98");
    assert_eq!(doc["import"]["committed"], false);
    assert_eq!(doc["import"]["rejected_rows"][0]["row"], 4);
    let stderr = String::from_utf8_lossy(&preview.stderr);
    assert!(
        stderr.contains("linha 4, coluna Início - Fim"),
        "{}",
        text(&preview)
    );
    let empty = json(&vetric(&config, &[]).await);
    assert_eq!(empty["totals"]["sessions"], 0, "a preview stores nothing");

    // Commit: the good rows are stored; the statement matches the worked examples.
    let committed = json(&vetric(&config, &["--import", export, "--commit"]).await);
    assert_eq!(
        committed["import"]["outcome"]["imported"],
        serde_json::json!([48213, 48214])
    );
    let doc = json(&vetric(&config, &[]).await);
    assert_eq!(doc["site"], "jardim");
    assert_eq!(doc["month"], "2026-03");
    assert_eq!(doc["totals"]["sessions"], 2);
    assert_eq!(doc["totals"]["kwh"], "30.000");
    assert_eq!(doc["totals"]["peak_kwh"], "6.500");
    assert_eq!(doc["totals"]["energy_cost"], "32.48");
    assert_eq!(doc["totals"]["idle_fee"], "2.50");
    assert_eq!(doc["totals"]["total"], "34.98");
    let line = &doc["lines"][0];
    assert_eq!(
        line["apartment"],
        serde_json::Value::Null,
        "unknown tag: sem morador"
    );
    assert_eq!(line["total"], "34.98");
    // Committing the same file again does not double anything.
    let again = json(&vetric(&config, &["--import", export, "--commit"]).await);
    assert_eq!(
        again["import"]["outcome"]["already_imported"],
        serde_json::json!([48213, 48214])
    );
    assert_eq!(again["totals"]["total"], "34.98");

    // CSV to a file, as Excel in Brazil opens it.
    let csv_path = dir.path().join("extrato.csv");
    let out = vetric(
        &config,
        &[
            "--format",
            "csv",
            "--out",
            csv_path.to_str().expect("utf-8"),
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(out.stdout.is_empty());
    let csv = std::fs::read(&csv_path).expect("csv written");
    assert!(csv.starts_with(&[0xEF, 0xBB, 0xBF]));
    let csv = String::from_utf8(csv).expect("utf-8");
    assert!(csv.contains("Total;;2;30,000;6,500;23,500;32,48;"), "{csv}");

    // PDF: a binary file, so --out is required (one line saying so); the site's PDF then shows
    // the JSON's total, and --apartment "sem morador" that line's.
    let pdf = vetric(&config, &["--format", "pdf"]).await;
    assert!(!pdf.status.success());
    let err = String::from_utf8_lossy(&pdf.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{}", text(&pdf));
    assert!(err.contains("--out"), "{err}");
    let json_total = doc["totals"]["total"]
        .as_str()
        .expect("total")
        .replace('.', ",");
    for extra in [&[][..], &["--apartment", "sem morador"][..]] {
        let pdf_path = dir.path().join("extrato.pdf");
        let mut pdf_args = vec![
            "--format",
            "pdf",
            "--out",
            pdf_path.to_str().expect("utf-8"),
        ];
        pdf_args.extend_from_slice(extra);
        let out = vetric(&config, &pdf_args).await;
        assert!(out.status.success(), "{}", text(&out));
        let pdftotext = std::process::Command::new("pdftotext")
            .args(["-layout", "-enc", "UTF-8"])
            .arg(&pdf_path)
            .arg("-")
            .output()
            .expect("pdftotext is not installed: install poppler-utils");
        let pdf_text = String::from_utf8_lossy(&pdftotext.stdout);
        assert!(pdf_text.contains("Condomínio Jardim"), "{pdf_text}");
        assert!(pdf_text.contains(&format!("R$ {json_total}")), "{pdf_text}");
        assert!(pdf_text.contains("Página 1 de"), "{pdf_text}");
    }
    let unknown = vetric(
        &config,
        &["--format", "pdf", "--out", "x.pdf", "--apartment", "999"],
    )
    .await;
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("999"),
        "{}",
        text(&unknown)
    );

    // Issue: version 1, then --issued shows it.
    let issued = json(&vetric(&config, &["--issue"]).await);
    assert_eq!(issued["status"], "issued");
    assert_eq!(issued["version"], 1);
    assert_eq!(issued["totals"]["total"], "34.98");
    let shown = json(&vetric(&config, &["--issued"]).await);
    assert_eq!(shown["version"], 1);
    assert_eq!(shown["lines"], issued["lines"]);
}

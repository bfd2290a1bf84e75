//! Printing results as a table (default), JSON or CSV, the same way for every client command.

use clap::ValueEnum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
    Csv,
}

/// Rows with named columns, plus the JSON form of the same data (richer than the table).
#[derive(Debug)]
pub struct Listing {
    pub headers: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
    pub json: serde_json::Value,
}

impl Listing {
    pub fn print(&self, format: OutputFormat) -> anyhow::Result<()> {
        match format {
            OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&self.json)?),
            OutputFormat::Csv => {
                let mut writer = csv::Writer::from_writer(std::io::stdout().lock());
                writer.write_record(&self.headers)?;
                for row in &self.rows {
                    writer.write_record(row)?;
                }
                writer.flush()?;
            }
            OutputFormat::Table => {
                let mut table = comfy_table::Table::new();
                table.load_style(comfy_table::presets::UTF8_FULL_CONDENSED);
                table.set_header(self.headers.clone());
                for row in &self.rows {
                    table.add_row(row.clone());
                }
                println!("{table}");
            }
        }
        Ok(())
    }
}

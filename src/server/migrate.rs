//! `exchange-server migrate`: brings the database named by the settings to this
//! build's schema version, says what it did in one line, and exits.

use crate::migrations;
use crate::server::Settings;
use crate::store;
use std::process::ExitCode;

pub fn run(settings: &Settings) -> ExitCode {
    match migrate(settings) {
        Ok(applied) if applied.is_empty() => {
            println!("schema already at version {}", migrations::latest());
            ExitCode::SUCCESS
        }
        Ok(applied) => {
            let list: Vec<String> = applied.iter().map(i32::to_string).collect();
            println!(
                "schema at version {}: applied {}",
                migrations::latest(),
                list.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(why) => {
            tracing::error!("cannot migrate: {why}");
            ExitCode::FAILURE
        }
    }
}

fn migrate(settings: &Settings) -> Result<Vec<i32>, store::StoreError> {
    let target = store::config(&settings.database_url, settings.database_timeouts())?;
    let mut client = target.connect()?;
    // A migration may rewrite a large table: the serving statement timeout is not its
    // bound. It waits for the locks of orders in flight, which are short.
    client.batch_execute("SET statement_timeout = 0")?;
    migrations::migrate(&mut client)
}

//! `mercato`: the command line. Parsing only; the work is in the library.

use clap::{Parser, Subcommand};
use mercato::config::Config;
use std::path::PathBuf;

// glibc's malloc keeps freed memory in per-thread arenas: under load (tokio
// workers, blocking-pool threads, argon2 buffers) the server's RSS grew to
// three times its live heap (heaptrack: 73 MB live at a 250 MB RSS peak in the
// flash-sale scenario). jemalloc returns memory to the system as it goes.
#[cfg(all(target_os = "linux", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's defaults keep freed pages for 10 s and purge only when the
/// process allocates; a background thread and a 1 s decay hand them back
/// while the server idles (100k products, after the search index is built:
/// 240 MB RSS with the defaults, 72 MB with these). `_RJEM_MALLOC_CONF`
/// overrides at run time.
#[cfg(all(target_os = "linux", not(target_env = "msvc")))]
#[allow(unsafe_code, reason = "jemalloc reads its configuration from this exported symbol")]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static MALLOC_CONF: &[u8; 60] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

#[derive(Parser)]
#[command(name = "mercato", version, about = "An e-commerce backend, from a laptop to a cluster")]
struct Cli {
    /// Configuration file (default: ./mercato.toml if it exists). Env: MERCATO_CONFIG.
    #[arg(long, global = true, env = "MERCATO_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on (overrides config and MERCATO_LISTEN).
    #[arg(long, global = true)]
    listen: Option<String>,
    /// Data directory (overrides config and MERCATO_DATA_DIR).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the shop: migrations, first-run demo data, HTTP API and workers.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Add demo products (deterministic) to the catalog.
    Seed {
        /// How many products to add.
        #[arg(long, default_value_t = 10_000)]
        products: u64,
    },
    /// Print the effective configuration (secrets masked).
    Config,
    /// Measure the storage ceiling: the checkout's transaction as plain SQL in
    /// a tight loop (SQLite in the data dir, or the orders domain's
    /// PostgreSQL database).
    BenchStorage {
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// PostgreSQL connections (SQLite always uses its one writer).
        #[arg(long, default_value_t = 16)]
        clients: usize,
    },
    /// Search index maintenance.
    Search {
        #[command(subcommand)]
        command: SearchCommand,
    },
    /// The orders' logical shards and the databases serving them (stage 7).
    Shards {
        #[command(subcommand)]
        command: ShardsCommand,
    },
}

#[derive(Subcommand)]
enum ShardsCommand {
    /// Which logical shards each database in database.domains.orders.shards
    /// serves (and any on their way in or out).
    List,
    /// Move a logical shard to another database while the shop runs: copy
    /// and follow with PostgreSQL's logical replication, freeze the shard's
    /// writes briefly, switch, delete the old copy. Prints a JSON report.
    Move {
        /// The logical shard (0 to orders.logical_shards - 1).
        #[arg(long)]
        shard: u16,
        /// The destination: its place (1-based) in database.domains.orders.shards.
        #[arg(long)]
        to: usize,
        /// How the destination's server reaches the source's (default: the
        /// source's URL in the shards list).
        #[arg(long)]
        source_conninfo: Option<String>,
    },
}

#[derive(Subcommand)]
enum SearchCommand {
    /// Rebuild the search index from the catalog (with a progress bar).
    Reindex,
}

fn load(cli: &Cli) -> anyhow::Result<Config> {
    let mut config = Config::load(cli.config.as_deref(), std::env::vars()).map_err(anyhow::Error::msg)?;
    if let Some(l) = &cli.listen {
        config.listen = l.clone();
    }
    if let Some(d) = &cli.data_dir {
        config.data_dir = d.clone();
    }
    config.validate().map_err(anyhow::Error::msg)?;
    Ok(config)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = load(&cli)?;
    mercato_platform::telemetry::init_logs(&config.log);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve => mercato::server::serve(config).await,
            Command::Migrate => {
                let dbs = mercato::server::open_databases(&config)?;
                let n = mercato::server::migrate(&dbs).await?;
                println!("applied {n} migration(s)");
                Ok(())
            }
            Command::Seed { products } => {
                let shop = mercato::server::Shop::build(config).await?;
                let n = mercato::seed::run(&shop.state, products, shop.config.seed.stock_per_variant, true).await?;
                println!("added {n} products");
                Ok(())
            }
            Command::Search { command: SearchCommand::Reindex } => {
                let shop = mercato::server::Shop::build(config).await?;
                let n = mercato::indexer::reindex(&shop.state, true).await?;
                println!("indexed {n} products");
                Ok(())
            }
            Command::Shards { command: ShardsCommand::List } => {
                print!("{}", mercato::shards::list(&config).await?);
                Ok(())
            }
            Command::Shards { command: ShardsCommand::Move { shard, to, source_conninfo } } => {
                let report = mercato::shards::move_shard(&config, shard, to, source_conninfo).await?;
                println!("{}", serde_json::to_string(&report)?);
                Ok(())
            }
            Command::BenchStorage { seconds, clients } => {
                // The place-order transaction writes stock and orders: with
                // domains apart it runs in the orders domain's database.
                let url = config.database.url_for("orders");
                let result = tokio::task::spawn_blocking(move || {
                    if url.starts_with("postgres") {
                        mercato::bench::postgres(&url, seconds, clients)
                    } else {
                        std::fs::create_dir_all(&config.data_dir)?;
                        mercato::bench::sqlite(
                            &config.data_dir.join("ceiling.db"),
                            seconds,
                            config.database.synchronous,
                        )
                    }
                })
                .await??;
                println!("{}", serde_json::to_string(&result)?);
                Ok(())
            }
            Command::Config => {
                print!("{}", config.to_toml_masked());
                Ok(())
            }
        }
    })
}

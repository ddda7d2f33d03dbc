//! Benchmark peer: one-shot snapshot of Kafka topics into S3 with OSO's
//! kafka-backup-core engine, run the engine's documented way with its defaults.
//!
//! Settings: `--name value` / `--name=value`, else the environment variable.
//!   --brokers   OSO_BROKERS    (default 127.0.0.1:19092, comma-separated)
//!   --topic     OSO_TOPIC      (required, comma-separated topics or globs)
//!   --endpoint  OSO_S3_ENDPOINT (default http://127.0.0.1:19000)
//!   --bucket    OSO_BUCKET     (required)
//!   --prefix    OSO_PREFIX     (required; use a fresh one per run, the engine resumes from it)
//!   --region    OSO_REGION     (default us-east-1)
//!   --backup-id OSO_BACKUP_ID  (default snapshot)
//! Credentials only from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, never printed.
use kafka_backup_core::backup::BackupEngine;
use kafka_backup_core::config::{BackupOptions, CompressionType, Config, KafkaConfig, Mode, TopicSelection};
use kafka_backup_core::storage::StorageBackendConfig;
use std::time::Instant;

fn setting(flag: &str, env: &str, default: Option<&str>) -> Result<String, String> {
    let args: Vec<String> = std::env::args().collect();
    let long = format!("--{flag}");
    for (i, a) in args.iter().enumerate() {
        if let Some(v) = a.strip_prefix(&format!("{long}=")) {
            return Ok(v.to_string());
        }
        if *a == long {
            return args.get(i + 1).cloned().ok_or(format!("{long} needs a value"));
        }
    }
    match (std::env::var(env).ok().filter(|v| !v.is_empty()), default) {
        (Some(v), _) => Ok(v),
        (None, Some(d)) => Ok(d.to_string()),
        (None, None) => Err(format!("missing {long} or {env}")),
    }
}

fn list(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|x| !x.is_empty()).map(String::from).collect()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_max_level(tracing::Level::WARN).with_writer(std::io::stderr).init();
    let topics = list(&setting("topic", "OSO_TOPIC", None)?);
    let config = Config {
        mode: Mode::Backup,
        backup_id: setting("backup-id", "OSO_BACKUP_ID", Some("snapshot"))?,
        source: Some(KafkaConfig {
            bootstrap_servers: list(&setting("brokers", "OSO_BROKERS", Some("127.0.0.1:19092"))?),
            security: Default::default(),
            topics: TopicSelection { include: topics, exclude: vec![] },
            connection: Default::default(),
        }),
        target: None,
        storage: StorageBackendConfig::S3 {
            bucket: setting("bucket", "OSO_BUCKET", None)?,
            region: Some(setting("region", "OSO_REGION", Some("us-east-1"))?),
            endpoint: Some(setting("endpoint", "OSO_S3_ENDPOINT", Some("http://127.0.0.1:19000"))?),
            access_key: std::env::var("AWS_ACCESS_KEY_ID").ok(),
            secret_key: std::env::var("AWS_SECRET_ACCESS_KEY").ok(),
            prefix: Some(setting("prefix", "OSO_PREFIX", None)?),
            path_style: true,
            allow_http: true,
        },
        backup: Some(BackupOptions {
            compression: CompressionType::Zstd,
            compression_level: 3,
            stop_at_current_offsets: true,
            ..Default::default()
        }),
        restore: None,
        offset_storage: None,
        metrics: None,
    };
    let started = Instant::now();
    let engine = BackupEngine::new(config).await?;
    engine.run().await?;
    let r = engine.metrics().report();
    println!(
        "{{\"elapsed_secs\":{:.3},\"records\":{},\"segments\":{},\"bytes_written\":{},\"bytes_uncompressed\":{},\"errors\":{}}}",
        started.elapsed().as_secs_f64(), r.records_processed, r.segments_written,
        r.bytes_written, r.bytes_uncompressed, r.errors
    );
    Ok(())
}

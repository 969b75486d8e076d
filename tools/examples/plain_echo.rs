//! The plaintext baseline server for `noise-echo bench --plain`: the same records
//! over bare TCP, no Noise, no authentication. For measurement on loopback only.
//!
//! ```text
//! cargo run --release --example plain_echo -- 127.0.0.1:7801
//! ```

use std::net::SocketAddr;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let address: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7801".to_owned())
        .parse()?;
    if !address.ip().is_loopback() {
        return Err("the plaintext baseline authenticates nobody: listen on loopback only".into());
    }
    // The same runtime as `noise-echo serve`, so only the protocol differs.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(address).await?;
        eprintln!("plain echo listening on {}", listener.local_addr()?);
        noise_echo_tools::bench::plain::serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
    })?;
    Ok(())
}
